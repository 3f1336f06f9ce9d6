"""Retirement: a signed tombstone in the ledger before a format run's rows (v1 or v2) may go.

Retention and erasure are lawful; a silent deletion is not. `retire_run` signs a statement
naming the run as it stands (hash and length) and the reason, with the Ed25519 key that lives
outside the database, and inserts it into run_proof_retirements, whose trigger appends the
'tombstone' ledger entry (migration 0003). From then on the trace guard lets the trace row be
deleted or moved to an archive, and the checkpoint audit expects it gone. `audit_tombstones`
is the audit's half: every tombstone must carry a signature that verifies, or the deletion it
excuses is still an alarm.

A retired run's ids are never recorded again (migration 0004 refuses a new trace under them,
docs/ledger-v1.md "Ids are recorded once"). `audit_reuses` is the audit's half of that rule:
a seal or adoption after a run's tombstone that records it again is FAILED, naming both
entries, since only the table owner can get one past the guard.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from run_proof_pipeline.errors import ExitCode, RunProofError
from run_proof_pipeline.integrity import canonicalize
from run_proof_pipeline.ledger.entry import EntryKind, LedgerEntry
from run_proof_pipeline.ledger.keys import SigningKey, VerifierKey

STATEMENT_PREFIX = b"run-proof tombstone v1\n"


class RetirementError(RunProofError):
    """The run cannot be retired; nothing was written. `retire` exits 4 (no such run, or
    not retirable as it stands); `retire-batch` says it as a usage error (cli/legacy_commands)."""

    exit_code = ExitCode.NOT_FOUND


class Tombstone(BaseModel):
    tenant_id: str
    run_id: str
    trace_id: str
    chain_length: int
    root_hash: str
    reason: str

    def message(self) -> bytes:
        """What the signature covers: a fixed prefix and the canonical JSON of the fields."""
        record = {"v": 1, "kind": "tombstone", **self.model_dump()}
        return STATEMENT_PREFIX + canonicalize(record, strict=True)


class Retirement(BaseModel):
    tombstone: Tombstone
    signer: str
    ledger_seq: int
    retired_at: datetime
    newly_retired: bool


def _signer(key: VerifierKey) -> str:
    return f"{key.name}+{key.id.hex()}"


async def _as_it_stands(
    conn: AsyncConnection, tenant_id: str, run_id: str, trace_id: str | None = None
) -> tuple[str, str, int]:
    """(trace_id, hash, length) of the run's format trace, locked against a seal; only
    `trace_id` when given (the batch retirement names the trace it selected)."""
    # A format trace first: a legacy trace (chain_format NULL, docs/hash-chain-v2.md) may
    # share its run id (AOS allowed that). The seal is seal_hash for v1 and v2 (migration
    # 0006); the tombstone's `root_hash` names it.
    statement = text(
        "SELECT trace_id, chain_format, genesis_hash, seal_hash, chain_length FROM aos_traces"
        " WHERE tenant_id = :tenant_id AND run_id = :run_id"
        " AND (CAST(:trace_id AS text) IS NULL OR trace_id = :trace_id)"
        " ORDER BY chain_format IS NULL LIMIT 1 FOR UPDATE"
    )
    params = {"tenant_id": tenant_id, "run_id": run_id, "trace_id": trace_id}
    row = (await conn.execute(statement, params)).first()
    if row is None:
        raise RetirementError(f"no trace for tenant {tenant_id!r}, run {run_id!r}")
    if row.chain_format is None or (row.chain_format == 1 and row.genesis_hash is None):
        raise RetirementError(
            f"run {run_id!r} is a legacy trace: it was never in the ledger and needs no "
            "tombstone; archive or delete it as AOS does"
        )
    if row.seal_hash is not None:
        return row.trace_id, row.seal_hash, row.chain_length
    # Not sealed: the head as it stands. Format v2 chains steps in insertion order (chain
    # position); format v1 steps have no position and chain in step_index order.
    head = (
        await conn.execute(
            text(
                "SELECT count(*) AS n, (SELECT step_hash FROM aos_trace_steps"
                "  WHERE trace_id = :trace_id"
                "  ORDER BY chain_position DESC NULLS LAST, step_index DESC LIMIT 1) AS head"
                " FROM aos_trace_steps WHERE trace_id = :trace_id"
            ),
            {"trace_id": row.trace_id},
        )
    ).one()
    return row.trace_id, head.head or row.genesis_hash, int(head.n)


async def _existing(
    conn: AsyncConnection, tenant_id: str, run_id: str, as_it_stands: tuple[str, str, int]
) -> Retirement | None:
    """The trace's retirement, if any; RetirementError when the one recorded under its trace
    id is of another run or of the trace as it was (its ids were reused, or it changed since):
    calling that "already retired" would excuse the deletion of rows no tombstone names."""
    trace_id, head, length = as_it_stands
    statement = text(
        "SELECT tenant_id, run_id, trace_id, chain_length, root_hash, reason, signer,"
        " ledger_seq, retired_at FROM run_proof_retirements WHERE trace_id = :trace_id"
    )
    row = (await conn.execute(statement, {"trace_id": trace_id})).first()
    if row is None:
        return None
    where = f"trace {trace_id!r} was retired before (tombstone: ledger entry {row.ledger_seq})"
    if (row.tenant_id, row.run_id) != (tenant_id, run_id):
        raise RetirementError(
            f"{where} with another run: this trace reuses a retired trace id, which only the "
            "table owner can do (past migration 0004), and cannot be retired under it; "
            "see `run-proof checkpoint verify`"
        )
    later = (
        await conn.execute(
            text(
                "SELECT min(seq) FILTER (WHERE seq > :tombstone) AS after,"
                " bool_or(seq < :tombstone) AS before FROM run_proof_ledger"
                " WHERE trace_id = :trace_id AND kind IN ('seal', 'adoption')"
            ),
            {"trace_id": trace_id, "tombstone": row.ledger_seq},
        )
    ).one()
    if later.after is not None:
        why = (
            "its ids were reused, which only the table owner can do (past migration 0004)"
            if later.before
            else "it was sealed after its retirement"
        )
        raise RetirementError(
            f"{where}, and ledger entry {later.after} records it again after that: {why}, "
            "and the earlier tombstone does not retire what it holds; see "
            "`run-proof checkpoint verify`"
        )
    if (row.root_hash, row.chain_length) != (head, length):
        raise RetirementError(
            f"{where} as it stood then (hash {row.root_hash}, {row.chain_length} steps), but "
            f"it now holds hash {head}, {length} steps: it was written to after its "
            "retirement, and the tombstone does not name what it holds"
        )
    return Retirement(
        tombstone=_tombstone_of(row),
        signer=row.signer,
        ledger_seq=row.ledger_seq,
        retired_at=row.retired_at,
        newly_retired=False,
    )


def _tombstone_of(row: Any) -> Tombstone:
    return Tombstone(**{name: getattr(row, name) for name in Tombstone.model_fields})


async def retire_run(
    engine: AsyncEngine,
    tenant_id: str,
    run_id: str,
    reason: str,
    key: SigningKey,
    *,
    trace_id: str | None = None,
) -> Retirement:
    """Append the run's signed tombstone to the ledger; idempotent (a retired run is kept).
    With `trace_id`, only that trace of the run (else RetirementError: no trace)."""
    if not reason.strip():
        raise RetirementError("a retirement needs a reason (--reason)")
    async with engine.begin() as conn:
        trace_id, head, length = await _as_it_stands(conn, tenant_id, run_id, trace_id)
        existing = await _existing(conn, tenant_id, run_id, (trace_id, head, length))
        if existing is not None:
            return existing
        tombstone = Tombstone.model_validate(
            {"tenant_id": tenant_id, "run_id": run_id, "trace_id": trace_id}
            | {"chain_length": length, "root_hash": head, "reason": reason}
        )
        signer = _signer(key.verifier())
        row = (
            await conn.execute(
                text(
                    "INSERT INTO run_proof_retirements (tenant_id, run_id, trace_id,"
                    " chain_length, root_hash, reason, signer, signature)"
                    " VALUES (:tenant_id, :run_id, :trace_id, :chain_length, :root_hash,"
                    " :reason, :signer, :signature) RETURNING ledger_seq, retired_at"
                ),
                {
                    **tombstone.model_dump(),
                    "signer": signer,
                    "signature": base64.b64encode(key.sign(tombstone.message())).decode(),
                },
            )
        ).one()
    return Retirement(
        tombstone=tombstone,
        signer=signer,
        ledger_seq=row.ledger_seq,
        retired_at=row.retired_at,
        newly_retired=True,
    )


_TOMBSTONES = """
SELECT l.seq, l.tenant_id, l.run_id, l.trace_id, l.chain_length, l.root_hash,
       r.tenant_id AS r_tenant_id, r.run_id AS r_run_id, r.trace_id AS r_trace_id,
       r.chain_length AS r_chain_length, r.root_hash AS r_root_hash, r.reason, r.signer,
       r.signature
FROM run_proof_ledger l LEFT JOIN run_proof_retirements r ON r.ledger_seq = l.seq
WHERE l.kind = 'tombstone' ORDER BY l.seq
"""


def _signature_ok(signature: str, key: VerifierKey, message: bytes) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
    except ValueError:
        return False
    return key.verify(raw, message)


async def audit_tombstones(conn: AsyncConnection, key: VerifierKey) -> list[str]:
    """Every tombstone in the ledger that does not excuse a deletion, one sentence each."""
    problems: list[str] = []
    for row in await conn.execute(text(_TOMBSTONES)):
        where = f"ledger entry {row.seq} (tenant {row.tenant_id!r}, run {row.run_id!r})"
        ledger = (row.tenant_id, row.run_id, row.trace_id, row.chain_length, row.root_hash)
        recorded = (row.r_tenant_id, row.r_run_id, row.r_trace_id, row.r_chain_length)
        if row.signature is None:
            problems.append(f"{where}: tombstone without a signed retirement")
            continue
        if recorded + (row.r_root_hash,) != ledger:
            problems.append(f"{where}: tombstone disagrees with its retirement record")
            continue
        tombstone = _tombstone_of(row)
        if row.signer != _signer(key) or not _signature_ok(row.signature, key, tombstone.message()):
            problems.append(
                f"{where}: tombstone signature does not verify with key {_signer(key)}"
                " (the run's removal is not a lawful retirement)"
            )
    return problems


# --- ids recorded again after a tombstone (docs/ledger-v1.md "Ids are recorded once") -----

_ANCHORING = frozenset({EntryKind.SEAL.value, EntryKind.ADOPTION.value})

# Seals and adoptions after a tombstone of the same tenant and run, or of the same trace id,
# with whether the tombstone's trace had been sealed or adopted before it (then a later
# entry of that very trace is a second life: a trace is sealed once). Tombstones are few: the
# two joins (by run, by trace id) start from them, and each can be a hash join.
_RECORDED_AFTER_TOMBSTONE = """
WITH tombstones AS (
    SELECT seq, tenant_id, run_id, trace_id FROM run_proof_ledger WHERE kind = :tombstone
), later AS (
    SELECT t.seq AS tombstone, t.tenant_id AS t_tenant_id, t.run_id AS t_run_id,
           t.trace_id AS t_trace_id, l.seq, l.kind, l.tenant_id, l.run_id, l.trace_id
    FROM tombstones t JOIN run_proof_ledger l
      ON l.tenant_id = t.tenant_id AND l.run_id = t.run_id AND l.seq > t.seq
    WHERE l.kind IN (:seal, :adoption)
    UNION
    SELECT t.seq, t.tenant_id, t.run_id, t.trace_id, l.seq, l.kind, l.tenant_id, l.run_id,
           l.trace_id
    FROM tombstones t JOIN run_proof_ledger l ON l.trace_id = t.trace_id AND l.seq > t.seq
    WHERE l.kind IN (:seal, :adoption)
)
SELECT DISTINCT ON (a.seq) a.*,
       EXISTS (SELECT 1 FROM run_proof_ledger e WHERE e.trace_id = a.t_trace_id
               AND e.seq < a.tombstone AND e.kind IN (:seal, :adoption)) AS recorded_before
FROM later a
ORDER BY a.seq, a.tombstone DESC
"""

_PAST_THE_GUARD = (
    "past the reuse guard of migration 0004 (only the table owner can disable it), so the "
    "ledger no longer says which run the id names"
)


def _is_reuse(same_run: bool, same_trace: bool, recorded_before: bool) -> bool:
    # The one case that is not a reuse: the tombstone's own trace, retired before its first
    # seal (a writer that died) and sealed afterwards under the same ids.
    return not (same_run and same_trace and not recorded_before)


def reuse_after_retirement(entries: Sequence[LedgerEntry]) -> str | None:
    """Why one run's ledger entries (all kinds, of one tenant and run id, in seq order) show
    it recorded again after its tombstone, or None. For the per-run check (proof/anchors.py),
    which otherwise reads two seals as a seal cleared and rewritten."""
    tombstones = [e for e in entries if e.kind == EntryKind.TOMBSTONE.value]
    if not tombstones:
        return None
    anchoring = [e for e in entries if e.kind in _ANCHORING]
    for entry in anchoring:
        before = [t for t in tombstones if t.seq < entry.seq]
        if not before:
            continue
        tombstone = before[-1]
        recorded_before = any(
            e.trace_id == tombstone.trace_id and e.seq < tombstone.seq for e in anchoring
        )
        if _is_reuse(True, entry.trace_id == tombstone.trace_id, recorded_before):
            seqs = ", ".join(str(e.seq) for e in anchoring)
            return (
                f"the run was recorded again after its retirement (tombstone: ledger entry "
                f"{tombstone.seq}; seals and adoptions: ledger entries {seqs}): its id was "
                f"reused {_PAST_THE_GUARD}"
            )
    return None


async def audit_reuses(conn: AsyncConnection) -> list[str]:
    """Every seal or adoption that records a retired run, or a retired trace id, again."""
    kinds = {kind.value: kind.value for kind in EntryKind}
    problems: list[str] = []
    for row in await conn.execute(text(_RECORDED_AFTER_TOMBSTONE), kinds):
        same_run = (row.tenant_id, row.run_id) == (row.t_tenant_id, row.t_run_id)
        same_trace = row.trace_id == row.t_trace_id
        if not _is_reuse(same_run, same_trace, row.recorded_before):
            continue
        where = f"ledger entry {row.seq} (tenant {row.tenant_id!r}, run {row.run_id!r})"
        if same_run:
            what = (
                f"{row.kind} of trace {row.trace_id!r} after the run's tombstone (ledger entry "
                f"{row.tombstone}): the retired run id was recorded again"
            )
        else:
            what = (
                f"{row.kind} of trace {row.trace_id!r}, whose id was retired with another run "
                f"(tombstone: ledger entry {row.tombstone}): a retired trace id was used again"
            )
        problems.append(f"{where}: {what}, {_PAST_THE_GUARD}")
    return problems
