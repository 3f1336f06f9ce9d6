"""The sweep in Dagster: asset `aos_traces_sweep`, one partition per tenant, one check result
per partition, and its job (the schedules are in defs/sweep/schedules.py).

Partitioned by tenant (DynamicPartitionsDefinition "tenants"), not by day of started_at: a
tenant is what a failure is reported to and what the UI should colour red, tenants are few
and stable while days grow forever, and a late seal of an old run would land in an old day.
Inside a partition the sweep is incremental by seal (see sweep/state.py).  Each partition
is its own run, so the run queue runs tenants side by side (both cores here; on a cluster,
one pod or Celery worker per run), and within a run `workers` processes share a big tenant.
"""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    Config,
    DynamicPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    define_asset_job,
)
from pydantic import Field

from run_proof_pipeline.adoption.kinds import TraceKindCounts
from run_proof_pipeline.defs.plan.checks import TRACE_STORE
from run_proof_pipeline.defs.resources import TraceStoreResource
from run_proof_pipeline.proof.worker_limit import MAX_WORKERS, check_workers
from run_proof_pipeline.settings import ConfigError
from run_proof_pipeline.sweep.report import SweepProgress, SweepReport
from run_proof_pipeline.sweep.runner import SweepOptions, run_sweep

SWEEP_ASSET = AssetKey("aos_traces_sweep")
SWEEP_CHECK = "sweep_integrity"
TENANTS = "tenants"
# Failed runs listed in one check result (the count is always exact).
LISTED_IN_CHECK = 200

tenant_partitions = DynamicPartitionsDefinition(name=TENANTS)


class SweepConfig(Config):
    full: bool = Field(
        default=False,
        description="Re-verify every sealed run of the tenant (the weekly schedule sets it).",
    )
    # Bounded in the asset (`sweep_workers`), not by pydantic: Dagster would show pydantic's
    # ValidationError with a traceback instead of one line naming the key.
    workers: int = Field(
        default=2, description=f"Processes proving this tenant's runs, 1 to {MAX_WORKERS}."
    )
    progress_every_seconds: float = Field(default=30.0, gt=0, description="Progress log period.")


def sweep_workers(workers: int) -> int:
    """The sweep's worker count, 1 to MAX_WORKERS; else a Failure with one line naming the key
    (proof.worker_limit), raised before anything is read."""
    try:
        return check_workers(workers, source=f"{SWEEP_ASSET.to_user_string()}.config.workers")
    except ConfigError as exc:
        raise Failure(description=str(exc)) from None


def sweep_check_result(
    report: SweepReport, kinds: TraceKindCounts | None = None
) -> AssetCheckResult:
    failed = [
        {"run_id": f.run_id, "first_bad": f.first_bad, "status": f.status, "reason": f.reason}
        for f in report.failed[:LISTED_IN_CHECK]
    ]
    return AssetCheckResult(
        check_name=SWEEP_CHECK,
        asset_key=SWEEP_ASSET,
        passed=report.ok,
        severity=AssetCheckSeverity.ERROR,
        description=(
            f"{report.runs} runs verified, none failed"
            if report.ok
            else f"{report.failures} of {report.runs} runs FAILED; first: "
            f"{report.failed[0].run_id} at {report.failed[0].first_bad}"
        ),
        metadata={
            "mode": report.mode,
            "runs": report.runs,
            "steps": report.steps,
            "failures": report.failures,
            "steps_per_second": MetadataValue.float(round(report.steps_per_second, 1)),
            "elapsed_seconds": MetadataValue.float(round(report.elapsed_seconds, 3)),
            "failed_runs": MetadataValue.json(failed),
            **(
                {}
                if kinds is None
                else {
                    "trace_kinds": MetadataValue.json(kinds.model_dump()),
                    "trace_kinds_summary": kinds.summary(),
                }
            ),
        },
    )


@asset(
    key=SWEEP_ASSET,
    deps=[TRACE_STORE],
    partitions_def=tenant_partitions,
    check_specs=[
        AssetCheckSpec(
            SWEEP_CHECK,
            asset=SWEEP_ASSET,
            description="Every swept run of the tenant verifies (hash chain, seal, ledger).",
        )
    ],
    group_name="run_proof",
    kinds={"postgres"},
    description="Nightly proof of every sealed run, per tenant: counts, throughput, failed runs.",
)
def aos_traces_sweep(
    context: AssetExecutionContext, config: SweepConfig, trace_store: TraceStoreResource
) -> MaterializeResult:
    tenant = context.partition_key
    workers = sweep_workers(config.workers)

    def log_progress(progress: SweepProgress) -> None:
        context.log.info(f"sweep of tenant {tenant}: {progress.line()}")

    report = run_sweep(
        trace_store.url(),
        SweepOptions(
            full=config.full,
            tenant_id=tenant,
            workers=workers,
            progress_every=config.progress_every_seconds,
        ),
        progress=log_progress,
    )
    for failed in report.failed[:LISTED_IN_CHECK]:
        context.log.error(f"run {failed.run_id} FAILED at {failed.first_bad}: {failed.reason}")
    kinds = trace_store.trace_kinds(tenant)
    check = sweep_check_result(report, kinds)
    return MaterializeResult(metadata=dict(check.metadata), check_results=[check])


aos_traces_sweep_job = define_asset_job(
    "aos_traces_sweep_job",
    selection=[SWEEP_ASSET],
    description="Sweep one tenant's sealed runs (run it per partition or as a backfill).",
)
