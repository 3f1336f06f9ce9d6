"""Issue 12: Launchpad (run) config reaches neither code nor files, and every worker count is
bounded. Each case launches `run_proof_plan` with the config a saved Launchpad config could
hold and checks the one line it stops with, the step that stopped, and that nothing ran or
was written (docs/bad-input.md).

One store for the module (the plan only reads it); the cases that stop in the preconditions
take well under a second each.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance

from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.plan.coordinator_checks.fixtures import migrated_copy
from run_proof_pipeline.plan.coordinator_tests import (
    COORDINATOR_TESTS,
    run_coordinator_tests,
    step_5_environment,
)
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.plan_runs import (
    PLAN_STEPS,
    everything_logged,
    output_metadata,
    plan_config,
    run_plan,
    stop_of,
    succeeded_steps,
    trace_store,
)
from run_proof_pipeline_tests.support.stores import record_run

TENANT = "tenant-lp"
RUN = "run-lp"
STEPS = 300
SIGNING_KEY = "/secret/keys/ledger-signing.key"
PASSWORD = "pw-never-leaves"
# The deployment's secrets, set in the code location's environment while the plan runs.
SECRETS = {
    "RUN_PROOF_SIGNING_KEY": SIGNING_KEY,
    "DATABASE_URL": f"postgresql://app:{PASSWORD}@db.example/aos",
    "DAGSTER_PG_URL": f"postgresql://dagster:{PASSWORD}@db.example/dagster",
    "AWS_SECRET_ACCESS_KEY": "aws-" + PASSWORD,
    "SMTP_PASSWORD": "smtp-" + PASSWORD,
}
ENV_DUMPER = """\
import json, os, pathlib

pathlib.Path({out!r}).write_text(json.dumps(dict(os.environ)))


def test_dump():
    assert True
"""


@pytest.fixture(scope="module")
def plan_store(pg_server: LocalPostgres) -> Iterator[DatabaseUrl]:
    """One migrated database with one sealed 300-step run; no case writes to it."""
    url = migrated_copy(pg_server, f"launchpad_{uuid.uuid4().hex[:12]}")
    record_run(url, TENANT, RUN, steps=STEPS)
    yield url


def _config(report_dir: Path, **ops: dict[str, Any]) -> dict[str, Any]:
    config = plan_config(report_dir, run_id=RUN, tenant_id=TENANT)
    for op_name, op_config in ops.items():
        config["ops"].setdefault(op_name, {"config": {}})["config"].update(op_config)
    return config


def _stopped(instance: DagsterInstance, resource_url: DatabaseUrl, config: dict[str, Any]) -> Any:
    result = run_plan(instance, trace_store(resource_url), config)
    assert not result.success
    return result


def _planted(tmp_path: Path) -> tuple[Path, Path]:
    """A .py file that writes this process's environment out when pytest imports it."""
    out = tmp_path / "leaked-environment.json"
    planted = tmp_path / "planted" / "test_steal.py"
    planted.parent.mkdir()
    planted.write_text(ENV_DUMPER.format(out=str(out)), encoding="utf-8")
    return planted, out


TESTS_PATH_LINE = (
    "step_5_coordinator_tests.config.tests_path was removed: Step 5 runs the project's own "
    f"coordinator tests only ({COORDINATOR_TESTS}); delete the key from the run config"
)
REPORT_DIR_LINE = (
    "output_report.config.report_dir was removed: reports go to RUN_PROOF_REPORT_DIR, set in "
    "the code location's environment; delete the key from the run config"
)


def test_tests_path_naming_a_planted_file_never_runs_it_and_names_the_replacement(
    plan_store: DatabaseUrl,
    dagster_instance: DagsterInstance,
    report_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in SECRETS.items():
        if name != "DATABASE_URL":  # the resource names the store; the secret one is unused
            monkeypatch.setenv(name, value)
    planted, out = _planted(tmp_path)
    config = _config(
        report_dir, step_5_coordinator_tests={"enabled": True, "tests_path": str(planted)}
    )

    result = _stopped(dagster_instance, plan_store, config)

    step, stop = stop_of(dagster_instance, result.run_id)
    assert (step, stop.description) == ("preconditions", TESTS_PATH_LINE)
    assert succeeded_steps(dagster_instance, result.run_id) == []  # nothing read, nothing run
    assert not out.exists()  # the planted file never ran
    assert not list(report_dir.glob("*"))
    logged = everything_logged(dagster_instance, result.run_id)
    assert SIGNING_KEY not in logged and PASSWORD not in logged


def test_an_empty_tests_path_is_still_the_removed_key(
    plan_store: DatabaseUrl, dagster_instance: DagsterInstance, report_dir: Path
) -> None:
    # A config saved when the key existed holds `tests_path: ""`: the key is gone either way.
    config = _config(report_dir, step_5_coordinator_tests={"tests_path": ""})

    result = _stopped(dagster_instance, plan_store, config)

    assert stop_of(dagster_instance, result.run_id)[1].description == TESTS_PATH_LINE


def test_report_dir_in_run_config_names_its_replacement_and_writes_nothing_there(
    plan_store: DatabaseUrl, dagster_instance: DagsterInstance, report_dir: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "chosen-by-the-launchpad"
    config = _config(report_dir, output_report={"report_dir": str(elsewhere)})

    result = _stopped(dagster_instance, plan_store, config)

    step, stop = stop_of(dagster_instance, result.run_id)
    assert (step, stop.description) == ("preconditions", REPORT_DIR_LINE)
    assert succeeded_steps(dagster_instance, result.run_id) == []
    assert not elsewhere.exists()
    assert not list(report_dir.glob("*"))


def test_both_removed_keys_are_named_on_one_line(
    plan_store: DatabaseUrl, dagster_instance: DagsterInstance, report_dir: Path, tmp_path: Path
) -> None:
    config = _config(
        report_dir,
        step_5_coordinator_tests={"tests_path": "x.py"},
        output_report={"report_dir": str(tmp_path / "r")},
    )

    result = _stopped(dagster_instance, plan_store, config)

    description = stop_of(dagster_instance, result.run_id)[1].description
    assert description == f"{TESTS_PATH_LINE}; {REPORT_DIR_LINE}"
    assert "\n" not in description


@pytest.mark.parametrize(
    ("workers", "line"),
    [
        (17, "step_3_coordinator_proof.config.workers must be 0 (RUN_PROOF_VERIFY_WORKERS, "
         "else one per core) or from 1 to 16, got 17"),
        (-1, "step_3_coordinator_proof.config.workers must be 0 (RUN_PROOF_VERIFY_WORKERS, "
         "else one per core) or from 1 to 16, got -1"),
    ],
    ids=["17", "-1"],
)  # fmt: skip
def test_out_of_range_workers_stop_the_run_before_anything_is_read(
    plan_store: DatabaseUrl,
    dagster_instance: DagsterInstance,
    report_dir: Path,
    workers: int,
    line: str,
) -> None:
    config = _config(report_dir, step_3_coordinator_proof={"workers": workers})

    result = _stopped(dagster_instance, plan_store, config)

    step, stop = stop_of(dagster_instance, result.run_id)
    assert (step, stop.description) == ("preconditions", line)
    assert succeeded_steps(dagster_instance, result.run_id) == []
    assert "Traceback" not in stop.description


def test_out_of_range_worker_setting_stops_the_run_naming_it(
    plan_store: DatabaseUrl,
    dagster_instance: DagsterInstance,
    report_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUN_PROOF_VERIFY_WORKERS", "99")

    result = _stopped(dagster_instance, plan_store, _config(report_dir))

    step, stop = stop_of(dagster_instance, result.run_id)
    assert (step, stop.description) == (
        "preconditions",
        "RUN_PROOF_VERIFY_WORKERS must be a whole number from 1 to 16, got '99'",
    )


def test_a_report_directory_that_is_a_file_stops_the_run_before_the_proof(
    plan_store: DatabaseUrl,
    dagster_instance: DagsterInstance,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    not_a_dir = tmp_path / "reports-file"
    not_a_dir.write_text("keep me", encoding="utf-8")
    monkeypatch.setenv("RUN_PROOF_REPORT_DIR", str(not_a_dir))

    result = _stopped(dagster_instance, plan_store, _config(not_a_dir))

    step, stop = stop_of(dagster_instance, result.run_id)
    assert (step, stop.description) == (
        "preconditions",
        f"RUN_PROOF_REPORT_DIR={str(not_a_dir)!r} is not a directory: set RUN_PROOF_REPORT_DIR "
        "in the code location's environment to a writable directory",
    )
    assert not_a_dir.read_text(encoding="utf-8") == "keep me"


def test_checkpoint_directory_without_a_key_is_a_step_3_failure_naming_the_setting(
    plan_store: DatabaseUrl,
    dagster_instance: DagsterInstance,
    report_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    monkeypatch.setenv("RUN_PROOF_CHECKPOINT_DIR", str(checkpoints))
    for name in ("RUN_PROOF_SIGNING_KEY", "RUN_PROOF_PUBLIC_KEY", "RUN_PROOF_PUBLIC_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)

    result = _stopped(dagster_instance, plan_store, _config(report_dir))

    step, stop = stop_of(dagster_instance, result.run_id)
    assert (step, stop.description) == (
        "step_3_coordinator_proof",
        "Step 3: configuration error: checkpoints are configured but there is no key to check "
        "their signatures: set RUN_PROOF_PUBLIC_KEY (or RUN_PROOF_SIGNING_KEY)",
    )
    assert succeeded_steps(dagster_instance, result.run_id) == PLAN_STEPS[:3]
    assert not list(report_dir.glob("*")) and not list(checkpoints.iterdir())


@pytest.mark.slow  # three worker processes; test_worker_bounds.py measures the same in process
def test_a_short_run_with_six_workers_starts_only_the_useful_segments(
    plan_store: DatabaseUrl, dagster_instance: DagsterInstance, report_dir: Path
) -> None:
    # 300 steps, parallel_min_steps 200: split, but never into segments under 100 steps.
    config = _config(report_dir, step_3_coordinator_proof={"workers": 6, "parallel_min_steps": 200})

    result = run_plan(dagster_instance, trace_store(plan_store), config)

    assert result.success
    step_3 = output_metadata(dagster_instance, result.run_id, "step_3_coordinator_proof")
    assert (step_3["segment_workers"], step_3["verification_status"]) == (3, "VERIFIED")
    assert step_3["chain_length"] == STEPS


def test_step_5_passes_only_the_allowlisted_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real subprocess Step 5 starts, with a stand-in file that writes out what it got.
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    planted, out = _planted(tmp_path)

    outcome = run_coordinator_tests(planted, timeout=120)

    assert outcome.passed, outcome.describe()
    received = json.loads(out.read_text(encoding="utf-8"))
    assert not set(SECRETS) & set(received)
    assert PASSWORD not in out.read_text(encoding="utf-8")
    assert SIGNING_KEY not in out.read_text(encoding="utf-8")
    assert received["LC_ALL"] == "C.UTF-8" and "PATH" in received
    # Only the allowlist, plus what Python and pytest set for themselves.
    added = set(received) - set(step_5_environment())
    assert {name for name in added if not name.startswith("PYTEST_")} <= {"PYTHONPATH"}
