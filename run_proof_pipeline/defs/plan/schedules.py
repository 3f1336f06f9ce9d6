"""The nightly proof of the latest *sealed* trace, chosen when the tick fires.

Cron and timezone: RUN_PROOF_NIGHTLY_CRON (default `0 2 * * *`) and RUN_PROOF_TIMEZONE (default
`UTC`), through defs/deployment.py. Default status RUNNING: it fires whenever the daemon runs.
"""

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from run_proof_pipeline.defs.deployment import DEPLOYMENT
from run_proof_pipeline.defs.plan.job import run_proof_plan
from run_proof_pipeline.defs.plan.run_requests import plan_run_request
from run_proof_pipeline.defs.resources import TraceStoreResource


@schedule(
    job=run_proof_plan,
    cron_schedule=DEPLOYMENT.nightly_cron,
    execution_timezone=DEPLOYMENT.timezone,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Nightly: prove the latest sealed trace (a run in progress never turns it red).",
)
def nightly_run_proof(
    context: ScheduleEvaluationContext, trace_store: TraceStoreResource
) -> RunRequest | SkipReason:
    trace = trace_store.latest_sealed()
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
