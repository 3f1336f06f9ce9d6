"""The sweep on real PostgreSQL: finds a tampered run among many, incremental vs full, CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from run_proof_pipeline.cli.main import app
from run_proof_pipeline.proof.stream import prove_trace, prove_traces
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import async_engine
from run_proof_pipeline.store.snapshot import begin_snapshot, read_trace
from run_proof_pipeline.sweep import SweepOptions, run_sweep
from run_proof_pipeline_tests.store_fixtures import owner_sql, record_run, run
from run_proof_pipeline_tests.test_ledger_support import tamper

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
