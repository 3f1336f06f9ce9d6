"""All Dagster definitions of run-proof, assembled in one place: each domain's folder under
defs/ holds its own (docs/architecture.md, "Dagster"); this module only lists them."""

from __future__ import annotations

from dagster import Definitions

from run_proof_pipeline.defs.checkpoint.job import (
    run_proof_checkpoint,
    run_proof_checkpoint_schedule,
)
from run_proof_pipeline.defs.long_run.job import run_proof_long_run
from run_proof_pipeline.defs.plan.checks import trace_store_checks, trace_store_spec
from run_proof_pipeline.defs.plan.job import run_proof_plan
from run_proof_pipeline.defs.plan.schedules import nightly_run_proof
from run_proof_pipeline.defs.plan.sensors import new_sealed_traces, run_proof_failure_alert
from run_proof_pipeline.defs.resources import TraceStoreResource
from run_proof_pipeline.defs.retention.retirement import (
    aos_retention_retirement,
    aos_retention_retirement_job,
)
from run_proof_pipeline.defs.sweep.assets import aos_traces_sweep, aos_traces_sweep_job
from run_proof_pipeline.defs.sweep.celery import aos_traces_sweep_celery_job
from run_proof_pipeline.defs.sweep.schedules import nightly_sweep, weekly_full_sweep

defs = Definitions(
    assets=[trace_store_spec, aos_traces_sweep],
    asset_checks=[trace_store_checks],
    jobs=[
        run_proof_plan,
        run_proof_long_run,
        run_proof_checkpoint,
        aos_traces_sweep_job,
        aos_traces_sweep_celery_job,
        aos_retention_retirement_job,
    ],
    schedules=[
        nightly_run_proof,
        nightly_sweep,
        weekly_full_sweep,
        run_proof_checkpoint_schedule,
        aos_retention_retirement,
    ],
    sensors=[new_sealed_traces, run_proof_failure_alert],
    resources={"trace_store": TraceStoreResource()},
)
