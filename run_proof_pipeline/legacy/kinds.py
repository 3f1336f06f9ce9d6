"""How many traces of each kind one store holds: legacy (AOS, unproven), adopted, native,
and retired (a tombstone in the ledger, rows possibly gone). For asset checks and the sweep."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


class TraceKindCounts(BaseModel):
    legacy: int
    legacy_running: int
    adopted: int
    native: int
    # Runs with a tombstone in the ledger; of them, still present in aos_traces.
    retired: int
    retired_still_present: int

    def summary(self) -> str:
        return (
            f"{self.native} native, {self.adopted} adopted, {self.legacy} legacy "
            f"({self.legacy_running} running), {self.retired} retired "
            f"({self.retired_still_present} not yet removed)"
        )


_TRACES = """
SELECT count(*) FILTER (WHERE genesis_hash IS NULL) AS legacy,
       count(*) FILTER (WHERE genesis_hash IS NULL
                        AND (status = 'running' OR completed_at IS NULL)) AS legacy_running,
       count(*) FILTER (WHERE genesis_hash IS NOT NULL AND adopted_at IS NOT NULL) AS adopted,
       count(*) FILTER (WHERE genesis_hash IS NOT NULL AND adopted_at IS NULL) AS native
FROM aos_traces
WHERE CAST(:tenant_id AS text) IS NULL OR tenant_id = :tenant_id
"""

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
        retired=retired,
        retired_still_present=still_present,
    )
