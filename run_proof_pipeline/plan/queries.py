"""The seed's SQL. Step 1 without a target runs verbatim; every value is a bound parameter.

The seed picks a trace and counts its steps by run id alone, but a run id may be held by
several traces (legacy duplicates, which any writer may insert) or tenants. The plan runs the
seed's SQL word for word and shows it, but what it reports and compares comes from the trace
the coordinator proves (by trace_id); where the seed's SQL would pick or count other rows,
`RunIdCollisions` names them."""

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
# does not turn the night red. The seal is the format's (seal_hash, format v1 or v2): AOS's
# own root_hash is 'pending' or AOS's hash on every trace it writes (docs/hash-chain-v2.md).
# Legacy traces are not candidates (chain_format NULL, or a v1 trace whose genesis_hash was
# cleared: the audit and the sweep raise that alarm).
LATEST_SEALED_TRACE_SQL = """SELECT run_id, tenant_id, started_at, status
FROM aos_traces
WHERE seal_hash IS NOT NULL AND chain_format IS NOT NULL
  AND (chain_format <> 1 OR genesis_hash IS NOT NULL)
ORDER BY started_at DESC
LIMIT 1;"""


# The trace the coordinator proves for a tenant and run id is store.snapshot.read_trace()'s
# choice; its steps are counted by trace_id.
TRACE_STEP_COUNT_SQL = """SELECT COUNT(*) AS step_count
FROM aos_trace_steps
WHERE trace_id = :trace_id;"""

# Every trace holding a run id, in any tenant, with its proof format (NULL: legacy, or a
# format-v1 trace whose genesis_hash was cleared, which its verifier reads as legacy).
RUN_ID_HOLDERS_SQL = """SELECT trace_id, tenant_id,
       CASE WHEN chain_format = 1 AND genesis_hash IS NULL THEN NULL
            ELSE chain_format END AS chain_format,
       seal_hash IS NOT NULL AS sealed, status, started_at
FROM aos_traces
WHERE run_id = :run_id
ORDER BY started_at DESC, trace_id;"""

# What the seed's Step 2 count is made of: the step rows holding the run id, by trace.
SEED_COUNT_PARTS_SQL = """SELECT trace_id, tenant_id, COUNT(*) AS steps
FROM aos_trace_steps
WHERE run_id = :run_id
GROUP BY trace_id, tenant_id
ORDER BY trace_id, tenant_id;"""


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


async def trace_step_count(conn: AsyncConnection, trace_id: str) -> int:
    """The steps of one trace: the count compared with the proof's chain_length."""
    row = await conn.execute(text(TRACE_STEP_COUNT_SQL), {"trace_id": trace_id})
    return int(row.scalar_one())


@dataclass(frozen=True)
class RunIdHolder:
    trace_id: str
    tenant_id: str
    chain_format: int | None
    sealed: bool
    status: str
    started_at: datetime

    def describe(self) -> str:
        form = "legacy" if self.chain_format is None else f"format v{self.chain_format}"
        sealed = "sealed" if self.sealed else "not sealed"
        return (
            f"trace {self.trace_id!r} (tenant {self.tenant_id!r}, {form}, {sealed}, status "
            f"{self.status!r}, started_at {self.started_at.isoformat()})"
        )


async def run_id_holders(conn: AsyncConnection, run_id: str) -> list[RunIdHolder]:
    rows = await conn.execute(text(RUN_ID_HOLDERS_SQL), {"run_id": run_id})
    return [RunIdHolder(**row._mapping) for row in rows]


@dataclass(frozen=True)
class SeedCountPart:
    trace_id: str
    tenant_id: str | None
    steps: int

    def describe(self) -> str:
        return f"{self.steps} of trace {self.trace_id!r} (tenant {self.tenant_id!r})"


async def seed_count_parts(conn: AsyncConnection, run_id: str) -> list[SeedCountPart]:
    rows = await conn.execute(text(SEED_COUNT_PARTS_SQL), {"run_id": run_id})
    return [SeedCountPart(**row._mapping) for row in rows]


def picked_note(picked: TraceRef, holders: list[RunIdHolder], proved_trace_id: str | None) -> str:
    """Step 1's note when its run id is held by more than one trace ("" when it is not):
    every holder, which of them the seed's SQL returned, and which one is proven."""
    if len(holders) <= 1:
        return ""
    returned = [
        h.trace_id
        for h in holders
        if (h.tenant_id, h.started_at, h.status)
        == (picked.tenant_id, picked.started_at, picked.status)
    ]
    proved = next((h for h in holders if h.trace_id == proved_trace_id), None)
    return (
        f"run id {picked.run_id!r} is held by {len(holders)} traces: "
        + "; ".join(h.describe() for h in holders)
        + f". The seed's Step 1 SQL returned tenant {picked.tenant_id!r}, started_at "
        f"{picked.started_at.isoformat()}, status {picked.status!r} (the row of "
        + (", ".join(repr(t) for t in returned) or "no trace now")
        + "); the coordinator proves "
        + ("no trace" if proved is None else f"trace {proved.trace_id!r}")
        + f" of tenant {picked.tenant_id!r}, and the report shows that trace's fields"
    )


def count_note(
    run_id: str, proved_trace_id: str, trace_count: int, seed_count: int, parts: list[SeedCountPart]
) -> str:
    """Step 2's note when the seed's count by run id is not the proven trace's own count, or
    covers rows of other traces ("" when it is exactly that trace's steps)."""
    if seed_count == trace_count and all(p.trace_id == proved_trace_id for p in parts):
        return ""
    return (
        f"the seed's Step 2 SQL counts {seed_count} step rows with run id {run_id!r}: "
        + ("; ".join(p.describe() for p in parts) or "none")
        + f". The proven trace {proved_trace_id!r} has {trace_count} steps (counted by "
        "trace_id); that count is compared with chain_length"
    )
