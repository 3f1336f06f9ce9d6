"""Reading the ledger (run_proof_ledger) inside the caller's transaction or snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.ledger.entry import EntryKind, LedgerEntry

__all__ = [
    "UNPROVEN_TRACE",
    "EntryOfLegacyTrace",
    "database_name",
    "entries_of_legacy_trace",
    "entries_of_legacy_traces",
    "entries_for_run",
    "entries_for_runs",
    "ledger_context",
    "ledger_present",
    "ledger_run_id_collisions",
    "ledger_trace_mismatches",
    "read_entries",
]

_COLUMNS = "seq, kind, tenant_id, run_id, trace_id, chain_length, root_hash, recorded_at, leaf_hash"


async def ledger_present(conn: AsyncConnection) -> bool:
    found = await conn.scalar(text("SELECT to_regclass('run_proof_ledger') IS NOT NULL"))
    return bool(found)


async def database_name(conn: AsyncConnection) -> str:
    return str(await conn.scalar(text("SELECT current_database()")))


async def ledger_context(conn: AsyncConnection) -> tuple[bool, str]:
    """(ledger table present, database name) in one round trip: it runs once per proof."""
    row = (
        await conn.execute(
            text("SELECT to_regclass('run_proof_ledger') IS NOT NULL, current_database()")
        )
    ).one()
    return bool(row[0]), str(row[1])


async def read_entries(conn: AsyncConnection, *, upto: int | None = None) -> list[LedgerEntry]:
    """Entries in seq order; with `upto`, only those with seq <= upto."""
    result = await conn.stream(
        text(
            f"SELECT {_COLUMNS} FROM run_proof_ledger"  # noqa: S608 - constant column list
            " WHERE (CAST(:upto AS bigint) IS NULL OR seq <= :upto) ORDER BY seq"
        ),
        {"upto": upto},
    )
    return [LedgerEntry(**row._mapping) async for row in result]


async def entries_for_run(conn: AsyncConnection, tenant_id: str, run_id: str) -> list[LedgerEntry]:
    rows = await conn.execute(
        text(
            f"SELECT {_COLUMNS} FROM run_proof_ledger"  # noqa: S608 - constant column list
            " WHERE tenant_id = :tenant_id AND run_id = :run_id ORDER BY seq"
        ),
        {"tenant_id": tenant_id, "run_id": run_id},
    )
    return [LedgerEntry(**row._mapping) for row in rows]


async def entries_for_runs(
    conn: AsyncConnection, runs: list[tuple[str, str]]
) -> dict[tuple[str, str], list[LedgerEntry]]:
    """entries_for_run() for many (tenant_id, run_id) pairs in one round trip (a sweep)."""
    rows = await conn.execute(
        text(
            f"SELECT {_COLUMNS} FROM run_proof_ledger"  # noqa: S608 - constant column list
            " WHERE run_id = ANY(:run_ids) ORDER BY seq"
        ),
        {"run_ids": sorted({run_id for _, run_id in runs})},
    )
    wanted = set(runs)
    found: dict[tuple[str, str], list[LedgerEntry]] = {run: [] for run in runs}
    for row in rows:
        key = (row.tenant_id, row.run_id)
        if key in wanted:  # the same run id under another tenant is not this run
            found[key].append(LedgerEntry(**row._mapping))
    return found


# A trace no proof format covers (docs/hash-chain-v2.md, "Where every value is stored"):
# chain_format NULL (legacy), or a format-v1 trace whose genesis_hash was cleared (the v1
# verifier reads that as legacy too). A format-v2 trace with a NULL genesis_hash is not
# legacy: its header could not be hashed, and its proof is FAILED at the header.
UNPROVEN_TRACE = "({t}.chain_format IS NULL OR ({t}.chain_format = 1 AND {t}.genesis_hash IS NULL))"

# Stored values only (no hashing): the chain of each run is proven by `verify`; this finds
# runs deleted, replaced, turned legacy, re-sealed or rewritten relative to what the ledger
# recorded, without an id. The entry names its trace: it is joined by trace_id, so another
# trace holding the same run id (a legacy row anyone may insert) is never mistaken for it.
# The format's seal is `seal_hash` for v1 and v2 (migration 0006); the entry's `root_hash`
# is that seal. A format-v1 trace keeps its seal in `root_hash` too, and both must agree.
_LIVE_ENTRY = """
l.kind IN (:seal, :adoption)
  AND NOT EXISTS (
      SELECT 1 FROM run_proof_ledger r WHERE r.kind = :tombstone
        AND r.tenant_id = l.tenant_id AND r.run_id = l.run_id AND r.seq > l.seq)
"""

_ENTRY_WITHOUT_MATCHING_TRACE = f"""
SELECT l.seq, l.tenant_id, l.run_id, l.trace_id, l.root_hash, l.chain_length,
       t.tenant_id AS t_tenant_id, t.run_id AS t_run_id,
       t.seal_hash AS t_seal_hash, t.root_hash AS t_root_hash, t.chain_format AS t_chain_format,
       t.chain_length AS t_chain_length,
       (t.trace_id IS NOT NULL) AS t_exists, NOT {UNPROVEN_TRACE.format(t="t")} AS t_proven
FROM run_proof_ledger l
LEFT JOIN aos_traces t ON t.trace_id = l.trace_id
WHERE {_LIVE_ENTRY}
  AND (t.trace_id IS NULL OR {UNPROVEN_TRACE.format(t="t")}
       OR t.tenant_id IS DISTINCT FROM l.tenant_id OR t.run_id IS DISTINCT FROM l.run_id
       OR t.seal_hash IS DISTINCT FROM l.root_hash
       OR (t.chain_format = 1 AND t.root_hash IS DISTINCT FROM l.root_hash)
       OR t.chain_length IS DISTINCT FROM l.chain_length)
ORDER BY l.seq
"""  # noqa: S608 - constant fragments

# Traces other than the recorded one that hold a live entry's tenant and run id.
_OTHER_HOLDERS = f"""
SELECT l.seq, o.trace_id, CASE WHEN {UNPROVEN_TRACE.format(t="o")} THEN NULL
                               ELSE o.chain_format END AS chain_format,
       (o.seal_hash IS NOT NULL) AS sealed, o.status, o.started_at
FROM run_proof_ledger l
JOIN aos_traces o ON o.tenant_id = l.tenant_id AND o.run_id = l.run_id
                 AND o.trace_id IS DISTINCT FROM l.trace_id
WHERE {_LIVE_ENTRY}
ORDER BY l.seq, o.started_at, o.trace_id
"""  # noqa: S608 - constant fragments

# Live entries whose recorded trace is still in aos_traces but no longer in a proof format:
# the owner cleared its chain_format (or a v1 genesis_hash), so its steps became legacy rows
# any client may change.
_ENTRIES_OF_LEGACY_TRACES = f"""
SELECT l.seq, l.kind, l.tenant_id, l.run_id, l.trace_id, l.root_hash, l.chain_length
FROM run_proof_ledger l
JOIN aos_traces t ON t.trace_id = l.trace_id
WHERE {_LIVE_ENTRY}
  AND {UNPROVEN_TRACE.format(t="t")}
  AND (CAST(:tenant_id AS text) IS NULL OR l.tenant_id = :tenant_id)
  AND (CAST(:since AS timestamptz) IS NULL OR t.started_at >= :since)
ORDER BY l.seq
"""  # noqa: S608 - constant fragments

# Live entries of one legacy trace: recorded for its trace_id, or for its tenant and run id.
_ENTRIES_OF_ONE_LEGACY_TRACE = f"""
SELECT l.seq, l.kind, l.tenant_id, l.run_id, l.trace_id, l.root_hash, l.chain_length
FROM run_proof_ledger l
WHERE {_LIVE_ENTRY}
  AND (l.trace_id = :trace_id OR (l.tenant_id = :tenant_id AND l.run_id = :run_id))
ORDER BY l.seq
"""  # noqa: S608 - constant fragments

# Every sealed trace of a proof format (v1 or v2, native or adopted) has an entry.
_SEALED_TRACE_WITHOUT_ENTRY = f"""
SELECT t.tenant_id, t.run_id, t.seal_hash FROM aos_traces t
WHERE t.seal_hash IS NOT NULL AND NOT {UNPROVEN_TRACE.format(t="t")}
  AND NOT EXISTS (SELECT 1 FROM run_proof_ledger l WHERE l.tenant_id = t.tenant_id
                  AND l.run_id = t.run_id AND l.kind IN (:seal, :adoption))
ORDER BY t.seal_seq NULLS LAST, t.run_id
"""  # noqa: S608 - constant fragments

_SEALED_TWICE = """
SELECT tenant_id, run_id, array_agg(seq ORDER BY seq) AS seqs FROM run_proof_ledger
WHERE kind = :seal GROUP BY tenant_id, run_id HAVING count(*) > 1 ORDER BY min(seq)
"""


_KINDS = {
    "seal": EntryKind.SEAL.value,
    "adoption": EntryKind.ADOPTION.value,
    "tombstone": EntryKind.TOMBSTONE.value,
}


@dataclass(frozen=True)
class EntryOfLegacyTrace:
    """A live ledger entry (seal or adoption, no tombstone after it) whose trace is legacy:
    an alarm, never an UNSUPPORTED run."""

    seq: int
    kind: str
    tenant_id: str
    run_id: str
    trace_id: str
    root_hash: str
    chain_length: int

    def reason(self, found_trace_id: str | None = None) -> str:
        recorded = (
            f"ledger entry {self.seq} ({self.kind} of tenant {self.tenant_id!r}, run "
            f"{self.run_id!r}, trace {self.trace_id!r}, root {self.root_hash}, length "
            f"{self.chain_length})"
        )
        if found_trace_id is None or found_trace_id == self.trace_id:
            return (
                f"{recorded} records this run in a proof format, but its trace is no longer "
                "format v1 or v2 (chain_format, or a format-v1 genesis_hash, cleared): its "
                "steps are now legacy rows any client may change or delete, and the recorded "
                "run cannot be proven"
            )
        return (
            f"{recorded} records this run, but its trace is gone and the run id is now held "
            f"by legacy trace {found_trace_id!r}: the recorded run was replaced"
        )


def _holder(row: Any) -> str:
    form = "legacy" if row.chain_format is None else f"format v{row.chain_format}"
    sealed = "sealed" if row.sealed else "not sealed"
    return (
        f"trace {row.trace_id!r} ({form}, {sealed}, status {row.status!r}, started "
        f"{row.started_at.isoformat()})"
    )


async def _other_holders(conn: AsyncConnection) -> dict[int, list[str]]:
    holders: dict[int, list[str]] = {}
    for row in await conn.execute(text(_OTHER_HOLDERS), _KINDS):
        holders.setdefault(row.seq, []).append(_holder(row))
    return holders


async def ledger_run_id_collisions(conn: AsyncConnection) -> list[str]:
    """Traces other than the recorded one that hold the tenant and run id of a live ledger
    entry whose own trace is still there, one sentence per entry. Not a failure of the
    recorded run (AOS allowed legacy duplicates of a run id, and any writer may insert one),
    but whatever selects that run by its id alone may pick one of these."""
    holders = await _other_holders(conn)
    if not holders:
        return []
    present = {
        int(seq)
        for seq in (
            await conn.execute(
                text(
                    "SELECT l.seq FROM run_proof_ledger l JOIN aos_traces t"
                    " ON t.trace_id = l.trace_id WHERE l.seq = ANY(:seqs)"
                ),
                {"seqs": sorted(holders)},
            )
        ).scalars()
    }
    return [
        f"ledger entry {seq}: the run id is also held by {', '.join(found)}, which the ledger "
        "does not record; only the recorded trace is proven"
        for seq, found in sorted(holders.items())
        if seq in present
    ]


async def entries_of_legacy_traces(
    conn: AsyncConnection, *, tenant_id: str | None = None, since: datetime | None = None
) -> list[EntryOfLegacyTrace]:
    """Live entries whose recorded trace is still present but legacy (the sweep's alarm)."""
    rows = await conn.execute(
        text(_ENTRIES_OF_LEGACY_TRACES), {**_KINDS, "tenant_id": tenant_id, "since": since}
    )
    return [EntryOfLegacyTrace(**row._mapping) for row in rows]


async def entries_of_legacy_trace(
    conn: AsyncConnection, trace_id: str, tenant_id: str, run_id: str
) -> list[EntryOfLegacyTrace]:
    """Live entries recorded for this legacy trace's id, or for its tenant and run id."""
    rows = await conn.execute(
        text(_ENTRIES_OF_ONE_LEGACY_TRACE),
        {**_KINDS, "trace_id": trace_id, "tenant_id": tenant_id, "run_id": run_id},
    )
    return [EntryOfLegacyTrace(**row._mapping) for row in rows]


async def ledger_trace_mismatches(conn: AsyncConnection) -> list[str]:
    """Every disagreement between the ledger and the trace tables, one sentence each."""
    kinds = _KINDS
    problems: list[str] = []
    mismatched = list(await conn.execute(text(_ENTRY_WITHOUT_MATCHING_TRACE), kinds))
    holders = await _other_holders(conn) if any(not r.t_exists for r in mismatched) else {}
    for row in mismatched:
        where = f"ledger entry {row.seq} (tenant {row.tenant_id!r}, run {row.run_id!r})"
        if not row.t_exists:
            others = holders.get(row.seq)
            if others:
                problems.append(
                    f"{where}: the recorded trace {row.trace_id!r} is gone from aos_traces and "
                    f"the run id is now held by {', '.join(others)}: the run was replaced"
                )
            else:
                problems.append(f"{where}: the run is gone from aos_traces (deleted)")
        elif not row.t_proven:
            cleared = (
                "format v1 (its genesis_hash was cleared)"
                if row.t_chain_format == 1
                else "format v1 or v2 (its chain_format was cleared)"
            )
            problems.append(
                f"{where}: the recorded trace {row.trace_id!r} is no longer {cleared}: its "
                "steps are now legacy rows any client may change or delete (the ledger "
                f"recorded root {row.root_hash}, length {row.chain_length})"
            )
        elif (row.t_tenant_id, row.t_run_id) != (row.tenant_id, row.run_id):
            problems.append(
                f"{where}: the recorded trace {row.trace_id!r} now says tenant "
                f"{row.t_tenant_id!r}, run {row.t_run_id!r}"
            )
        elif row.t_seal_hash is None:
            problems.append(
                f"{where}: the trace's seal columns were cleared (the ledger recorded root "
                f"{row.root_hash}, length {row.chain_length})"
            )
        elif row.t_seal_hash != row.root_hash:
            problems.append(
                f"{where}: seal_hash mismatch (recorded {row.root_hash}, found {row.t_seal_hash})"
            )
        elif row.t_chain_format == 1 and row.t_root_hash != row.root_hash:
            # Format v1 keeps its seal in both columns (docs/hash-chain-v2.md).
            problems.append(
                f"{where}: root_hash mismatch (recorded {row.root_hash}, found "
                f"{row.t_root_hash}; the format-v1 seal is kept in root_hash and seal_hash)"
            )
        else:
            problems.append(
                f"{where}: chain_length mismatch (recorded {row.chain_length}, "
                f"found {row.t_chain_length})"
            )
    for row in await conn.execute(text(_SEALED_TRACE_WITHOUT_ENTRY), kinds):
        problems.append(
            f"tenant {row.tenant_id!r}, run {row.run_id!r}: sealed (root {row.seal_hash}) "
            "but has no ledger entry"
        )
    for row in await conn.execute(text(_SEALED_TWICE), kinds):
        problems.append(
            f"tenant {row.tenant_id!r}, run {row.run_id!r}: sealed more than once "
            f"(ledger entries {', '.join(str(s) for s in row.seqs)})"
        )
    return problems
