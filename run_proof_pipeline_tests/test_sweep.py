"""The sweep on real PostgreSQL: finds a tampered run among many, incremental vs full, CLI."""

from __future__ import annotations

import glob
import json
import os
import sys
import threading
import time
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from run_proof_pipeline.cli.main import app
from run_proof_pipeline.proof.stream import prove_trace, prove_traces
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import async_engine
from run_proof_pipeline.store.snapshot import begin_snapshot, read_trace
from run_proof_pipeline.sweep import SweepOptions, run_sweep
from run_proof_pipeline_tests.support.stores import owner_sql, record_run, run
from run_proof_pipeline_tests.test_ledger_support import one, tamper

TAMPER_STEP = (
    "UPDATE aos_trace_steps SET outcome_data = '{\"ok\": false}'"
    " WHERE run_id = %s AND step_index = %s"
)


def _runs(url: DatabaseUrl, count: int, *, prefix: str = "run", steps: int = 3) -> list[str]:
    ids = [f"{prefix}-{i:02d}" for i in range(count)]
    for i, run_id in enumerate(ids):
        record_run(url, f"tenant-{'ab'[i % 2]}", run_id, steps=steps)
    return ids


def _tamper(url: DatabaseUrl, run_id: str, step: int) -> None:
    assert owner_sql(url, TAMPER_STEP, (run_id, step), table="aos_trace_steps") == 1


@pytest.mark.parametrize("workers", [1, 2])
def test_sweep_names_the_tampered_run_and_its_first_bad_step(
    store: DatabaseUrl, workers: int
) -> None:
    runs = _runs(store, 12)
    _tamper(store, runs[7], 1)

    report = run_sweep(store, SweepOptions(full=True, workers=workers))

    assert (report.runs, report.verified, report.failures) == (12, 11, 1)
    assert report.steps == 12 * 3 - 1  # the tampered run stops at its first bad step
    [failed] = report.failed
    assert (failed.tenant_id, failed.run_id, failed.first_bad) == ("tenant-b", runs[7], "step 1")
    assert failed.status == "FAILED" and "step_hash mismatch" in failed.reason


def test_incremental_sweep_reads_only_new_seals_and_failures_full_reads_all(
    store: DatabaseUrl,
) -> None:
    runs = _runs(store, 5)
    first = run_sweep(store, SweepOptions())
    assert (first.mode, first.runs, first.failures) == ("incremental", 5, 0)

    assert run_sweep(store, SweepOptions()).runs == 0  # nothing new since

    record_run(store, "tenant-a", "run-new", steps=2)
    record_run(store, "tenant-a", "run-open", steps=2, seal=False)  # unsealed: not swept
    newer = run_sweep(store, SweepOptions())
    assert (newer.runs, newer.steps) == (1, 2)

    # An in-place edit of an old, already verified run: only a full sweep reads it again.
    _tamper(store, runs[2], 0)
    assert run_sweep(store, SweepOptions()).runs == 0
    full = run_sweep(store, SweepOptions(full=True))
    assert (full.mode, full.runs, full.failures) == ("full", 6, 1)
    assert (full.failed[0].run_id, full.failed[0].first_bad) == (runs[2], "step 0")

    # A failed run stays in every incremental sweep until it verifies again.
    again = run_sweep(store, SweepOptions())
    assert (again.runs, again.failures) == (1, 1)


def test_sweep_filters_by_tenant_and_start_date(store: DatabaseUrl) -> None:
    _runs(store, 6)
    only_a = run_sweep(store, SweepOptions(full=True, tenant_id="tenant-a"))
    assert only_a.runs == 3
    from datetime import UTC, datetime

    later = run_sweep(store, SweepOptions(full=True, since=datetime(2030, 1, 1, tzinfo=UTC)))
    assert later.runs == 0


def test_batched_proofs_equal_one_by_one_proofs(store: DatabaseUrl) -> None:
    runs = _runs(store, 4, steps=4)
    record_run(store, "tenant-a", "run-empty", steps=0)
    _tamper(store, runs[1], 2)

    async def both() -> tuple[list[object], list[object]]:
        engine = async_engine(store)
        try:
            async with engine.connect() as conn:
                await begin_snapshot(conn)
                traces = [
                    await read_trace(conn, f"tenant-{'ab'[i % 2]}", r) for i, r in enumerate(runs)
                ] + [await read_trace(conn, "tenant-a", "run-empty")]
                batch = await prove_traces(conn, traces)  # type: ignore[arg-type]
                single = [await prove_trace(conn, t) for t in traces]  # type: ignore[arg-type]
                return [p for _, p in batch], single
        finally:
            await engine.dispose()

    batch, single = run(both())
    assert batch == single
    statuses = [p.verdict.status.value for p in batch]  # type: ignore[attr-defined]
    assert statuses == ["VERIFIED", "FAILED", "VERIFIED", "VERIFIED", "VERIFIED"]


def test_cli_sweep_exit_code_and_json(store: DatabaseUrl, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _runs(store, 4)
    monkeypatch.setenv("DATABASE_URL", store.libpq())
    ok = CliRunner().invoke(app, ["sweep", "--json", "--workers", "1"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout.splitlines()[-1])["runs"] == 4

    _tamper(store, runs[3], 2)
    bad = CliRunner().invoke(app, ["sweep", "--full", "--tenant-id", "tenant-b"])
    assert bad.exit_code == 1, bad.output
    assert f"FAILED tenant tenant-b run {runs[3]}: first bad step 2" in bad.output
    assert store.url.password not in bad.output

    usage = CliRunner().invoke(app, ["sweep", "--since", "yesterday"])
    assert usage.exit_code == 2


def test_sweep_checks_each_runs_ledger_entry_in_its_batch(store: DatabaseUrl) -> None:
    """The batched ledger lookup keeps every run's own anchor: a run whose ledger entry was
    edited fails at "ledger", its batch neighbours still verify."""
    runs = _runs(store, 6)
    touched = tamper(
        store,
        ("UPDATE run_proof_ledger SET root_hash = repeat('0', 64) WHERE run_id = %s", (runs[3],)),
    )
    assert touched == [1]

    report = run_sweep(store, SweepOptions(full=True, workers=1))

    assert (report.runs, report.verified, report.failures) == (6, 5, 1)
    [failed] = report.failed
    assert (failed.run_id, failed.first_bad) == (runs[3], "ledger")


def _children() -> dict[int, list[str]]:
    """This process's children: pid -> argv (from /proc)."""
    found: dict[int, list[str]] = {}
    for listing in glob.glob("/proc/self/task/*/children"):
        with open(listing) as fh:
            pids = [int(pid) for pid in fh.read().split()]
        for pid in pids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    found[pid] = fh.read().decode(errors="replace").split("\0")[:-1]
            except FileNotFoundError:
                continue  # gone meanwhile
    return found


def test_shards_run_in_fresh_interpreters_not_forks_and_find_what_one_process_finds(
    store: DatabaseUrl,
) -> None:
    """The shards are the worker layer's processes (proof/workers.py): each an exec'd
    interpreter running the shard job named on its command line (a fork of this threaded
    process would still be pytest, with its argv), and their merged report is the one
    process's."""
    # Children this process had before (multiprocessing's resource tracker, started by an
    # earlier test's Dagster multiprocess executor, lives as long as this process does).
    before = set(_children())
    runs = _runs(store, 10)
    _tamper(store, runs[4], 2)
    one_process = run_sweep(store, SweepOptions(full=True, workers=1))  # the state table too
    with open("/proc/self/cmdline", "rb") as fh:
        own_argv = fh.read().decode().split("\0")[:-1]
    holder = psycopg.connect(store.libpq())
    # Each shard records its first page, then waits on the lock: both are alive and seen.
    holder.execute("LOCK TABLE run_proof_sweep_verified IN EXCLUSIVE MODE")
    outcome: dict[str, Any] = {}
    sweeper = threading.Thread(
        target=lambda: outcome.update(
            report=run_sweep(store, SweepOptions(full=True, workers=2, page_size=2))
        ),
        daemon=True,
    )
    sweeper.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            waiting = one(
                store,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'",
            )
            if waiting == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        workers = {
            pid: argv for pid, argv in _children().items() if "-m" in argv and pid not in before
        }
    finally:
        holder.close()
        sweeper.join(timeout=120)
    assert not sweeper.is_alive()
    assert waiting == 2, "both shards should wait on the held lock"
    assert len(workers) == 2, workers
    for pid, argv in workers.items():
        assert argv[1:] == [
            "-m",
            "run_proof_pipeline.proof.workers",
            "run_proof_pipeline.sweep.runner:shard_job",
        ], (pid, argv)
        assert argv != own_argv and os.path.realpath(argv[0]) == os.path.realpath(sys.executable)
    report = outcome["report"]
    assert (report.runs, report.verified, report.failures) == (10, 9, 1)
    assert (report.steps, report.failed) == (one_process.steps, one_process.failed)
    assert set(_children()) <= before  # every worker gone
