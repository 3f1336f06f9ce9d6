"""The sweep asset in process and on the Celery executor, side by side in one run.

    .venv/bin/python -m benchmarks.bench_celery_sweep                  # 4 tenants x 250 x 100
    .venv/bin/python -m benchmarks.bench_celery_sweep --tenants 8 --runs 2000 --steps 100

Starts its own PostgreSQL (LocalPostgres, fsync off) in a temporary directory: a trace store
built through COPY by benchmarks/dataset.py (N tenants x M runs x K steps, hashes from the
integrity core) and Dagster's storage (the project's dagster.yaml, dagster-postgres). Then
full sweeps of every tenant partition, timed from the first run's start to the last run's end:

- in process, asset workers 1 and 2: `aos_traces_sweep_job.execute_in_process`, one tenant
  after another (the asset's `workers` config is its only parallelism);
- on Celery: `aos_traces_sweep_celery_job` (defs/sweep/celery.py) with a throwaway Redis and
  `--celery-workers` workers of one pool process each (benchmarks/celery_cluster.py), asset
  workers 1, as many runs at once as there are workers (the QueuedRunCoordinator's
  `max_concurrent_runs: 2` in dagster.yaml), each launched by `execute_job` from a launcher
  process of its own that has the definitions loaded. Start-up of the workers and launchers
  is reported, not timed. Two rounds over every tenant: in the first, each worker pool
  process's first task imports the definitions (timed: the `dispatch` seconds of each run,
  from the task's submission to the worker starting it, show it); the second runs on warm
  workers.

Every run must succeed and every tenant's check must pass with the same runs and steps in
every mode, else the script exits 1. Prints a markdown table and writes
benchmarks/results/bench-celery.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.celery_cluster import INSTALL_HINT, CeleryCluster, redis_server
from benchmarks.dataset import build, run_specs
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.migrate import upgrade

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CELERY_JOB = "aos_traces_sweep_celery_job"
IN_PROCESS_JOB = "aos_traces_sweep_job"


@dataclass
class Mode:
    name: str
    runs_at_once: int
    wall_seconds: float
    # The asset's own elapsed_seconds (check metadata), summed over the tenants: the proof's
    # time without Dagster's and Celery's.
    sweep_seconds: float
    runs: int
    steps: int
    failures: int

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.wall_seconds if self.wall_seconds else 0.0


def _run_config(workers: int) -> dict[str, Any]:
    return {"ops": {"aos_traces_sweep": {"config": {"full": True, "workers": workers}}}}


def _check_metadata(result: Any) -> dict[str, Any]:
    [evaluation] = result.get_asset_check_evaluations()
    if not evaluation.passed:
        raise RuntimeError(f"a check failed: {evaluation.description}")
    return {k: v.value for k, v in evaluation.metadata.items()}


def _mode(name: str, at_once: int, wall: float, metadata: list[dict[str, Any]]) -> Mode:
    return Mode(
        name=name,
        runs_at_once=at_once,
        wall_seconds=wall,
        sweep_seconds=sum(float(m["elapsed_seconds"]) for m in metadata),
        runs=sum(int(m["runs"]) for m in metadata),
        steps=sum(int(m["steps"]) for m in metadata),
        failures=sum(int(m["failures"]) for m in metadata),
    )


def _in_process(instance: Any, tenants: list[str], workers: int) -> Mode:
    from run_proof_pipeline.definitions import defs

    job = defs.resolve_job_def(IN_PROCESS_JOB)
    found = []
    t = time.perf_counter()
    for tenant in tenants:
        result = job.execute_in_process(
            run_config=_run_config(workers), instance=instance, partition_key=tenant
        )
        if not result.success:
            raise SystemExit(f"bench: the in-process run of {tenant} failed")
        found.append(_check_metadata(result))
    wall = time.perf_counter() - t
    return _mode(f"in process, asset workers {workers}", 1, wall, found)


# The launcher processes' own (spawned, so not forked from a process with threads and
# connections): their instance and the Celery job, set once by _launcher_start.
_LAUNCHER: dict[str, Any] = {}


def _launcher_start(ready: Any) -> None:
    from dagster import DagsterInstance
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    _LAUNCHER["instance"] = DagsterInstance.get()  # DAGSTER_HOME, set before the spawn
    job = ReconstructableRepository.for_module(
        "run_proof_pipeline.definitions", "defs", working_directory=str(ROOT)
    ).get_reconstructable_job(CELERY_JOB)
    job.get_definition()  # the definitions imported here, before anything is timed
    _LAUNCHER["job"] = job
    _LAUNCHER["ready"] = ready


def _launcher_pid(_: int) -> int:
    # A launcher waiting here takes no other task, so `at_once` of these run in `at_once`
    # processes: every launcher is up before any run is timed.
    _LAUNCHER["ready"].wait()
    return os.getpid()


def _celery_run(tenant: str) -> dict[str, Any]:
    """One tenant's run of the Celery job, launched from this process as `dagster job
    execute` would; returns its check's metadata, the worker that ran the step, and the
    seconds from the task's submission to the worker starting it (queue wait plus, on a
    pool process's first task, importing the definitions)."""
    from dagster import DagsterEventType, execute_job

    instance = _LAUNCHER["instance"]
    with execute_job(
        _LAUNCHER["job"],
        instance=instance,
        run_config=_run_config(1),
        tags={"dagster/partition": tenant},
    ) as result:
        if not result.success:
            raise RuntimeError(f"the celery run of {tenant} failed")
        metadata = _check_metadata(result)
        submitted = started = None
        worker = ""
        for entry in instance.all_logs(result.run_id):
            event = entry.dagster_event
            if event is None or event.event_type != DagsterEventType.ENGINE_EVENT:
                continue
            if (event.message or "").startswith("Submitting celery task"):
                submitted = entry.timestamp
            elif "in celery worker" in (event.message or ""):
                started = entry.timestamp
                worker = str(event.engine_event_data.metadata["Celery worker"].value)
        if submitted is None or started is None:
            raise RuntimeError(f"the celery run of {tenant} shows no celery task events")
    return {**metadata, "worker": worker, "dispatch_seconds": started - submitted}


def _on_celery(tenants: list[str], at_once: int, label: str) -> tuple[Mode, list[dict[str, Any]]]:
    """The runs launched from `at_once` processes of their own: Dagster's execute_job is not
    safe from threads (two runs' log managers deadlock in logging.config.dictConfig)."""
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(at_once, timeout=300)
    with ProcessPoolExecutor(
        at_once, mp_context=context, initializer=_launcher_start, initargs=(ready,)
    ) as pool:
        # `at_once` tasks submitted together start `at_once` processes (the pool spawns one
        # per task while none is idle); the barrier holds each task until all are running.
        launchers = set(pool.map(_launcher_pid, range(at_once)))
        if len(launchers) != at_once:
            raise SystemExit(f"bench: {len(launchers)} launcher processes, not {at_once}")
        t = time.perf_counter()
        found = list(pool.map(_celery_run, tenants))
        wall = time.perf_counter() - t
    runs = [
        {
            "tenant": tenant,
            "worker": f["worker"],
            "dispatch_seconds": round(f["dispatch_seconds"], 2),
        }
        for tenant, f in zip(tenants, found, strict=True)
    ]
    name = f"celery, {at_once} workers, asset workers 1, {label}"
    return _mode(name, at_once, wall, found), runs


def _table(modes: list[Mode]) -> str:
    base = modes[0].wall_seconds
    lines = [
        "| mode | runs at once | runs | steps | wall (s) | sweep (s) | steps/s | wall / first |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in modes:
        lines.append(
            f"| {m.name} | {m.runs_at_once} | {m.runs:,} | {m.steps:,} | {m.wall_seconds:.2f} "
            f"| {m.sweep_seconds:.2f} | {m.steps_per_second:,.0f} | {m.wall_seconds / base:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=4, help="tenants (partitions)")
    parser.add_argument("--runs", type=int, default=250, help="sealed runs per tenant")
    parser.add_argument("--steps", type=int, default=100, help="steps per run")
    parser.add_argument("--celery-workers", type=int, default=2, help="Celery workers")
    parser.add_argument("--output", type=Path, default=RESULTS / "bench-celery.json")
    args = parser.parse_args(argv)
    if redis_server() is None:
        print(f"bench: {INSTALL_HINT}", file=sys.stderr)
        return 2
    from dagster import DagsterInstance

    # A SIGTERM runs the `finally` below too: Redis, the workers and PostgreSQL are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="run-proof-bench-celery-") as raw:
        base = Path(raw)
        server = LocalPostgres(base / "pg", fast=True)
        cluster = CeleryCluster(base / "celery")
        instance = None
        saved = dict(os.environ)
        try:
            server.start()
            store = DatabaseUrl.parse(server.create_database("bench_store", exist_ok=True))
            upgrade(store)
            storage = DatabaseUrl.parse(server.create_database("bench_dagster", exist_ok=True))
            specs = run_specs(args.runs * args.tenants, args.steps, tenants=args.tenants)
            t = time.perf_counter()
            written = build(store.libpq(), specs)
            built = time.perf_counter() - t
            print(f"built {len(specs):,} runs, {written:,} steps in {built:.0f} s", flush=True)
            tenants = sorted({spec.tenant_id for spec in specs})

            home = base / "dagster_home"
            home.mkdir()
            shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
            os.environ.update(
                {
                    "DATABASE_URL": store.libpq(),
                    "USE_POSTGRES_TRACES": "true",
                    "DAGSTER_HOME": str(home),
                    "DAGSTER_PG_URL": storage.psycopg2(),
                }
            )
            instance = DagsterInstance.from_config(str(home))
            instance.add_dynamic_partitions("tenants", tenants)

            modes = [_in_process(instance, tenants, 1), _in_process(instance, tenants, 2)]
            print(f"in process: {modes[0].wall_seconds:.1f} s, {modes[1].wall_seconds:.1f} s")

            from run_proof_pipeline.defs.sweep.celery import BACKEND_ENV, BROKER_ENV

            t = time.perf_counter()
            cluster.start_redis()
            os.environ[BROKER_ENV] = cluster.broker_url
            os.environ[BACKEND_ENV] = cluster.backend_url
            cluster.start_workers(args.celery_workers, dict(os.environ), cwd=ROOT)
            workers_up = time.perf_counter() - t
            print(f"redis and {args.celery_workers} celery workers up in {workers_up:.1f} s")
            # Twice: the first round's tasks are each pool process's first (it imports the
            # definitions then), the second runs on warm workers, as a deployment's do.
            celery_runs: list[dict[str, Any]] = []
            for label in ("first round", "second round"):
                celery_mode, found = _on_celery(tenants, args.celery_workers, label)
                modes.append(celery_mode)
                celery_runs += found
                for run in found:
                    print(
                        f"  {label}, {run['tenant']}: {run['worker']}, "
                        f"dispatched in {run['dispatch_seconds']} s"
                    )
        finally:
            cluster.stop()
            if instance is not None:
                instance.dispose()
            os.environ.clear()
            os.environ.update(saved)
            server.stop()

    expected = (len(specs), written, 0)
    for m in modes:
        if (m.runs, m.steps, m.failures) != expected:
            print(f"bench: {m.name} swept {m.runs} runs, {m.steps} steps", file=sys.stderr)
            return 1
    table = _table(modes)
    print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "command": "python -m benchmarks.bench_celery_sweep " + " ".join(argv or []),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "dataset": {
                    "tenants": args.tenants,
                    "runs_per_tenant": args.runs,
                    "steps_per_run": args.steps,
                    "steps": written,
                    "build_seconds": round(built, 2),
                },
                "celery_workers": args.celery_workers,
                "celery_workers_start_seconds": round(workers_up, 2),
                "celery_runs": celery_runs,
                "total_seconds": round(time.perf_counter() - started, 1),
                "modes": [
                    {**asdict(m), "steps_per_second": round(m.steps_per_second, 1)} for m in modes
                ],
                "table": table,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
