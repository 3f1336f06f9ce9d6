"""RunProofCoordinator: reads one run in one snapshot and proves it with the integrity core.

Same call as the AOS coordinator (`get_run_proof(session, tenant_id, run_id)`), but the
proof recomputes every hash from the row contents, streams the steps, and isolates tenants.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from run_proof_pipeline.coordinator.models import (
    FailureDetail,
    IntegrityVerificationResult,
    RunProofResult,
    TraceStepSummary,
    TraceSummary,
)
from run_proof_pipeline.integrity import Verdict, VerificationStatus
from run_proof_pipeline.ledger.queries import (
    EntryOfLegacyTrace,
    entries_of_legacy_trace,
    ledger_context,
)
from run_proof_pipeline.proof.segments import (
    DEFAULT_PARALLEL_MIN_STEPS,
    index_span,
    prove_trace_in_segments,
)
from run_proof_pipeline.proof.stream import SYNC_READ_MIN_STEPS, StreamedProof, prove_trace
from run_proof_pipeline.proof.worker_limit import MAX_WORKERS, check_workers
from run_proof_pipeline.settings import ConfigError
from run_proof_pipeline.store.native_line import native_status
from run_proof_pipeline.store.snapshot import TraceRow, begin_snapshot, read_trace
from run_proof_pipeline.store.step_rows import DecodedStep

NO_TRACE_REASON = "No trace found for run"
LEGACY_REASON = (
    "legacy trace without a format-v1 genesis hash: not provable; "
    "adopt it with `run-proof adopt --tenant-id T --run-id R` to prove it from now on"
)

# progress(steps_done, steps_total_or_None)
ProgressCallback = Callable[[int, int | None], None]

WORKERS_ENV = "RUN_PROOF_VERIFY_WORKERS"
# Segments carry their summaries back over a pipe: only for callers that ask for a few.
_PARALLEL_SUMMARY_LIMIT = 10_000


def step_summary(step: DecodedStep, include_payloads: bool) -> TraceStepSummary:
    """A decoded step as AOS's callers see it (docs/aos-compat.md); payloads on request."""
    return TraceStepSummary(
        step_index=step.step_index,
        skill_name=step.skill_name,
        status=step.status,
        duration_ms=step.duration_ms,
        cost_cents=step.cost_cents,
        params=step.params if include_payloads else None,
        outcome_data=step.outcome_data if include_payloads else None,
    )


def default_workers() -> int:
    """Processes for one long run's proof: RUN_PROOF_VERIFY_WORKERS (1 to MAX_WORKERS, else a
    ConfigError naming it), else one per core up to 8."""
    value = os.environ.get(WORKERS_ENV)
    if value is None or value.strip() == "":
        return max(1, min(os.cpu_count() or 1, 8))
    try:
        return check_workers(int(value), source=WORKERS_ENV)
    except (ValueError, ConfigError):
        # The value as it was set, quoted: "1.5" and " 0" are not what the operator meant.
        raise ConfigError(
            f"{WORKERS_ENV} must be a whole number from 1 to {MAX_WORKERS}, got {value!r}"
        ) from None


def useful_segments(steps: int, workers: int, parallel_min_steps: int) -> int:
    """How many segments (one process each) a run of `steps` steps is split into.

    None below `parallel_min_steps` (1: the run stays in process). Above it at most `workers`,
    and never a segment shorter than half of `parallel_min_steps`: the threshold says a run of
    that length is worth two processes, so half of it is what one worker's start-up is worth
    (docs/benchmarks.md). A 300-step run with workers 6 and parallel_min_steps 200 gets 3
    segments, not 6 processes of which half would cost more than they save."""
    if steps < parallel_min_steps:
        return 1
    smallest = max(1, parallel_min_steps // 2)
    return max(1, min(workers, steps // smallest))


class RunProofCoordinator:
    """`workers` > 1 proves a run of at least `parallel_min_steps` steps in up to that many
    processes inside the same snapshot (proof.segments; how many: `useful_segments`);
    shorter runs stay in process, where one of `sync_read_min_steps` or more is read through
    a second connection joining the snapshot (proof.stream.SYNC_READ_MIN_STEPS)."""

    def __init__(
        self,
        *,
        progress_every: int = 100_000,
        workers: int | None = None,
        parallel_min_steps: int = DEFAULT_PARALLEL_MIN_STEPS,
        sync_read_min_steps: int = SYNC_READ_MIN_STEPS,
    ) -> None:
        self._progress_every = progress_every
        # An explicit count is checked like every other (proof.worker_limit): out of range is
        # a ConfigError, never silently raised to 1 or let through.
        self._workers = (
            default_workers() if workers is None else check_workers(workers, source="workers")
        )
        self._parallel_min_steps = max(1, parallel_min_steps)
        self._sync_read_min_steps = max(1, sync_read_min_steps)

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
            if trace.legacy:
                recorded = await _ledger_entries_of_legacy(conn, trace)
                if recorded:
                    # The ledger recorded this run in format v1: a legacy trace now is an
                    # alarm (its seal was undone by the owner, or the run was replaced).
                    return _result(trace, _turned_legacy(trace, recorded), [], 0, False, started)
                return _result(trace, _legacy_integrity(), [], 0, False, started)
            span = None
            if (
                self._workers > 1
                and step_summary_limit is not None
                and step_summary_limit <= _PARALLEL_SUMMARY_LIMIT
            ):
                span = await index_span(conn, trace.trace_id)
            segments = 1
            if span is not None:
                steps = span[1] - span[0] + 1
                segments = useful_segments(steps, self._workers, self._parallel_min_steps)
            if span is not None and segments > 1:
                total = trace.chain_length
                segmented = await prove_trace_in_segments(
                    conn,
                    trace,
                    span,
                    workers=segments,
                    summary_limit=step_summary_limit or 0,
                    progress_every=self._progress_every,
                    progress=None if progress is None else (lambda done: progress(done, total)),
                )
                streamed: StreamedProof = segmented.proof
                segment_workers = segmented.workers
                summaries = [step_summary(s, include_payloads) for s in segmented.summaries]
                truncated = streamed.steps_read > len(summaries)
            else:
                segment_workers = 0
                streamed, summaries, truncated = await self._prove_in_process(
                    conn, trace, include_payloads, step_summary_limit, progress
                )
        integrity = _integrity(streamed.verdict, anchored=streamed.anchored).model_copy(
            update={"adopted_at": trace.adopted_at, "anchor": streamed.anchor}
        )
        steps_read = streamed.steps_read
        result = _result(trace, integrity, summaries, steps_read, truncated, started)
        path = native_status(trace.chain_format)
        return result.model_copy(update={"segment_workers": segment_workers, "decode_path": path})

    async def _prove_in_process(
        self,
        conn: AsyncConnection,
        trace: TraceRow,
        include_payloads: bool,
        step_summary_limit: int | None,
        progress: ProgressCallback | None,
    ) -> tuple[StreamedProof, list[TraceStepSummary], bool]:
        summaries: list[TraceStepSummary] = []
        truncated = False
        seen = 0

        def observe(step: DecodedStep) -> None:
            nonlocal truncated, seen
            seen += 1
            if step_summary_limit is None or len(summaries) < step_summary_limit:
                summaries.append(step_summary(step, include_payloads))
            else:
                truncated = True
            if progress is not None and seen % self._progress_every == 0:
                progress(seen, trace.chain_length)

        def walked(rows: int) -> None:
            # Rows the compiled walk verified after the summaries (proof/stream.py): counted
            # and reported as observe() would have, one by one.
            nonlocal truncated, seen
            truncated = True
            every = self._progress_every
            for multiple in range(seen // every + 1, (seen + rows) // every + 1):
                if progress is not None:
                    progress(multiple * every, trace.chain_length)
            seen += rows

        streamed = await prove_trace(
            conn,
            trace,
            observe=observe,
            # Without a limit every step is summarized: each one is observed.
            observe_first=step_summary_limit,
            walked=walked,
            sync_read_min_steps=self._sync_read_min_steps,
        )
        return streamed, summaries, truncated


def get_run_proof_coordinator(
    *,
    workers: int | None = None,
    parallel_min_steps: int = DEFAULT_PARALLEL_MIN_STEPS,
    progress_every: int = 100_000,
) -> RunProofCoordinator:
    return RunProofCoordinator(
        progress_every=progress_every, workers=workers, parallel_min_steps=parallel_min_steps
    )


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
    if not isinstance(bind, AsyncEngine):  # the sessions of store/engine.py are an engine's
        raise TypeError(f"a busy session's proof needs an engine to connect with, not {bind!r}")
    async with bind.connect() as conn:
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


async def _ledger_entries_of_legacy(
    conn: AsyncConnection, trace: TraceRow
) -> list[EntryOfLegacyTrace]:
    """Live ledger entries (seal or adoption, no tombstone after) recorded for this legacy
    trace's id or for its tenant and run id."""
    present, _ = await ledger_context(conn)
    if not present:
        return []
    return await entries_of_legacy_trace(conn, trace.trace_id, trace.tenant_id, trace.run_id)


def _turned_legacy(
    trace: TraceRow, entries: list[EntryOfLegacyTrace]
) -> IntegrityVerificationResult:
    entry = entries[0]
    reason = "ledger: " + "; ".join(e.reason(trace.trace_id) for e in entries)
    return IntegrityVerificationResult(
        model="HASH_CHAIN",
        root_hash=None,
        chain_length=0,
        verification_status="FAILED",
        failure_reason=reason,
        failure=FailureDetail(
            location="ledger",
            step_index=None,
            rule=5,
            expected=f"trace {entry.trace_id} in a hash-chain format (root {entry.root_hash})",
            found=f"legacy trace {trace.trace_id} ({_why_legacy(trace)})",
            reason=reason,
        ),
    )


def _why_legacy(trace: TraceRow) -> str:
    if trace.chain_format is None:
        return "chain_format NULL"
    return f"chain_format {trace.chain_format}, genesis_hash NULL"


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
