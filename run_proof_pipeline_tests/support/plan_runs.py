"""Helpers to run `run_proof_plan` in process and read back what Dagster recorded."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dagster import (
    DagsterEventType,
    DagsterInstance,
    ExecuteInProcessResult,
    MetadataValue,
)

from run_proof_pipeline.defs.plan.job import run_proof_plan
from run_proof_pipeline.defs.resources import TraceStoreResource
from run_proof_pipeline.settings import DatabaseUrl

PLAN_STEPS = [
    "preconditions",
    "step_1_latest_trace",
    "step_2_step_count",
    "step_3_coordinator_proof",
    "step_4_integrity_expectations",
    "step_5_coordinator_tests",
    "output_report",
]


def trace_store(
    url: DatabaseUrl | str | None, *, use_postgres_traces: str | None = "true"
) -> TraceStoreResource:
    """The resource as a deployment would configure it (a plain libpq URL, like DATABASE_URL)."""
    raw = url.libpq() if isinstance(url, DatabaseUrl) else url
    return TraceStoreResource(database_url=raw, use_postgres_traces=use_postgres_traces)


def plan_config(
    report_dir: Path,
    *,
    run_id: str = "",
    tenant_id: str = "",
    coordinator_tests: bool = False,
    tests_timeout: float = 600,
) -> dict[str, Any]:
    """Run config for `run_proof_plan`; Step 5 is off unless a test is about it.

    Reports go to RUN_PROOF_REPORT_DIR (deployment configuration, not run config): the
    `report_dir` fixture sets it, and `report_dir` must be that directory, so that no test
    writes into the project's reports/."""
    configured = os.environ.get("RUN_PROOF_REPORT_DIR")
    assert configured == str(report_dir), (
        f"RUN_PROOF_REPORT_DIR is {configured!r}, not {str(report_dir)!r}: use the report_dir "
        "fixture or monkeypatch.setenv('RUN_PROOF_REPORT_DIR', ...)"
    )
    return {
        "ops": {
            "step_1_latest_trace": {"config": {"run_id": run_id, "tenant_id": tenant_id}},
            "step_5_coordinator_tests": {
                "config": {"enabled": coordinator_tests, "timeout_seconds": tests_timeout}
            },
        }
    }


def run_plan(
    instance: DagsterInstance,
    resource: TraceStoreResource,
    run_config: dict[str, Any],
) -> ExecuteInProcessResult:
    return run_proof_plan.execute_in_process(
        run_config=run_config,
        instance=instance,
        resources={"trace_store": resource},
        raise_on_error=False,
    )


def stored_events(instance: DagsterInstance, run_id: str, kind: DagsterEventType) -> list[Any]:
    """Events of one run as stored in Dagster's PostgreSQL event log."""
    return [
        entry.dagster_event
        for entry in instance.all_logs(run_id, of_type=kind)
        if entry.dagster_event is not None
    ]


def succeeded_steps(instance: DagsterInstance, run_id: str) -> list[str]:
    return [e.step_key for e in stored_events(instance, run_id, DagsterEventType.STEP_SUCCESS)]


def failed_steps(instance: DagsterInstance, run_id: str) -> list[str]:
    return [e.step_key for e in stored_events(instance, run_id, DagsterEventType.STEP_FAILURE)]


def stop_of(instance: DagsterInstance, run_id: str) -> tuple[str, Any]:
    """The one step that stopped the run, with the description and evidence it raised."""
    failures = stored_events(instance, run_id, DagsterEventType.STEP_FAILURE)
    assert len(failures) == 1, [f.step_key for f in failures]
    data = failures[0].step_failure_data.user_failure_data
    assert data is not None, failures[0].step_failure_data.error
    return failures[0].step_key, data


def output_metadata(instance: DagsterInstance, run_id: str, step: str) -> dict[str, Any]:
    """The metadata a step attached to its output, as plain values."""
    for event in stored_events(instance, run_id, DagsterEventType.STEP_OUTPUT):
        if event.step_key == step:
            return {k: plain(v) for k, v in event.step_output_data.metadata.items()}
    raise AssertionError(f"{step} recorded no output")


def check_outcomes(
    instance: DagsterInstance, run_id: str
) -> dict[str, tuple[bool, dict[str, Any]]]:
    """Asset check evaluations of one run: check name -> (passed, metadata)."""
    outcomes = {}
    for event in stored_events(instance, run_id, DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = event.event_specific_data
        metadata = {k: plain(v) for k, v in evaluation.metadata.items()}
        outcomes[evaluation.check_name] = (evaluation.passed, metadata)
    return outcomes


def everything_logged(instance: DagsterInstance, run_id: str) -> str:
    """Every message and metadata value Dagster stored for a run, as one text to search."""
    return "\n".join(repr(entry) for entry in instance.all_logs(run_id))


def plain(value: Any) -> Any:
    return value.value if isinstance(value, MetadataValue) else value
