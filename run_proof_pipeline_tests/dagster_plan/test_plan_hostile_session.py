"""Issue 11, classes 1-3 on the Dagster plan: hostile defaults and swapped relations in the
store change nothing the plan says (store/session_pins.py, store/relations.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterEventType, DagsterInstance

from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.plan_runs import (
    plan_config,
    run_plan,
    stop_of,
    stored_events,
    trace_store,
)
from run_proof_pipeline_tests.test_hostile_session import (
    TAMPERED,
    TENANT,
    _new_store,
    _set_default,
)


@pytest.fixture
def hostile_store(pg_server: LocalPostgres) -> Iterator[DatabaseUrl]:
    name, url = _new_store(pg_server)
    yield url
    pg_server.drop_database(name)


@pytest.mark.parametrize(
    ("scope", "name", "value"),
    [
        ("database", "extra_float_digits", "-14"),
        pytest.param("role", "extra_float_digits", "-14", marks=pytest.mark.slow),
        pytest.param("database", "search_path", "shadow, public", marks=pytest.mark.slow),
        pytest.param("role", "DateStyle", "SQL, DMY", marks=pytest.mark.slow),
        pytest.param("database", "client_encoding", "SQL_ASCII", marks=pytest.mark.slow),
    ],
)
def test_plan_fails_step_4_at_the_tampered_step_under_a_hostile_default(
    hostile_store: DatabaseUrl,
    dagster_instance: DagsterInstance,
    report_dir: Path,
    scope: str,
    name: str,
    value: str,
) -> None:
    _set_default(hostile_store, scope, name, value)

    result = run_plan(
        dagster_instance,
        trace_store(hostile_store),
        plan_config(report_dir, run_id=TAMPERED, tenant_id=TENANT),
    )

    step, stop = stop_of(dagster_instance, result.run_id)
    assert step == "step_4_integrity_expectations"
    assert {k: v.value for k, v in stop.metadata.items()}["first_bad"] == "step 1"
    assert "verification_status = FAILED (expected VERIFIED)" in stop.description


def test_plan_stops_at_the_preconditions_when_the_steps_table_is_a_view(
    hostile_store: DatabaseUrl, dagster_instance: DagsterInstance, report_dir: Path
) -> None:
    with psycopg.connect(hostile_store.libpq(), autocommit=True) as conn:
        conn.execute("ALTER TABLE public.aos_trace_steps RENAME TO aos_trace_steps_real")
        conn.execute("CREATE VIEW public.aos_trace_steps AS SELECT * FROM shadow.aos_trace_steps")

    result = run_plan(
        dagster_instance,
        trace_store(hostile_store),
        plan_config(report_dir, run_id=TAMPERED, tenant_id=TENANT),
    )

    assert not result.success
    failures = stored_events(dagster_instance, result.run_id, DagsterEventType.STEP_FAILURE)
    assert len(failures) == 1
    data = failures[0].step_failure_data
    said = (data.user_failure_data.description if data.user_failure_data else "") or ""
    said += data.error.message if data.error else ""
    # The preconditions look for tables (not views) and stop before any proof is made.
    assert failures[0].step_key == "preconditions"
    assert "trace store schema missing: aos_trace_steps" in said
    assert not list(report_dir.glob("*.json"))  # no report of a proof that was not made
