"""RunProofCoordinator: reads one run in one snapshot and proves it with the integrity core.

Same call as the AOS coordinator (`get_run_proof(session, tenant_id, run_id)`), but the
proof recomputes every hash from the row contents, streams the steps, and isolates tenants.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from run_proof_pipeline.coordinator.models import (
    FailureDetail,
    IntegrityVerificationResult,
    RunProofResult,
    TraceStepSummary,
    TraceSummary,
)
from run_proof_pipeline.integrity import Verdict, VerificationStatus
from run_proof_pipeline.proof.stream import prove_trace
from run_proof_pipeline.store.snapshot import TraceRow, begin_snapshot, read_trace
from run_proof_pipeline.store.step_rows import DecodedStep

NO_TRACE_REASON = "No trace found for run"
LEGACY_REASON = (
    "legacy trace without a format-v1 genesis hash: not provable; "
    "adopt it with `run-proof adopt --tenant-id T --run-id R` to prove it from now on"
)

# progress(steps_done, steps_total_or_None)
ProgressCallback = Callable[[int, int | None], None]


class RunProofCoordinator:
    def __init__(self, *, progress_every: int = 100_000) -> None:
        self._progress_every = progress_every

    async def get_run_proof(
        self,
        session: AsyncSession,
        tenant_id: str,
        run_id: str,
        *,
        include_payloads: bool = False,
        step_summary_limit: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> RunProofResult:
        started = time.perf_counter()
        if "\x00" in tenant_id or "\x00" in run_id:
            # PostgreSQL text cannot hold U+0000, so no stored run has this id: answer exactly
            # as for any missing run instead of sending a value the server rejects.
            return _not_found(tenant_id, run_id, started)
        async with _snapshot(session) as conn:
            trace = await read_trace(conn, tenant_id, run_id)
            if trace is None:
                return _not_found(tenant_id, run_id, started)
            if trace.genesis_hash is None:
                return _result(trace, _legacy_integrity(), [], 0, False, started)
            summaries: list[TraceStepSummary] = []
            truncated = False
            seen = 0

            def observe(step: DecodedStep) -> None:
                nonlocal truncated, seen
                seen += 1
                if step_summary_limit is None or len(summaries) < step_summary_limit:
                    summaries.append(step.summary(include_payloads))
                else:
                    truncated = True
                if progress is not None and seen % self._progress_every == 0:
                    progress(seen, trace.chain_length)

            streamed = await prove_trace(conn, trace, observe=observe)
        integrity = _integrity(streamed.verdict, anchored=streamed.anchored).model_copy(
            update={"adopted_at": trace.adopted_at}
        )
        steps_read = streamed.steps_read
        return _result(trace, integrity, summaries, steps_read, truncated, started)


def get_run_proof_coordinator() -> RunProofCoordinator:
    return RunProofCoordinator()


@asynccontextmanager
async def _snapshot(session: AsyncSession) -> AsyncIterator[AsyncConnection]:
    """A REPEATABLE READ transaction: the caller's session when it is idle, else a new
    connection (an open transaction cannot change its isolation level)."""
    if not session.in_transaction():
        conn = await session.connection()
        try:
            await begin_snapshot(conn)
            yield conn
        finally:
            await session.rollback()
        return
    bind = session.bind
    async with bind.connect() as conn:  # type: ignore[union-attr]
        await begin_snapshot(conn)
        try:
            yield conn
        finally:
            await conn.rollback()


def _integrity(verdict: Verdict, *, anchored: bool) -> IntegrityVerificationResult:
    failure = verdict.failure
    return IntegrityVerificationResult(
        model=verdict.model.value,
        root_hash=verdict.root_hash,
        chain_length=verdict.chain_length,
        verification_status=verdict.status.value,
        failure_reason=verdict.failure_reason,
        failure=None
        if failure is None
        else FailureDetail(
            location=failure.location,
            step_index=failure.step_index,
            rule=failure.rule,
            expected=failure.expected,
            found=failure.found,
            reason=failure.reason,
        ),
        sealed=verdict.sealed,
        genesis_hash=verdict.genesis_hash,
        head_hash=verdict.head_hash,
        anchored=anchored and verdict.status is VerificationStatus.VERIFIED,
    )


def _legacy_integrity() -> IntegrityVerificationResult:
    return IntegrityVerificationResult(
        model="NONE",
        root_hash=None,
        chain_length=0,
        verification_status="UNSUPPORTED",
        failure_reason=LEGACY_REASON,
    )


def _not_found(tenant_id: str, run_id: str, started: float) -> RunProofResult:
    return RunProofResult(
        run_id=run_id,
        tenant_id=tenant_id,
        integrity=IntegrityVerificationResult(
            model="NONE",
            root_hash=None,
            chain_length=0,
            verification_status="UNSUPPORTED",
            failure_reason=NO_TRACE_REASON,
        ),
        aos_traces=[],
        aos_trace_steps=[],
        verified_at=datetime.now(UTC),
        elapsed_seconds=time.perf_counter() - started,
    )


def _result(
    trace: TraceRow,
    integrity: IntegrityVerificationResult,
    summaries: list[TraceStepSummary],
    steps_read: int,
    truncated: bool,
    started: float,
) -> RunProofResult:
    return RunProofResult(
        run_id=trace.run_id,
        tenant_id=trace.tenant_id,
        integrity=integrity,
        aos_traces=[
            TraceSummary(
                trace_id=trace.trace_id,
                run_id=trace.run_id,
                status=trace.status,
                step_count=steps_read,
                started_at=trace.started_at,
                completed_at=trace.completed_at,
            )
        ],
        aos_trace_steps=summaries,
        verified_at=datetime.now(UTC),
        steps_read=steps_read,
        step_summaries_truncated=truncated,
        elapsed_seconds=time.perf_counter() - started,
    )
