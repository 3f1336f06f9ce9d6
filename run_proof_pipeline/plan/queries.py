"""The seed's SQL. Step 1 without a target runs verbatim; every value is a bound parameter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# Verbatim from the seed's Step 1.
LATEST_TRACE_SQL = """SELECT run_id, tenant_id, started_at, status
FROM aos_traces
ORDER BY started_at DESC
LIMIT 1;"""

# The same columns for a configured run.
TARGET_TRACE_SQL = """SELECT run_id, tenant_id, started_at, status
FROM aos_traces
WHERE run_id = :run_id AND tenant_id = :tenant_id
ORDER BY started_at DESC
LIMIT 1;"""

# The seed's Step 2, with the run id bound instead of pasted in.
STEP_COUNT_SQL = """SELECT COUNT(*) AS step_count
FROM aos_trace_steps
WHERE run_id = :run_id;"""

# For the nightly schedule: the latest trace that is sealed, so a run still being written
# does not turn the night red.
LATEST_SEALED_TRACE_SQL = """SELECT run_id, tenant_id, started_at, status
FROM aos_traces
WHERE root_hash IS NOT NULL AND genesis_hash IS NOT NULL
ORDER BY started_at DESC
LIMIT 1;"""


@dataclass(frozen=True)
class TraceRef:
    run_id: str
    tenant_id: str
    started_at: datetime
    status: str


async def latest_trace(conn: AsyncConnection) -> TraceRef | None:
    row = (await conn.execute(text(LATEST_TRACE_SQL))).first()
    return None if row is None else TraceRef(**row._mapping)


async def target_trace(conn: AsyncConnection, run_id: str, tenant_id: str) -> TraceRef | None:
    row = (
        await conn.execute(text(TARGET_TRACE_SQL), {"run_id": run_id, "tenant_id": tenant_id})
    ).first()
    return None if row is None else TraceRef(**row._mapping)


async def latest_sealed_trace(conn: AsyncConnection) -> TraceRef | None:
    row = (await conn.execute(text(LATEST_SEALED_TRACE_SQL))).first()
    return None if row is None else TraceRef(**row._mapping)


async def step_count(conn: AsyncConnection, run_id: str) -> int:
    return int((await conn.execute(text(STEP_COUNT_SQL), {"run_id": run_id})).scalar_one())
