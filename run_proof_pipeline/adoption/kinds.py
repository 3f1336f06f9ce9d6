"""How many traces of each kind one store holds: legacy (AOS, unproven), adopted, native
(format v1 or v2; the format-v2 ones, chained by the database, counted apart too), and
retired (a tombstone in the ledger, rows possibly gone). For asset checks and the sweep.

The kind is read from `chain_format` (migration 0006, docs/hash-chain-v2.md): NULL is legacy,
as is a format-v1 trace whose genesis_hash was cleared (its verifier reads it as legacy)."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.ledger.queries import UNPROVEN_TRACE


class TraceKindCounts(BaseModel):
    legacy: int
    legacy_running: int
    adopted: int
    # Native traces of either format; of them, format v2 (every trace inserted since 0006).
    native: int
    # Runs with a tombstone in the ledger; of them, still present in aos_traces.
    retired: int
    retired_still_present: int
    native_v2: int = 0

    def summary(self) -> str:
        # Said only when there are some: a store of format-v1 runs reads as it always did.
        v2 = f" ({self.native_v2} format v2)" if self.native_v2 else ""
        return (
            f"{self.native} native{v2}, {self.adopted} adopted, {self.legacy} legacy "
            f"({self.legacy_running} running), {self.retired} retired "
            f"({self.retired_still_present} not yet removed)"
        )


_LEGACY = UNPROVEN_TRACE.format(t="t")
_TRACES = f"""
SELECT count(*) FILTER (WHERE {_LEGACY}) AS legacy,
       count(*) FILTER (WHERE {_LEGACY}
                        AND (status = 'running' OR completed_at IS NULL)) AS legacy_running,
       count(*) FILTER (WHERE NOT {_LEGACY} AND adopted_at IS NOT NULL) AS adopted,
       count(*) FILTER (WHERE NOT {_LEGACY} AND adopted_at IS NULL) AS native,
       count(*) FILTER (WHERE chain_format = 2 AND adopted_at IS NULL) AS native_v2
FROM aos_traces t
WHERE CAST(:tenant_id AS text) IS NULL OR tenant_id = :tenant_id
"""  # noqa: S608 - constant fragments

_RETIRED = """
SELECT count(*) AS retired,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM aos_traces t
                                      WHERE t.trace_id = l.trace_id)) AS still_present
FROM run_proof_ledger l
WHERE l.kind = 'tombstone' AND (CAST(:tenant_id AS text) IS NULL OR l.tenant_id = :tenant_id)
"""


async def count_trace_kinds(conn: AsyncConnection, tenant_id: str | None = None) -> TraceKindCounts:
    """Every kind of trace in the store, or in one tenant's part of it."""
    params = {"tenant_id": tenant_id}
    traces = (await conn.execute(text(_TRACES), params)).one()
    retired, still_present = 0, 0
    if await conn.scalar(text("SELECT to_regclass('run_proof_ledger') IS NOT NULL")):
        row = (await conn.execute(text(_RETIRED), params)).one()
        retired, still_present = int(row.retired), int(row.still_present)
    return TraceKindCounts(
        legacy=traces.legacy,
        legacy_running=traces.legacy_running,
        adopted=traces.adopted,
        native=traces.native,
        native_v2=traces.native_v2,
        retired=retired,
        retired_still_present=still_present,
    )
