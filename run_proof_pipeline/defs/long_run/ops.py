"""The ops of `run_proof_long_run`: plan the segments, prove each in its own snapshot, check
the whole (proof/long_run.py holds the logic; docs/hash-chain-v1.md, "Proving a sealed run
in separately snapshotted segments", says why it is sound).

Everything an op hands to the next is plain values (proof.long_run's SegmentPlan,
SegmentOutcome, LongRunReport): no connection crosses ops, so any executor runs the job, the
segments in parallel processes under the multiprocess one. The database URL comes from the
trace store resource in every op; it is never an op's output, and every message is redacted.

As the plan's steps do (defs/plan/ops.py), a refusal or a FAILED verdict raises `Failure` with
its evidence as metadata: the Dagster run fails, and ops after it do not run.
"""

import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import psycopg
from dagster import DynamicOut, DynamicOutput, Failure, MetadataValue, OpExecutionContext, op
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.defs.long_run.config import LongRunConfig
from run_proof_pipeline.defs.resources import TraceStoreResource
from run_proof_pipeline.errors import RunProofError
from run_proof_pipeline.proof.long_run import (
    LongRunReport,
    SegmentOutcome,
    SegmentPlan,
    check_segments,
    plan_segments,
    prove_segment,
)
from run_proof_pipeline.settings import ConfigError, DatabaseUrl, redact

T = TypeVar("T")

PLAN_OP = "plan_long_run"
SEGMENT_OP = "prove_segment"
CHECK_OP = "check_long_run"


def _db_failure(step: str, exc: BaseException) -> Failure:
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    message = f"{step}: database error: {detail[0] if detail else type(exc).__name__}"
    return Failure(description=redact(message), metadata={"error": redact(str(exc))})


def _url(step: str, trace_store: TraceStoreResource) -> DatabaseUrl:
    try:
        return trace_store.url()
    except ConfigError as exc:
        raise Failure(description=f"{step}: configuration error: {exc}") from None


def _guarded(step: str, work: Callable[[], T]) -> T:
    """`work()`, its expected failures as one redacted line each (the database's, a refusal,
    an untrusted store, a bad setting)."""
    try:
        return work()
    except (DBAPIError, psycopg.Error, OSError) as exc:
        raise _db_failure(step, exc) from None
    except RunProofError as exc:
        raise Failure(description=redact(f"{step}: {exc.line()}")) from None


def _in_snapshot(
    step: str, trace_store: TraceStoreResource, work: Callable[[AsyncConnection], Awaitable[T]]
) -> T:
    _url(step, trace_store)  # a missing URL: this step's configuration error, one line
    return _guarded(step, lambda: trace_store.on_connection(work, snapshot=True))


@op(
    name=PLAN_OP,
    description="Plan: the sealed run's header in one snapshot, and its segments.",
    out=DynamicOut(SegmentPlan),
)
def plan_long_run(
    context: OpExecutionContext, config: LongRunConfig, trace_store: TraceStoreResource
) -> Iterator[DynamicOutput[SegmentPlan]]:
    plans = _in_snapshot(
        "Plan",
        trace_store,
        lambda conn: plan_segments(conn, config.run_id, config.tenant_id or None, config.segments),
    )
    first = plans[0]
    context.log.info(
        f"Plan: run {first.run_id!r} of tenant {first.tenant_id!r} (trace {first.trace_id}, "
        f"chain_length {first.sealed_length}) in {len(plans)} segments"
    )
    for plan in plans:
        yield DynamicOutput(plan, mapping_key=plan.mapping_key)


@op(
    name=SEGMENT_OP,
    description="One segment's steps checked in a REPEATABLE READ snapshot of its own.",
)
def prove_segment_op(
    context: OpExecutionContext, trace_store: TraceStoreResource, segment: SegmentPlan
) -> SegmentOutcome:
    url = _url("Segment", trace_store)
    started = time.perf_counter()
    done = 0

    def emit(steps: int) -> None:
        nonlocal done
        done += steps
        rate = done / max(time.perf_counter() - started, 1e-9)
        context.log.info(f"Segment {segment.index}: {done} steps read ({rate:,.0f} steps/s)")

    outcome = _guarded(f"Segment {segment.index}", lambda: prove_segment(url, segment, emit))
    context.add_output_metadata(
        {
            "segment": segment.index,
            "lower": "open" if segment.lower is None else segment.lower,
            "upper": "open" if segment.upper is None else segment.upper,
            "expected_steps": "unknown"
            if segment.expected_steps is None
            else segment.expected_steps,
            "steps": outcome.steps,
            "first_prev_hash": outcome.first_prev_hash or "—",
            "last_step_hash": outcome.last_step_hash or "—",
            "first_bad": outcome.first_bad or "—",
            "reason": outcome.reason or "—",
            "elapsed_seconds": MetadataValue.float(round(outcome.seconds, 4)),
        }
    )
    return outcome


def verdict_metadata(report: LongRunReport) -> dict[str, Any]:
    """The verdict as the check op shows it, VERIFIED or not."""
    return {
        "verification_status": report.status,
        "trace_id": report.trace_id,
        "tenant_id": report.tenant_id,
        "run_id": report.run_id,
        "steps": report.steps,
        "segments": report.segments,
        "chain_length": report.chain_length,
        "root_hash": report.root_hash or "None",
        # Which anchor rule 5 applied (docs/threat-model.md): never silently dropped.
        "anchor": report.anchor,
        "first_bad": report.first_bad or "—",
        "reason": report.reason or "—",
        "expected_hash": report.expected or "—",
        "found_hash": report.found or "—",
    }


@op(
    name=CHECK_OP,
    description="Check: borders, length, seal and ledger anchor re-read in one snapshot.",
)
def check_long_run(
    context: OpExecutionContext, trace_store: TraceStoreResource, outcomes: list[SegmentOutcome]
) -> LongRunReport:
    url = _url("Check", trace_store)
    report = _in_snapshot(
        "Check", trace_store, lambda conn: check_segments(conn, url.libpq(), outcomes)
    )
    metadata = verdict_metadata(report)
    if report.status != "VERIFIED":
        raise Failure(
            description=f"Check: {report.status} at {report.first_bad}: {report.reason}",
            metadata=metadata,
        )
    context.log.info(f"Check: VERIFIED, {report.steps} steps in {report.segments} segments")
    context.add_output_metadata(metadata)
    return report
