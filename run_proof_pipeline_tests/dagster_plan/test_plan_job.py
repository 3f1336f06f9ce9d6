"""`run_proof_plan` on a real trace store: every step of the seed, each stop it names, and the
Output Report, with Dagster's runs and events stored in PostgreSQL."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterInstance, DagsterRunStatus

from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.plan import messages
from run_proof_pipeline.plan.report import REPORT_FIELDS
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.plan_runs import (
    PLAN_STEPS,
    check_outcomes,
    everything_logged,
    failed_steps,
    output_metadata,
    plan_config,
    run_plan,
    stop_of,
    succeeded_steps,
    trace_store,
)
from run_proof_pipeline_tests.support.stores import BASE, owner_sql, record_run


def _stored(url: DatabaseUrl, sql: str, params: tuple[object, ...]) -> tuple:
    with psycopg.connect(url.libpq()) as conn:
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row


def _assert_stopped_at(instance: DagsterInstance, run_id: str, step: str, report_dir: Path):
    """The run failed at `step`, every step before it passed, none after it ran, and no
    report was written for it."""
    position = PLAN_STEPS.index(step)
    assert instance.get_run_by_id(run_id).status == DagsterRunStatus.FAILURE
    assert succeeded_steps(instance, run_id) == PLAN_STEPS[:position]
    assert failed_steps(instance, run_id) == [step]
    assert not list(report_dir.glob(f"*{run_id}*"))
    return stop_of(instance, run_id)[1]


def test_verified_latest_run_passes_every_step_and_reports_every_field(
    store: DatabaseUrl,
    dagster_instance: DagsterInstance,
    report_dir: Path,
    pg_server: LocalPostgres,
) -> None:
    record_run(store, "tenant-a", "run-old", steps=2, chain_format=1)
    record_run(
        store, "tenant-b", "run-new", steps=5, started_at=BASE + timedelta(hours=1), chain_format=1
    )
    root_hash, started_at = _stored(
        store, "SELECT root_hash, started_at FROM aos_traces WHERE run_id = %s", ("run-new",)
    )

    result = run_plan(dagster_instance, trace_store(store), plan_config(report_dir))

    assert result.success
    run_id = result.run_id
    assert succeeded_steps(dagster_instance, run_id) == PLAN_STEPS
    assert output_metadata(dagster_instance, run_id, "step_1_latest_trace") == {
        "run_id": "run-new",
        "tenant_id": "tenant-b",
        "started_at": started_at.isoformat(),
        "status": "succeeded",
    }
    assert output_metadata(dagster_instance, run_id, "step_2_step_count") == {"step_count": 5}
    # No checkpoint directory in this test's environment: the anchor says so, not silence.
    step_3 = output_metadata(dagster_instance, run_id, "step_3_coordinator_proof")
    assert step_3["anchor"] == "ledger only: no checkpoint directory configured"
    checks = check_outcomes(dagster_instance, run_id)
    assert checks["hash_chain_integrity"][1]["anchor"] == step_3["anchor"]
    step_3 = output_metadata(dagster_instance, run_id, "step_3_coordinator_proof")
    assert {k: step_3[k] for k in ("integrity_model", "verification_status", "chain_length")} == {
        "integrity_model": "HASH_CHAIN",
        "verification_status": "VERIFIED",
        "chain_length": 5,
    }
    assert step_3["root_hash"] == root_hash and step_3["trace_count"] == 1
    tags = dagster_instance.get_run_by_id(run_id).tags
    assert tags["run_proof/run_id"] == "run-new" and tags["run_proof/tenant_id"] == "tenant-b"

    report_path = Path(result.output_for_node("output_report"))
    assert report_path == report_dir / f"run-proof-report-{run_id}.md"
    markdown = report_path.read_text(encoding="utf-8")
    for _, label in REPORT_FIELDS:
        assert f"**{label}**" in markdown
    report = json.loads(report_path.with_suffix(".json").read_text(encoding="utf-8"))
    assert report == {
        "db_url": store.redacted(),
        "run_id": "run-new",
        "tenant_id": "tenant-b",
        "started_at": started_at.isoformat(),
        "status": "succeeded",
        "step_count": 5,
        "integrity_model": "HASH_CHAIN",
        "verification_status": "VERIFIED",
        "chain_length": 5,
        "root_hash": root_hash,
        "trace_count": 1,
        "coordinator_step_count": 5,
        "pytest_result": "skipped by configuration",
        "adopted_at": "native (not adopted)",
    }
    assert "***" in report["db_url"]
    assert pg_server.password not in markdown
    assert pg_server.password not in everything_logged(dagster_instance, run_id)


def test_plan_reads_database_url_from_the_environment_like_the_seed(
    store: DatabaseUrl,
    dagster_instance: DagsterInstance,
    report_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record_run(store, "tenant-a", "run-env", steps=3)
    monkeypatch.setenv("DATABASE_URL", store.libpq())
    monkeypatch.setenv("USE_POSTGRES_TRACES", "true")

    result = run_plan(
        dagster_instance, trace_store(None, use_postgres_traces=None), plan_config(report_dir)
    )

    assert result.success
    step_3 = output_metadata(dagster_instance, result.run_id, "step_3_coordinator_proof")
    assert (step_3["verification_status"], step_3["chain_length"]) == ("VERIFIED", 3)


def test_configured_run_is_proven_instead_of_the_latest(
    store: DatabaseUrl, dagster_instance: DagsterInstance, report_dir: Path
) -> None:
    record_run(store, "tenant-a", "run-target", steps=4)
    record_run(store, "tenant-a", "run-later", steps=1, started_at=BASE + timedelta(hours=2))

    result = run_plan(
        dagster_instance,
        trace_store(store),
        plan_config(report_dir, run_id="run-target", tenant_id="tenant-a"),
    )

    assert result.success
    assert output_metadata(dagster_instance, result.run_id, "step_1_latest_trace")["run_id"] == (
        "run-target"
    )
    assert output_metadata(dagster_instance, result.run_id, "step_2_step_count") == {
        "step_count": 4
    }


def test_empty_store_stops_at_step_1_with_the_seed_message(
    store: DatabaseUrl, dagster_instance: DagsterInstance, report_dir: Path
) -> None:
    result = run_plan(dagster_instance, trace_store(store), plan_config(report_dir))

    stop = _assert_stopped_at(dagster_instance, result.run_id, "step_1_latest_trace", report_dir)
    assert stop.description == messages.NO_TRACE_DATA


def test_configured_run_of_another_tenant_is_not_found(
    store: DatabaseUrl, dagster_instance: DagsterInstance, report_dir: Path
) -> None:
    record_run(store, "tenant-a", "run-private", steps=2)

    result = run_plan(
        dagster_instance,
        trace_store(store),
        plan_config(report_dir, run_id="run-private", tenant_id="tenant-b"),
    )

    stop = _assert_stopped_at(dagster_instance, result.run_id, "step_1_latest_trace", report_dir)
    assert stop.description == messages.NO_TRACE_DATA


def test_run_id_without_tenant_is_refused(
    store: DatabaseUrl, dagster_instance: DagsterInstance, report_dir: Path
) -> None:
    record_run(store, "tenant-a", "run-1", steps=1)

    result = run_plan(dagster_instance, trace_store(store), plan_config(report_dir, run_id="run-1"))

    stop = _assert_stopped_at(dagster_instance, result.run_id, "step_1_latest_trace", report_dir)
    assert "run_id and tenant_id must be given together" in stop.description


def test_latest_trace_without_steps_stops_at_step_2(
    store: DatabaseUrl, dagster_instance: DagsterInstance, report_dir: Path
) -> None:
    record_run(store, "tenant-a", "run-with-steps", steps=3)
    record_run(store, "tenant-a", "run-empty", steps=0, started_at=BASE + timedelta(hours=1))

    result = run_plan(dagster_instance, trace_store(store), plan_config(report_dir))

    stop = _assert_stopped_at(dagster_instance, result.run_id, "step_2_step_count", report_dir)
    assert stop.description == messages.NO_STEPS
    assert {k: v.value for k, v in stop.metadata.items()} == {
        "run_id": "run-empty",
        "tenant_id": "tenant-a",
        "step_count": 0,
    }


def test_altered_step_fails_step_4_naming_the_first_bad_step(
    store: DatabaseUrl, dagster_instance: DagsterInstance, report_dir: Path
) -> None:
    record_run(store, "tenant-a", "run-x", steps=6)
    (stored_hash,) = _stored(
        store,
        "SELECT step_hash FROM aos_trace_steps WHERE run_id = %s AND step_index = 3",
        ("run-x",),
    )
    touched = owner_sql(
        store,
        'UPDATE aos_trace_steps SET params = \'{"url": "https://evil.invalid"}\''
        " WHERE run_id = %s AND step_index = 3",
        ("run-x",),
        table="aos_trace_steps",
    )
    assert touched == 1

    result = run_plan(dagster_instance, trace_store(store), plan_config(report_dir))

    stop = _assert_stopped_at(
        dagster_instance, result.run_id, "step_4_integrity_expectations", report_dir
    )
    evidence = {k: v.value for k, v in stop.metadata.items()}
    assert evidence["first_bad"] == "step 3"
    assert evidence["found_hash"] == stored_hash != evidence["expected_hash"]
    assert "verification_status = FAILED (expected VERIFIED)" in stop.description
    assert "step 3: step_hash mismatch" in stop.description
    checks = check_outcomes(dagster_instance, result.run_id)
    assert {name: passed for name, (passed, _) in checks.items()} == {
        "hash_chain_integrity": False,
        "chain_length_matches_step_count": False,
        "seal_present": True,
    }
    assert checks["hash_chain_integrity"][1]["first_bad"] == "step 3"


def test_deleted_step_fails_step_4_at_the_gap(
    store: DatabaseUrl, dagster_instance: DagsterInstance, report_dir: Path
) -> None:
    record_run(store, "tenant-a", "run-gap", steps=5)
    touched = owner_sql(
        store,
        "DELETE FROM aos_trace_steps WHERE run_id = %s AND step_index = 2",
        ("run-gap",),
        table="aos_trace_steps",
    )
    assert touched == 1

    result = run_plan(dagster_instance, trace_store(store), plan_config(report_dir))

    stop = _assert_stopped_at(
        dagster_instance, result.run_id, "step_4_integrity_expectations", report_dir
    )
    assert stop.metadata["first_bad"].value == "step 2"
    assert output_metadata(dagster_instance, result.run_id, "step_2_step_count") == {
        "step_count": 4
    }


def test_rewritten_seal_fails_step_4_naming_the_seal(
    store: DatabaseUrl, dagster_instance: DagsterInstance, report_dir: Path
) -> None:
    record_run(store, "tenant-a", "run-seal", steps=2, status="failed", chain_format=1)
    touched = owner_sql(
        store,
        "UPDATE aos_traces SET status = 'succeeded' WHERE run_id = %s",
        ("run-seal",),
        table="aos_traces",
    )
    assert touched == 1

    result = run_plan(dagster_instance, trace_store(store), plan_config(report_dir))

    stop = _assert_stopped_at(
        dagster_instance, result.run_id, "step_4_integrity_expectations", report_dir
    )
    assert stop.metadata["first_bad"].value == "seal"
    assert "root_hash mismatch" in stop.description


def test_unsealed_latest_trace_fails_step_4_and_says_it_is_unsealed(
    store: DatabaseUrl, dagster_instance: DagsterInstance, report_dir: Path
) -> None:
    record_run(store, "tenant-a", "run-live", steps=3, seal=False)

    result = run_plan(dagster_instance, trace_store(store), plan_config(report_dir))

    stop = _assert_stopped_at(
        dagster_instance, result.run_id, "step_4_integrity_expectations", report_dir
    )
    assert "verification_status = UNSEALED (expected VERIFIED)" in stop.description
    assert "the trace is UNSEALED" in stop.description
    checks = check_outcomes(dagster_instance, result.run_id)
    assert checks["hash_chain_integrity"][0] is True
    assert checks["seal_present"][0] is False


@pytest.mark.parametrize(
    ("use_postgres_traces", "message"),
    [
        ("false", "USE_POSTGRES_TRACES='false' is not supported"),
        (None, "USE_POSTGRES_TRACES is not set"),
    ],
)
def test_preconditions_require_use_postgres_traces(
    store: DatabaseUrl,
    dagster_instance: DagsterInstance,
    report_dir: Path,
    use_postgres_traces: str | None,
    message: str,
) -> None:
    record_run(store, "tenant-a", "run-1", steps=1)

    result = run_plan(
        dagster_instance,
        trace_store(store, use_postgres_traces=use_postgres_traces),
        plan_config(report_dir),
    )

    stop = _assert_stopped_at(dagster_instance, result.run_id, "preconditions", report_dir)
    assert message in stop.description


def test_preconditions_require_database_url(
    dagster_instance: DagsterInstance, report_dir: Path
) -> None:
    result = run_plan(dagster_instance, trace_store(None), plan_config(report_dir))

    stop = _assert_stopped_at(dagster_instance, result.run_id, "preconditions", report_dir)
    assert "DATABASE_URL is not set" in stop.description


def test_preconditions_refuse_a_sqlite_url(
    dagster_instance: DagsterInstance, report_dir: Path
) -> None:
    result = run_plan(dagster_instance, trace_store("sqlite:///traces.db"), plan_config(report_dir))

    stop = _assert_stopped_at(dagster_instance, result.run_id, "preconditions", report_dir)
    assert "is not a PostgreSQL URL" in stop.description


def test_preconditions_name_the_missing_schema(
    new_database, dagster_instance: DagsterInstance, report_dir: Path
) -> None:
    empty = DatabaseUrl.parse(new_database("unmigrated"))

    result = run_plan(dagster_instance, trace_store(empty), plan_config(report_dir))

    stop = _assert_stopped_at(dagster_instance, result.run_id, "preconditions", report_dir)
    assert stop.description == (
        "Preconditions: trace store schema missing: aos_traces, aos_trace_steps"
    )


def test_wrong_password_stops_the_preconditions_without_revealing_it(
    store: DatabaseUrl, dagster_instance: DagsterInstance, report_dir: Path
) -> None:
    wrong = "not-the-Passw0rd"
    url = DatabaseUrl(store.url.set(password=wrong))

    result = run_plan(dagster_instance, trace_store(url), plan_config(report_dir))

    stop = _assert_stopped_at(dagster_instance, result.run_id, "preconditions", report_dir)
    assert stop.description.startswith("Preconditions: database error:")
    assert "password authentication failed" in stop.description
    assert wrong not in everything_logged(dagster_instance, result.run_id)


def test_unreachable_server_stops_the_preconditions(
    store: DatabaseUrl, dagster_instance: DagsterInstance, report_dir: Path
) -> None:
    # Port 1 on loopback: nothing listens there, so the connection is refused at once.
    url = DatabaseUrl(store.url.set(port=1))

    result = run_plan(dagster_instance, trace_store(url), plan_config(report_dir))

    stop = _assert_stopped_at(dagster_instance, result.run_id, "preconditions", report_dir)
    assert stop.description.startswith("Preconditions: database error:")
    assert store.url.password not in everything_logged(dagster_instance, result.run_id)


def test_step_3_proves_in_parallel_segments_and_names_the_first_bad_step(
    store: DatabaseUrl, dagster_instance: DagsterInstance, report_dir: Path
) -> None:
    # A long run goes to segment workers; here any run does (parallel_min_steps=1), and the
    # altered row sits inside the second of three segments.
    record_run(store, "tenant-a", "run-long", steps=30)
    owner_sql(
        store,
        "UPDATE aos_trace_steps SET status = 'edited' WHERE run_id = %s AND step_index = 14",
        ("run-long",),
        table="aos_trace_steps",
    )
    config = plan_config(report_dir)
    config["ops"]["step_3_coordinator_proof"] = {
        "config": {"workers": 3, "parallel_min_steps": 1, "progress_every_steps": 4}
    }

    result = run_plan(dagster_instance, trace_store(store), config)

    stop = _assert_stopped_at(
        dagster_instance, result.run_id, "step_4_integrity_expectations", report_dir
    )
    assert {k: v.value for k, v in stop.metadata.items()}["first_bad"] == "step 14"
    step_3 = output_metadata(dagster_instance, result.run_id, "step_3_coordinator_proof")
    assert step_3["verification_status"] == "FAILED"
    assert step_3["chain_length"] == 15  # read up to the first failure, as one stream would
    assert step_3["segment_workers"] == 3
    # Each worker logs every 4 of its rows and then the rest: progress against the seal.
    logged = everything_logged(dagster_instance, result.run_id)
    assert re.search(r"Step 3: verified \d+/30 steps \([\d,]+ steps/s, ETA [\d,]+ s\)", logged)


def test_step_3_progress_message_has_rate_and_eta() -> None:
    from run_proof_pipeline.defs.plan.ops import progress_message

    assert progress_message(250, 1000, 2.0) == (
        "Step 3: verified 250/1000 steps (125 steps/s, ETA 6 s)"
    )
    assert progress_message(250, None, 2.0) == "Step 3: verified 250 steps (125 steps/s)"
