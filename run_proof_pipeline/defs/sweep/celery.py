"""The sweep on Celery workers: job `aos_traces_sweep_celery_job`, the same asset and check as
`aos_traces_sweep_job` (defs/sweep/assets.py), its step sent to a Celery queue by
dagster-celery's executor instead of run in a process of the run's own.

Broker and result backend come from RUN_PROOF_CELERY_BROKER and RUN_PROOF_CELERY_BACKEND as
Dagster `{"env": ...}` config: nothing is read when the code location loads (so the
definitions load, and the other jobs run, without them), Dagster reads them when a run of this
job starts, and the run config it stores holds the variables' names, never a broker password.
There is no default on purpose: dagster-celery's own (a RabbitMQ broker on localhost, `rpc://`)
would send the step to whatever listens there, not to the workers this deployment started; a
run without them fails at launch naming the variable. docs/sweep.md ("Using the cores, and a
cluster") gives the values, how to start the workers, and what the test proves.

The workers need what a run of the in-process job needs, in their own environment:
DATABASE_URL and USE_POSTGRES_TRACES (the trace store resource, defs/resources.py),
DAGSTER_HOME and DAGSTER_PG_URL (the instance: a step's events go to Dagster's PostgreSQL
storage, which the launching process and every worker share; the instance ref a task carries
names DAGSTER_PG_URL, not its value), and the same broker and backend.
"""

from __future__ import annotations

from dagster import define_asset_job
from dagster_celery import celery_executor

from run_proof_pipeline.defs.sweep.assets import SWEEP_ASSET

BROKER_ENV = "RUN_PROOF_CELERY_BROKER"
BACKEND_ENV = "RUN_PROOF_CELERY_BACKEND"
# The executor's name in the run's events (`celery` is dagster-celery's own).
CELERY_EXECUTOR_NAME = "run_proof_celery"

sweep_celery_executor = celery_executor.configured(
    {"broker": {"env": BROKER_ENV}, "backend": {"env": BACKEND_ENV}},
    name=CELERY_EXECUTOR_NAME,
)

aos_traces_sweep_celery_job = define_asset_job(
    "aos_traces_sweep_celery_job",
    selection=[SWEEP_ASSET],
    executor_def=sweep_celery_executor,
    description=(
        "Sweep one tenant's sealed runs on a Celery worker (dagster-celery; broker and backend "
        f"from ${BROKER_ENV} and ${BACKEND_ENV})."
    ),
)
