"""Prove the latest sealed trace in one call (the asset checks run on demand use it)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from run_proof_pipeline.coordinator import RunProofResult, get_run_proof_coordinator
from run_proof_pipeline.plan.queries import TraceRef, latest_sealed_trace, step_count
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import session_scope


@dataclass(frozen=True)
class LatestProof:
    trace: TraceRef
    step_count: int
    proof: RunProofResult


def prove_latest_sealed(url: DatabaseUrl) -> LatestProof | None:
    async def go() -> LatestProof | None:
        async with session_scope(url) as session:
            conn = await session.connection()
            trace = await latest_sealed_trace(conn)
            if trace is None:
                return None
            count = await step_count(conn, trace.run_id)
            await session.rollback()
            proof = await get_run_proof_coordinator().get_run_proof(
                session, trace.tenant_id, trace.run_id, step_summary_limit=0
            )
            return LatestProof(trace, count, proof)

    return asyncio.run(go())
