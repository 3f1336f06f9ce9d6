"""The asset checks on `aos_traces`, run on demand from the project's own Definitions."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetCheckSeverity,
    AssetSelection,
    DagsterInstance,
    Definitions,
    define_asset_job,
)

from run_proof_pipeline.definitions import defs
from run_proof_pipeline.defs.plan.checks import (
    CHAIN_LENGTH_CHECK,
    HASH_CHAIN_CHECK,
    SEAL_CHECK,
    proof_check_evaluations,
    trace_store_checks,
)
from run_proof_pipeline.plan.queries import TraceRef
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.plan_runs import check_outcomes
from run_proof_pipeline_tests.support.stores import BASE, owner_sql, prove, record_run

# Exactly these three checks, with the project's Definitions around them (its resource); other
# assets in the Definitions are not materialized.
CHECKS_ONLY = Definitions.merge(
    defs,
    Definitions(
        jobs=[
            define_asset_job(
                "aos_traces_checks", selection=AssetSelection.checks(trace_store_checks)
            )
        ]
    ),
)


def _run_checks(
    store: DatabaseUrl, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> dict[str, tuple[bool, dict[str, Any], AssetCheckSeverity]]:
    """The checks as the UI's "Execute checks" runs them (the Definitions' own resource,
    configured by the environment): name -> (passed, metadata, severity)."""
    monkeypatch.setenv("DATABASE_URL", store.libpq())
    monkeypatch.setenv("USE_POSTGRES_TRACES", "true")
    result = CHECKS_ONLY.resolve_job_def("aos_traces_checks").execute_in_process(instance=instance)
    assert result.success
    severities = {e.check_name: e.severity for e in result.get_asset_check_evaluations()}
    outcomes = check_outcomes(instance, result.run_id)
    assert severities.keys() == outcomes.keys()
    return {name: (*outcomes[name], severities[name]) for name in outcomes}


def test_checks_prove_the_latest_sealed_trace_not_one_still_running(
    store: DatabaseUrl, dagster_instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_run(store, "tenant-a", "run-sealed", steps=3)
    record_run(store, "tenant-a", "run-live", steps=2, seal=False, started_at=BASE + timedelta(1))

    checks = _run_checks(store, dagster_instance, monkeypatch)

    assert {name: passed for name, (passed, _, _) in checks.items()} == {
        HASH_CHAIN_CHECK: True,
        CHAIN_LENGTH_CHECK: True,
        SEAL_CHECK: True,
    }
    metadata = checks[HASH_CHAIN_CHECK][1]
    assert metadata["run_id"] == "run-sealed"
    assert (metadata["chain_length"], metadata["step_count"]) == (3, 3)
    assert metadata["verification_status"] == "VERIFIED" and metadata["first_bad"] == "—"
    assert {severity for _, _, severity in checks.values()} == {AssetCheckSeverity.ERROR}


def test_checks_fail_on_an_altered_trace_naming_the_first_bad_step(
    store: DatabaseUrl, dagster_instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_run(store, "tenant-a", "run-x", steps=4)
    touched = owner_sql(
        store,
        "UPDATE aos_trace_steps SET skill_name = 'rm_rf' WHERE run_id = %s AND step_index = 0",
        ("run-x",),
        table="aos_trace_steps",
    )
    assert touched == 1

    checks = _run_checks(store, dagster_instance, monkeypatch)

    passed, metadata, severity = checks[HASH_CHAIN_CHECK]
    assert passed is False and severity == AssetCheckSeverity.ERROR
    assert metadata["first_bad"] == "step 0"
    assert metadata["verification_status"] == "FAILED"
    assert "step 0: step_hash mismatch" in metadata["failure_reason"]
    assert checks[SEAL_CHECK][0] is True


def test_checks_warn_when_there_is_no_sealed_trace(
    store: DatabaseUrl, dagster_instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_run(store, "tenant-a", "run-live", steps=1, seal=False)

    checks = _run_checks(store, dagster_instance, monkeypatch)

    assert set(checks) == {HASH_CHAIN_CHECK, CHAIN_LENGTH_CHECK, SEAL_CHECK}
    for passed, metadata, severity in checks.values():
        assert passed is False and severity == AssetCheckSeverity.WARN
        assert metadata == {"reason": "no sealed trace in aos_traces"}


def test_chain_length_check_compares_with_the_counted_rows(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-1", steps=2)
    proof = prove(store, "tenant-a", "run-1")
    trace = TraceRef("run-1", "tenant-a", BASE, "succeeded")

    matching = {e.check_name: e.passed for e in proof_check_evaluations(trace, 2, proof)}
    counted_more = {e.check_name: e.passed for e in proof_check_evaluations(trace, 3, proof)}

    assert matching == {HASH_CHAIN_CHECK: True, CHAIN_LENGTH_CHECK: True, SEAL_CHECK: True}
    assert counted_more == {HASH_CHAIN_CHECK: True, CHAIN_LENGTH_CHECK: False, SEAL_CHECK: True}


def test_checks_with_a_checkpoint_dir_but_no_key_fail_in_one_line(
    store: DatabaseUrl,
    dagster_instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The UI's "Execute checks" with checkpoints configured and no key to check them: the
    check run fails with the one configuration line, not a traceback (docs/bad-input.md)."""
    record_run(store, "tenant-a", "run-sealed", steps=2)
    for name in ("RUN_PROOF_SIGNING_KEY", "RUN_PROOF_PUBLIC_KEY", "RUN_PROOF_PUBLIC_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RUN_PROOF_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", store.libpq())
    monkeypatch.setenv("USE_POSTGRES_TRACES", "true")

    result = CHECKS_ONLY.resolve_job_def("aos_traces_checks").execute_in_process(
        instance=dagster_instance, raise_on_error=False
    )

    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert len(failures) == 1
    error = failures[0].event_specific_data.error
    assert error.cls_name == "Failure"
    line = error.message.removeprefix("dagster._core.definitions.events.Failure: ").strip()
    assert line.startswith("configuration error: checkpoints are configured but there is no key")
    assert "\n" not in line
    assert list(tmp_path.iterdir()) == []
