"""Reading the ledger (run_proof_ledger) inside the caller's transaction or snapshot."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.ledger.entry import EntryKind, LedgerEntry

__all__ = [
    "database_name",
    "entries_for_run",
    "entries_for_runs",
    "ledger_context",
    "ledger_present",
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


# Stored values only (no hashing): the chain of each run is proven by `verify`; this finds
# runs deleted, re-sealed or rewritten relative to what the ledger recorded, without an id.
_ENTRY_WITHOUT_MATCHING_TRACE = """
SELECT l.seq, l.tenant_id, l.run_id, l.trace_id, l.root_hash, l.chain_length,
       t.trace_id AS t_trace_id, t.root_hash AS t_root_hash, t.chain_length AS t_chain_length,
       (t.run_id IS NOT NULL) AS t_exists
FROM run_proof_ledger l
LEFT JOIN aos_traces t ON t.tenant_id = l.tenant_id AND t.run_id = l.run_id
WHERE l.kind IN (:seal, :adoption)
  AND NOT EXISTS (
      SELECT 1 FROM run_proof_ledger r WHERE r.kind = :tombstone
        AND r.tenant_id = l.tenant_id AND r.run_id = l.run_id AND r.seq > l.seq)
  AND (t.run_id IS NULL OR t.trace_id IS DISTINCT FROM l.trace_id
       OR t.root_hash IS DISTINCT FROM l.root_hash
       OR t.chain_length IS DISTINCT FROM l.chain_length)
ORDER BY l.seq
"""

_SEALED_TRACE_WITHOUT_ENTRY = """
SELECT t.tenant_id, t.run_id, t.root_hash FROM aos_traces t
WHERE t.root_hash IS NOT NULL AND t.genesis_hash IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM run_proof_ledger l WHERE l.tenant_id = t.tenant_id
                  AND l.run_id = t.run_id AND l.kind IN (:seal, :adoption))
ORDER BY t.seal_seq NULLS LAST, t.run_id
"""

_SEALED_TWICE = """
SELECT tenant_id, run_id, array_agg(seq ORDER BY seq) AS seqs FROM run_proof_ledger
WHERE kind = :seal GROUP BY tenant_id, run_id HAVING count(*) > 1 ORDER BY min(seq)
"""


async def ledger_trace_mismatches(conn: AsyncConnection) -> list[str]:
    """Every disagreement between the ledger and the trace tables, one sentence each."""
    kinds = {
        "seal": EntryKind.SEAL.value,
        "adoption": EntryKind.ADOPTION.value,
        "tombstone": EntryKind.TOMBSTONE.value,
    }
    problems: list[str] = []
    for row in await conn.execute(text(_ENTRY_WITHOUT_MATCHING_TRACE), kinds):
        where = f"ledger entry {row.seq} (tenant {row.tenant_id!r}, run {row.run_id!r})"
        if not row.t_exists:
            problems.append(f"{where}: the run is gone from aos_traces (deleted)")
        elif row.t_root_hash is None:
            problems.append(
                f"{where}: the trace's seal columns were cleared (the ledger recorded root "
                f"{row.root_hash}, length {row.chain_length})"
            )
        elif row.t_trace_id != row.trace_id:
            problems.append(
                f"{where}: trace_id mismatch (recorded {row.trace_id}, found {row.t_trace_id})"
            )
        elif row.t_root_hash != row.root_hash:
            problems.append(
                f"{where}: root_hash mismatch (recorded {row.root_hash}, found {row.t_root_hash})"
            )
        else:
            problems.append(
                f"{where}: chain_length mismatch (recorded {row.chain_length}, "
                f"found {row.t_chain_length})"
            )
    for row in await conn.execute(text(_SEALED_TRACE_WITHOUT_ENTRY), kinds):
        problems.append(
            f"tenant {row.tenant_id!r}, run {row.run_id!r}: sealed (root {row.root_hash}) "
            "but has no ledger entry"
        )
    for row in await conn.execute(text(_SEALED_TWICE), kinds):
        problems.append(
            f"tenant {row.tenant_id!r}, run {row.run_id!r}: sealed more than once "
            f"(ledger entries {', '.join(str(s) for s in row.seqs)})"
        )
    return problems
