"""The nightly proof: the latest *sealed* trace, chosen when the tick fires.

Cron and timezone come from RUN_PROOF_NIGHTLY_CRON (default `0 2 * * *`) and
RUN_PROOF_TIMEZONE (default `UTC`). Default status RUNNING: it fires whenever the daemon runs.
"""

import os

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from run_proof_pipeline.automation.targets import plan_run_request
from run_proof_pipeline.pipeline.job import run_proof_plan
from run_proof_pipeline.pipeline.resources import TraceStoreResource
from run_proof_pipeline.plan.queries import TraceRef, latest_sealed_trace
from run_proof_pipeline.store.engine import run_on_connection

NIGHTLY_CRON = os.environ.get("RUN_PROOF_NIGHTLY_CRON", "0 2 * * *")
NIGHTLY_TIMEZONE = os.environ.get("RUN_PROOF_TIMEZONE", "UTC")


def find_latest_sealed(trace_store: TraceStoreResource) -> TraceRef | None:
    return run_on_connection(trace_store.url(), latest_sealed_trace)


@schedule(
    job=run_proof_plan,
    cron_schedule=NIGHTLY_CRON,
    execution_timezone=NIGHTLY_TIMEZONE,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Nightly: prove the latest sealed trace (a run in progress never turns it red).",
)
def nightly_run_proof(
    context: ScheduleEvaluationContext, trace_store: TraceStoreResource
) -> RunRequest | SkipReason:
    trace = find_latest_sealed(trace_store)
    if trace is None:
        return SkipReason("no sealed trace in aos_traces yet")
    return plan_run_request(
        trace.tenant_id,
        trace.run_id,
        run_key=None,
        coordinator_tests=True,
        origin=f"schedule:{context.scheduled_execution_time:%Y-%m-%d}"
        if context.scheduled_execution_time
        else "schedule",
    )
