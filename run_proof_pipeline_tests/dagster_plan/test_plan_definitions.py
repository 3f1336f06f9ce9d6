"""The plan's job: its steps in the seed's order, that it runs with no run config, that the
Definitions load with no database configured and read their automation settings, and that
`dagster definitions validate` accepts the project's workspace on its PostgreSQL instance.
What the Definitions hold (every asset, check, job, schedule and sensor, with default
statuses) is pinned by run_proof_pipeline_tests/test_definitions_snapshot.py."""

from __future__ import annotations

import json
import os
import shutil
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from dagster import DagsterInstance, validate_run_config

from run_proof_pipeline.defs.plan.job import run_proof_plan
from run_proof_pipeline.plan import coordinator_tests
from run_proof_pipeline.plan.coordinator_tests import project_root
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.cli_process import run_process
from run_proof_pipeline_tests.support.plan_runs import (
    PLAN_STEPS,
    run_plan,
    succeeded_steps,
    trace_store,
)
from run_proof_pipeline_tests.support.stores import BASE, record_run

_DECLARED = """
import json
from run_proof_pipeline.definitions import defs
schedule = defs.resolve_schedule_def("nightly_run_proof")
print(json.dumps({
    "cron": schedule.cron_schedule,
    "timezone": schedule.execution_timezone,
    "new_sealed_traces": defs.resolve_sensor_def("new_sealed_traces").default_status.value,
}))
"""


def test_each_step_consumes_the_one_before_it_in_the_seed_order() -> None:
    structure = run_proof_plan.graph.dependency_structure

    upstream = {
        name: sorted(
            output.node_name
            for outputs in structure.input_to_upstream_outputs_for_node(name).values()
            for output in outputs
        )
        for name in PLAN_STEPS
    }

    assert upstream == {
        step: ([] if i == 0 else [PLAN_STEPS[i - 1]]) for i, step in enumerate(PLAN_STEPS)
    }


def test_the_plan_runs_with_no_run_config_at_all(
    store: DatabaseUrl,
    dagster_instance: DagsterInstance,
    report_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every op's config has a default: the plan proves the latest trace of any tenant, with
    Step 5 on. Step 5's file is a one-test stand-in (the project's own file takes a minute;
    test_plan_step_5.py does the same): what is checked is that it ran by default."""
    record_run(store, "tenant-a", "run-old", steps=2)
    record_run(store, "tenant-b", "run-new", steps=4, started_at=BASE + timedelta(hours=1))
    stand_in = tmp_path / "step5_suite" / "test_coordinator_stand_in.py"
    stand_in.parent.mkdir()
    stand_in.write_text("def test_one():\n    assert 1 + 1 == 2\n", encoding="utf-8")
    monkeypatch.setattr(coordinator_tests, "COORDINATOR_TESTS", str(stand_in))
    defaults = validate_run_config(run_proof_plan, {})["ops"]
    assert defaults["step_1_latest_trace"]["config"] == {"run_id": "", "tenant_id": ""}
    assert defaults["step_5_coordinator_tests"]["config"]["enabled"] is True

    result = run_plan(dagster_instance, trace_store(store), {})

    assert result.success
    assert succeeded_steps(dagster_instance, result.run_id) == PLAN_STEPS
    report_path = report_dir / f"run-proof-report-{result.run_id}.json"
    assert Path(result.output_for_node("output_report")) == report_path.with_suffix(".md")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert {k: report[k] for k in ("run_id", "tenant_id", "step_count", "chain_length")} == {
        "run_id": "run-new",
        "tenant_id": "tenant-b",
        "step_count": 4,
        "chain_length": 4,
    }
    assert (report["integrity_model"], report["verification_status"]) == ("HASH_CHAIN", "VERIFIED")
    assert str(report["pytest_result"]).startswith("pass (1 passed"), report["pytest_result"]


def _declared(env: dict[str, str]) -> dict[str, str]:
    """What the Definitions declare when loaded in a fresh process with exactly `env`."""
    completed = run_process([sys.executable, "-c", _DECLARED], env, cwd=project_root())
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_definitions_load_with_no_database_and_read_automation_settings() -> None:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "USE_POSTGRES_TRACES", "DAGSTER_PG_URL", "DAGSTER_HOME"}
    }

    configured = _declared(
        {
            **base,
            "RUN_PROOF_NIGHTLY_CRON": "30 3 * * 1-5",
            "RUN_PROOF_TIMEZONE": "Europe/Paris",
            "RUN_PROOF_SENSORS": "running",
        }
    )

    assert configured == {
        "cron": "30 3 * * 1-5",
        "timezone": "Europe/Paris",
        "new_sealed_traces": "RUNNING",
    }


@pytest.mark.slow
def test_dagster_definitions_validate_accepts_the_workspace(
    dagster_storage: DatabaseUrl, tmp_path: Path
) -> None:
    shutil.copy(project_root() / "dagster.yaml", tmp_path / "dagster.yaml")
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        "DAGSTER_HOME": str(tmp_path),
        "DAGSTER_PG_URL": dagster_storage.psycopg2(),
    }

    dagster = str(Path(sys.executable).with_name("dagster"))
    validate = [dagster, "definitions", "validate", "-w", str(project_root() / "workspace.yaml")]
    completed = run_process(validate, env, cwd=project_root(), timeout=300)

    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "Validation successful for code location run_proof_pipeline" in output
    assert dagster_storage.url.password not in output
