"""The sweep's two schedules: incremental every night, full every week (docs/sweep.md,
"Dagster"). Both come from one factory: they differ only in name, cron, mode and wording.

Each tick adds any new tenant as a dynamic partition and requests one run per tenant with a
sealed trace; the run key holds the mode and the day, so a tick never requests the same
partition run twice.
"""

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from run_proof_pipeline.defs.deployment import DEPLOYMENT
from run_proof_pipeline.defs.resources import TraceStoreResource
from run_proof_pipeline.defs.sweep.assets import TENANTS, aos_traces_sweep_job


def _requests(
    context: ScheduleEvaluationContext, trace_store: TraceStoreResource, *, full: bool
) -> list[RunRequest] | SkipReason:
    tenants = trace_store.sealed_tenants()
    if not tenants:
        return SkipReason("no sealed trace in aos_traces yet")
    known = set(context.instance.get_dynamic_partitions(TENANTS))
    new = [t for t in tenants if t not in known]
    if new:
        context.instance.add_dynamic_partitions(TENANTS, new)
    day = (
        f"{context.scheduled_execution_time:%Y-%m-%d}"
        if context.scheduled_execution_time
        else "manual"
    )
    mode = "full" if full else "incremental"
    return [
        RunRequest(
            run_key=f"sweep-{mode}-{day}-{tenant}",
            partition_key=tenant,
            run_config={"ops": {"aos_traces_sweep": {"config": {"full": full}}}},
            tags={"run_proof/sweep": mode},
        )
        for tenant in tenants
    ]


def _sweep_schedule(name: str, cron: str, *, full: bool, description: str) -> ScheduleDefinition:
    @schedule(
        name=name,
        job=aos_traces_sweep_job,
        cron_schedule=cron,
        execution_timezone=DEPLOYMENT.timezone,
        default_status=DefaultScheduleStatus.RUNNING,
        description=description,
    )
    def _tick(
        context: ScheduleEvaluationContext, trace_store: TraceStoreResource
    ) -> list[RunRequest] | SkipReason:
        return _requests(context, trace_store, full=full)

    return _tick


nightly_sweep = _sweep_schedule(
    "nightly_sweep",
    DEPLOYMENT.sweep_cron,
    full=False,
    description="Nightly: every tenant, every sealed run not verified since its seal.",
)
weekly_full_sweep = _sweep_schedule(
    "weekly_full_sweep",
    DEPLOYMENT.full_sweep_cron,
    full=True,
    description="Weekly: re-verify every sealed run (only this catches an edit of an old run).",
)
