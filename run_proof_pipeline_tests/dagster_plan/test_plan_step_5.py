"""Step 5 of the plan: the coordinator's own tests, run in a subprocess, gate the report.

No run config names the file (test_plan_launchpad_config.py); these tests stand a file in for
the project's own by patching the module constant the op reads, in this process only.
Each test that lets pytest run to its end starts a whole Python and pytest: marked slow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dagster import DagsterInstance

from run_proof_pipeline.plan import coordinator_tests
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.plan_runs import (
    PLAN_STEPS,
    failed_steps,
    plan_config,
    run_plan,
    stop_of,
    succeeded_steps,
    trace_store,
)
from run_proof_pipeline_tests.support.stores import record_run

PASSING = "def test_one():\n    assert 1 + 1 == 2\n"
FAILING = "def test_good():\n    assert True\n\ndef test_bad():\n    assert 2 + 2 == 5\n"
NEVER_ENDS = "import time\n\ndef test_hangs():\n    time.sleep(3600)\n"
ALL_SKIPPED = "import pytest\n\n@pytest.mark.skip(reason='nothing here')\ndef test_x():\n    pass\n"


def _tests_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source: str | None) -> Path:
    """A stand-in for the project's coordinator tests (None: a file that does not exist)."""
    path = tmp_path / "step5_suite" / "test_coordinator_stand_in.py"
    if source is not None:
        path.parent.mkdir()
        path.write_text(source, encoding="utf-8")
    monkeypatch.setattr(coordinator_tests, "COORDINATOR_TESTS", str(path))
    return path


def _report(report_dir: Path, run_id: str) -> dict[str, object]:
    return json.loads((report_dir / f"run-proof-report-{run_id}.json").read_text("utf-8"))


@pytest.mark.slow
def test_passing_tests_are_recorded_in_the_report(
    store: DatabaseUrl,
    dagster_instance: DagsterInstance,
    report_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record_run(store, "tenant-a", "run-1", steps=2)
    _tests_file(monkeypatch, tmp_path, PASSING)
    config = plan_config(report_dir, coordinator_tests=True)

    result = run_plan(dagster_instance, trace_store(store), config)

    assert result.success
    assert str(_report(report_dir, result.run_id)["pytest_result"]).startswith("pass (1 passed")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (FAILING, "Step 5: coordinator tests failed: fail (1 failed, 1 passed"),
        (ALL_SKIPPED, "Step 5: coordinator tests failed: fail (1 skipped"),
    ],
    ids=["a-test-fails", "no-test-ran"],
)
def test_failing_or_empty_tests_stop_the_plan_before_the_report(
    store: DatabaseUrl,
    dagster_instance: DagsterInstance,
    report_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    expected: str,
) -> None:
    record_run(store, "tenant-a", "run-1", steps=2)
    _tests_file(monkeypatch, tmp_path, source)
    config = plan_config(report_dir, coordinator_tests=True)

    result = run_plan(dagster_instance, trace_store(store), config)

    assert not result.success
    assert succeeded_steps(dagster_instance, result.run_id) == PLAN_STEPS[:5]
    assert failed_steps(dagster_instance, result.run_id) == ["step_5_coordinator_tests"]
    _, stop = stop_of(dagster_instance, result.run_id)
    assert stop.description.startswith(expected)
    if source is FAILING:
        assert "test_bad" in stop.metadata["errors"].value
    assert not list(report_dir.glob("*"))


def test_missing_tests_file_stops_step_5(
    store: DatabaseUrl,
    dagster_instance: DagsterInstance,
    report_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record_run(store, "tenant-a", "run-1", steps=1)
    missing = _tests_file(monkeypatch, tmp_path, None)
    config = plan_config(report_dir, coordinator_tests=True)

    result = run_plan(dagster_instance, trace_store(store), config)

    step, stop = stop_of(dagster_instance, result.run_id)
    assert step == "step_5_coordinator_tests"
    assert stop.description == f"Step 5: coordinator tests not found at {missing}"


def test_tests_that_hang_are_stopped_and_stop_the_plan(
    store: DatabaseUrl,
    dagster_instance: DagsterInstance,
    report_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record_run(store, "tenant-a", "run-1", steps=1)
    _tests_file(monkeypatch, tmp_path, NEVER_ENDS)
    config = plan_config(report_dir, coordinator_tests=True, tests_timeout=1)

    result = run_plan(dagster_instance, trace_store(store), config)

    step, stop = stop_of(dagster_instance, result.run_id)
    assert step == "step_5_coordinator_tests"
    assert stop.description == "Step 5: coordinator tests did not finish within 1 s (stopped)"
    assert not list(report_dir.glob("*"))


@pytest.mark.slow
def test_the_projects_own_coordinator_tests_pass_in_step_5(
    store: DatabaseUrl, dagster_instance: DagsterInstance, report_dir: Path
) -> None:
    record_run(store, "tenant-a", "run-1", steps=3)

    result = run_plan(
        dagster_instance, trace_store(store), plan_config(report_dir, coordinator_tests=True)
    )

    assert result.success
    pytest_result = str(_report(report_dir, result.run_id)["pytest_result"])
    assert pytest_result.startswith("pass (") and " passed" in pytest_result
    assert "failed" not in pytest_result
