"""The sweep's own state: which seal of which trace was last verified, and how it ended.

One row per trace in `run_proof_sweep_verified`, created here (CREATE TABLE IF NOT EXISTS),
keyed by trace and holding the `seal_seq` it was verified at.  An incremental sweep takes
every sealed trace without a VERIFIED row at its current `seal_seq`: new seals, and runs
that failed before (they stay red every night until someone looks).  A per-trace row rather
than a high-water mark on `seal_seq`: sequence numbers are handed out when a seal is
written, not when it commits, so a mark would skip a seal that commits late.
A row counts only for the tenant and run it was verified as: a trace row that later holds
the same trace_id under another tenant or run (the owner's delete and insert) is proved
again, not taken as verified (store/relations.py keeps trace_id unique within a snapshot).

The table lives beside the traces so that the CLI and Dagster share it; the sweep's role
needs CREATE on the schema once, then INSERT/UPDATE on this table only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.ledger.queries import UNPROVEN_TRACE
from run_proof_pipeline.proof.stream import StreamedProof
from run_proof_pipeline.store.session_pins import store_schema
from run_proof_pipeline.store.snapshot import TRACE_COLUMNS, TraceRow
from run_proof_pipeline.sweep.report import FailedRun

STATE_TABLE = "run_proof_sweep_verified"

CREATE_STATE = """
CREATE TABLE IF NOT EXISTS {schema}.run_proof_sweep_verified (
    trace_id text PRIMARY KEY,
    tenant_id text NOT NULL,
    run_id text NOT NULL,
    seal_seq bigint,
    status text NOT NULL,
    first_bad text,
    verified_at timestamptz NOT NULL DEFAULT now()
)
"""

# Every filter is a bound parameter; a NULL one is off.  Traces are paged by trace_id (the
# unique index) so that a sweep of a million runs holds one page at a time.  A sealed trace
# is one with the format's seal, seal_hash (format v1 and v2, migration 0006,
# docs/hash-chain-v2.md); legacy traces are left out (their live ledger entries are the
# runner's alarm: ledger/queries.py entries_of_legacy_traces).
_SELECTED = f"""
FROM aos_traces t
WHERE t.seal_hash IS NOT NULL AND NOT {UNPROVEN_TRACE.format(t="t")}
  AND (CAST(:tenant_id AS text) IS NULL OR t.tenant_id = :tenant_id)
  AND (CAST(:since AS timestamptz) IS NULL OR t.started_at >= :since)
  AND (:shards = 1 OR mod(abs(hashtext(t.trace_id)::bigint), :shards) = :shard)
  AND (:full OR NOT EXISTS (
        SELECT 1 FROM run_proof_sweep_verified v
        WHERE v.trace_id = t.trace_id AND v.tenant_id = t.tenant_id AND v.run_id = t.run_id
          AND v.status = 'VERIFIED'
          AND v.seal_seq IS NOT DISTINCT FROM t.seal_seq))
"""  # noqa: S608 - constant fragments
_PAGE = (
    f"SELECT {TRACE_COLUMNS} {_SELECTED} AND t.trace_id > :after ORDER BY t.trace_id LIMIT :limit"
)
_TOTALS = f"SELECT count(*), coalesce(sum(t.chain_length), 0) {_SELECTED}"

_RECORD = """
INSERT INTO run_proof_sweep_verified
    (trace_id, tenant_id, run_id, seal_seq, status, first_bad, verified_at)
SELECT r.trace_id, r.tenant_id, r.run_id, r.seal_seq, r.status, r.first_bad, now()
FROM unnest(CAST(:trace_ids AS text[]), CAST(:tenant_ids AS text[]), CAST(:run_ids AS text[]),
            CAST(:seal_seqs AS bigint[]), CAST(:statuses AS text[]), CAST(:first_bads AS text[]))
     AS r(trace_id, tenant_id, run_id, seal_seq, status, first_bad)
ON CONFLICT (trace_id) DO UPDATE SET
    tenant_id = EXCLUDED.tenant_id, run_id = EXCLUDED.run_id, seal_seq = EXCLUDED.seal_seq,
    status = EXCLUDED.status, first_bad = EXCLUDED.first_bad, verified_at = EXCLUDED.verified_at
"""


@dataclass(frozen=True)
class Selection:
    """Which sealed traces a sweep (or one shard of it) covers."""

    full: bool = False
    tenant_id: str | None = None
    since: datetime | None = None
    shards: int = 1
    shard: int = 0

    def params(self) -> dict[str, object]:
        return {
            "full": self.full,
            "tenant_id": self.tenant_id,
            "since": self.since,
            "shards": self.shards,
            "shard": self.shard,
        }


async def ensure_state_table(conn: AsyncConnection) -> None:
    # Qualified: connections pin `pg_catalog` first in the search path (store/session_pins.py).
    await conn.execute(text(CREATE_STATE.format(schema=store_schema())))


async def totals(conn: AsyncConnection, selection: Selection) -> tuple[int, int]:
    """(runs, steps) the selection covers now: the denominators of progress and ETA."""
    row = (await conn.execute(text(_TOTALS), selection.params())).one()
    return int(row[0]), int(row[1])


async def next_page(
    conn: AsyncConnection, selection: Selection, after: str, limit: int
) -> list[TraceRow]:
    rows = await conn.execute(text(_PAGE), {**selection.params(), "after": after, "limit": limit})
    return [TraceRow(**row._mapping) for row in rows]


async def record(conn: AsyncConnection, proofs: Sequence[tuple[TraceRow, StreamedProof]]) -> None:
    if not proofs:
        return
    firsts = [
        None
        if p.verdict.failure is None and p.verdict.status.value == "VERIFIED"
        else FailedRun.of(t, p).first_bad
        for t, p in proofs
    ]
    await conn.execute(
        text(_RECORD),
        {
            "trace_ids": [t.trace_id for t, _ in proofs],
            "tenant_ids": [t.tenant_id for t, _ in proofs],
            "run_ids": [t.run_id for t, _ in proofs],
            "seal_seqs": [t.seal_seq for t, _ in proofs],
            "statuses": [p.verdict.status.value for _, p in proofs],
            "first_bads": firsts,
        },
    )
