"""The one Definitions object: what it holds, that it loads with no database configured, and
that `dagster definitions validate` accepts the project's workspace on its PostgreSQL instance."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from dagster import (
    AssetCheckKey,
    AssetKey,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Definitions,
    validate_run_config,
)

from run_proof_pipeline.definitions import defs
from run_proof_pipeline.pipeline.job import run_proof_plan
from run_proof_pipeline.plan.coordinator_tests import project_root
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.cli_process import run_process
from run_proof_pipeline_tests.dagster_plan.plan_runs import PLAN_STEPS

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


def test_definitions_load_and_hold_the_plan_its_checks_and_automation() -> None:
    Definitions.validate_loadable(defs)

    assert defs.resolve_job_def("run_proof_plan") is not None
    # At least the plan's three checks (other features may add checks of their own).
    assert {
        AssetCheckKey(AssetKey("aos_traces"), name)
        for name in ("hash_chain_integrity", "chain_length_matches_step_count", "seal_present")
    } <= defs.resolve_asset_graph().asset_check_keys
    schedule = defs.resolve_schedule_def("nightly_run_proof")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 2 * * *", "UTC")
    assert schedule.default_status == DefaultScheduleStatus.RUNNING
    assert defs.resolve_sensor_def("new_sealed_traces").default_status == (
        DefaultSensorStatus.STOPPED
    )
    assert defs.resolve_sensor_def("run_proof_failure_alert").default_status == (
        DefaultSensorStatus.RUNNING
    )


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


def test_the_plan_runs_with_no_run_config_at_all() -> None:
    assert validate_run_config(run_proof_plan, {}) is not None


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
