"""The sweep's Celery job (`aos_traces_sweep_celery_job`, defs/sweep/celery.py) on a real Redis
broker and two real Celery workers: each tenant partition's step runs in a worker, the tampered
run is FAILED at its first bad step, and the check results equal those of the same partitions
materialized in process by `aos_traces_sweep_job` (docs/sweep.md, "Using the cores, and a
cluster").

Redis is Debian's redis-server (scripts/bootstrap.sh installs it); without it the test skips
and says why. Dagster's storage is the project's dagster.yaml on the throwaway PostgreSQL
server (`fresh_dagster_instance`), shared by this process and the workers, as a deployment's
instance is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetCheckEvaluation,
    DagsterEventType,
    DagsterInstance,
    execute_job,
)
from dagster._core.definitions.reconstruct import ReconstructableRepository

from benchmarks.celery_cluster import INSTALL_HINT, CeleryCluster, redis_server
from run_proof_pipeline.defs.sweep.assets import SWEEP_ASSET, TENANTS
from run_proof_pipeline.defs.sweep.celery import BACKEND_ENV, BROKER_ENV, CELERY_EXECUTOR_NAME
from run_proof_pipeline.plan.coordinator_tests import project_root
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.stores import owner_sql, record_run

pytestmark = pytest.mark.slow

CELERY_JOB = "aos_traces_sweep_celery_job"
IN_PROCESS_JOB = "aos_traces_sweep_job"
TENANT_OK, TENANT_BAD = "tenant-a", "tenant-b"
RUNS, STEPS = 3, 4


def _run_config(workers: int) -> dict[str, Any]:
    # Full sweeps: both jobs sweep the same store one after the other, and an incremental
    # sweep would skip what the first one verified.
    return {"ops": {"aos_traces_sweep": {"config": {"full": True, "workers": workers}}}}


# On Celery with 2 shard processes (started inside the worker's pool process as they are in a
# run's process), in process with 1: the verdicts must not depend on either.
RUN_CONFIG = _run_config(2)
IN_PROCESS_CONFIG = _run_config(1)
# What must be equal between the two jobs; the timings differ by nature.
COMPARED = ("mode", "runs", "steps", "failures", "failed_runs", "trace_kinds")


def _require_redis() -> None:
    # A skip, reported with its reason by `-ra` (pyproject.toml's addopts): .ci/run's
    # bootstrap installs redis-server, so CI skips only where apt could not install it.
    if redis_server() is None:
        pytest.skip(INSTALL_HINT)


def _comparable(evaluation: AssetCheckEvaluation) -> dict[str, Any]:
    metadata = {k: v.value for k, v in evaluation.metadata.items()}
    return {
        "passed": evaluation.passed,
        "severity": evaluation.severity.value,
        **{key: metadata[key] for key in COMPARED},
    }


def _celery_evidence(instance: DagsterInstance, run_id: str) -> tuple[set[str], set[int]]:
    """The worker node names the run's engine events name, and the PIDs its step events
    came from."""
    hostnames: set[str] = set()
    step_pids: set[int] = set()
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == DagsterEventType.ENGINE_EVENT and "in celery worker" in (
            event.message or ""
        ):
            data = event.engine_event_data.metadata
            hostnames.add(str(data["Celery worker"].value))
        if event.event_type in (DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS):
            assert event.pid is not None
            step_pids.add(event.pid)
    return hostnames, step_pids


def test_celery_sweep_runs_in_workers_and_matches_in_process(
    store: DatabaseUrl,
    fresh_dagster_instance: DagsterInstance,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    _require_redis()
    for i in range(RUNS):
        record_run(store, TENANT_OK, f"a-{i}", steps=STEPS)
        record_run(store, TENANT_BAD, f"b-{i}", steps=STEPS)
    touched = owner_sql(
        store,
        "UPDATE aos_trace_steps SET skill_name = 'evil' WHERE run_id = %s AND step_index = 2",
        ("b-1",),
        table="aos_trace_steps",
    )
    assert touched == 1
    instance = fresh_dagster_instance
    instance.add_dynamic_partitions(TENANTS, [TENANT_OK, TENANT_BAD])

    # What a run of either job reads: the trace store (defs/resources.py) and, for the
    # Celery job, the broker and backend (defs/sweep/celery.py). DAGSTER_PG_URL is set by
    # the fixture; the workers get the same environment.
    monkeypatch.setenv("DATABASE_URL", store.libpq())
    monkeypatch.setenv("USE_POSTGRES_TRACES", "true")
    monkeypatch.setenv("DAGSTER_HOME", str(instance.root_directory))
    cluster = CeleryCluster(tmp_path / "celery")
    request.addfinalizer(cluster.stop)  # before anything starts: whatever did is stopped
    cluster.start_redis()
    monkeypatch.setenv(BROKER_ENV, cluster.broker_url)
    monkeypatch.setenv(BACKEND_ENV, cluster.backend_url)
    nodes = cluster.start_workers(2, dict(os.environ), cwd=project_root())
    assert len(set(nodes)) == 2

    job = ReconstructableRepository.for_module(
        "run_proof_pipeline.definitions", "defs", working_directory=str(project_root())
    ).get_reconstructable_job(CELERY_JOB)
    on_celery: dict[str, dict[str, Any]] = {}
    for tenant in (TENANT_OK, TENANT_BAD):
        pool = cluster.worker_pids()
        with execute_job(
            job, instance=instance, run_config=RUN_CONFIG, tags={"dagster/partition": tenant}
        ) as result:
            assert result.success, f"{tenant}: the celery run failed"
            run = instance.get_run_by_id(result.run_id)
            assert run is not None and run.tags["dagster/partition"] == tenant
            hostnames, step_pids = _celery_evidence(instance, result.run_id)
            # The step ran in one of the two workers: its node name is in the engine event
            # the worker wrote, and its events came from that worker's pool process, not
            # from this process.
            assert len(hostnames) == 1 and hostnames <= set(nodes), (hostnames, nodes)
            assert step_pids and step_pids <= pool and os.getpid() not in step_pids
            [evaluation] = result.get_asset_check_evaluations()
            on_celery[tenant] = _comparable(evaluation)
        [executor_line] = {
            e.message
            for e in instance.all_logs(result.run_id)
            if e.dagster_event is not None and "celery task for step" in (e.message or "")
        }
        assert executor_line.startswith('Submitting celery task for step "aos_traces_sweep"')
    assert instance.get_run_by_id(result.run_id) is not None

    bad = on_celery[TENANT_BAD]
    assert not bad["passed"] and bad["severity"] == "ERROR" and bad["failures"] == 1
    [failed] = bad["failed_runs"]
    assert (failed["run_id"], failed["status"], failed["first_bad"]) == ("b-1", "FAILED", "step 2")
    assert on_celery[TENANT_OK]["passed"] and on_celery[TENANT_OK]["failures"] == 0
    assert on_celery[TENANT_OK]["runs"] == RUNS and on_celery[TENANT_OK]["steps"] == RUNS * STEPS

    from run_proof_pipeline.definitions import defs

    in_process_job = defs.resolve_job_def(IN_PROCESS_JOB)
    assert in_process_job.executor_def.name != CELERY_EXECUTOR_NAME
    for tenant in (TENANT_OK, TENANT_BAD):
        local = in_process_job.execute_in_process(
            run_config=IN_PROCESS_CONFIG, instance=instance, partition_key=tenant
        )
        assert local.success
        [evaluation] = local.get_asset_check_evaluations()
        assert _comparable(evaluation) == on_celery[tenant], tenant
    assert instance.get_materialized_partitions(SWEEP_ASSET) == {TENANT_OK, TENANT_BAD}
    # The asset stores no output, so the workers need no shared file system (docs/sweep.md):
    # the I/O manager wrote nothing under the instance's storage.
    storage = Path(instance.root_directory) / "storage"
    assert not list(storage.rglob("aos_traces_sweep*")), sorted(storage.rglob("*"))


def test_celery_job_without_its_broker_setting_fails_at_launch_naming_it(
    fresh_dagster_instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No fallback to dagster-celery's default broker (RabbitMQ on localhost): a run of the
    Celery job without RUN_PROOF_CELERY_BROKER fails before any step, naming the variable."""
    monkeypatch.delenv(BROKER_ENV, raising=False)
    monkeypatch.setenv(BACKEND_ENV, "redis://127.0.0.1:1/1")  # never reached
    fresh_dagster_instance.add_dynamic_partitions(TENANTS, [TENANT_OK])
    job = ReconstructableRepository.for_module(
        "run_proof_pipeline.definitions", "defs", working_directory=str(project_root())
    ).get_reconstructable_job(CELERY_JOB)
    with pytest.raises(Exception, match=BROKER_ENV) as raised:
        execute_job(
            job,
            instance=fresh_dagster_instance,
            run_config=RUN_CONFIG,
            tags={"dagster/partition": TENANT_OK},
            raise_on_error=True,
        )
    assert "not set" in str(raised.value)
