"""Prove the latest sealed trace in one call (the asset checks run on demand use it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from run_proof_pipeline.coordinator import RunProofResult, get_run_proof_coordinator
from run_proof_pipeline.plan.queries import TraceRef, latest_sealed_trace, trace_step_count
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import run_in_session
from run_proof_pipeline.store.snapshot import begin_snapshot, read_trace

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class LatestProof:
    trace: TraceRef
    step_count: int
    proof: RunProofResult


def prove_latest_sealed(url: DatabaseUrl) -> LatestProof | None:
    async def go(session: AsyncSession) -> LatestProof | None:
        conn = await session.connection()
        await begin_snapshot(conn)
        trace = await latest_sealed_trace(conn)
        if trace is None:
            await session.rollback()
            return None
        # The steps of the trace the coordinator proves (by trace_id): a step row of
        # another trace or tenant holding the same run id is not this run's.
        proved = await read_trace(conn, trace.tenant_id, trace.run_id)
        count = 0 if proved is None else await trace_step_count(conn, proved.trace_id)
        await session.rollback()
        proof = await get_run_proof_coordinator().get_run_proof(
            session, trace.tenant_id, trace.run_id, step_summary_limit=0
        )
        return LatestProof(trace, count, proof)

    return run_in_session(url, go)
