"""Prove one trace inside an open snapshot, streaming its steps: constant memory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.integrity import (
    ChainVerifier,
    StoredTrace,
    Verdict,
    VerificationStatus,
)
from run_proof_pipeline.proof.anchors import lookup_anchor
from run_proof_pipeline.store.snapshot import TraceRow, stream_step_rows
from run_proof_pipeline.store.step_rows import DecodedStep, StepRowDecoder

# Called with every decoded step (summaries, progress); keep it cheap.
StepObserver = Callable[[DecodedStep], None]


@dataclass(frozen=True)
class StreamedProof:
    verdict: Verdict
    steps_read: int
    anchored: bool


def stored_trace(trace: TraceRow) -> StoredTrace:
    return StoredTrace(
        tenant_id=trace.tenant_id,
        run_id=trace.run_id,
        trace_id=trace.trace_id,
        agent_id=trace.agent_id,
        plan_id=trace.plan_id,
        plan=trace.plan,
        started_at=trace.started_at,
        status=trace.status,
        completed_at=trace.completed_at,
        genesis_hash=trace.genesis_hash,
        root_hash=trace.root_hash,
        chain_length=trace.chain_length,
    )


async def prove_trace(
    conn: AsyncConnection, trace: TraceRow, *, observe: StepObserver | None = None
) -> StreamedProof:
    """Rules 1-5 for one trace whose row was read in the snapshot `conn` holds."""
    verifier = ChainVerifier(stored_trace(trace))
    decoder = StepRowDecoder()
    steps_read = 0
    async for row in stream_step_rows(conn, trace.trace_id):
        step = decoder.decode(row)
        steps_read += 1
        if observe is not None:
            observe(step)
        failure = (
            verifier.feed_unverifiable(step.step_index, step.error)
            if step.error is not None or step.canonical is None
            else verifier.feed_canonical(
                step.step_index, step.canonical, step.prev_hash, step.step_hash
            )
        )
        if failure is not None:
            # The first failure is the verdict; reading on would only cost time.
            break
    lookup = await lookup_anchor(conn, trace)
    verdict = verifier.finish(lookup.anchor)
    if lookup.failure is not None and verdict.failure is None:
        verdict = replace(verdict, status=VerificationStatus.FAILED, failure=lookup.failure)
    return StreamedProof(verdict, steps_read, anchored=lookup.anchor is not None)
