"""The nightly schedule: it proves the latest sealed trace, chosen when the tick fires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dagster import RunRequest, SkipReason, build_schedule_context, validate_run_config

from run_proof_pipeline.defs.plan.job import run_proof_plan
from run_proof_pipeline.defs.plan.schedules import nightly_run_proof
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.plan_runs import trace_store
from run_proof_pipeline_tests.support.stores import BASE, record_run

TICK = datetime(2026, 2, 10, 2, 0, tzinfo=UTC)


def _tick(store: DatabaseUrl) -> RunRequest | SkipReason:
    context = build_schedule_context(
        scheduled_execution_time=TICK, resources={"trace_store": trace_store(store)}
    )
    return nightly_run_proof(context)


def test_no_sealed_trace_skips_the_night(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-live", steps=2, seal=False)

    outcome = _tick(store)

    assert isinstance(outcome, SkipReason)
    assert outcome.skip_message == "no sealed trace in aos_traces yet"


def test_night_proves_the_latest_sealed_trace_with_the_coordinator_tests(
    store: DatabaseUrl,
) -> None:
    record_run(store, "tenant-a", "run-older", steps=2)
    record_run(store, "tenant-b", "run-sealed", steps=3, started_at=BASE + timedelta(hours=1))
    record_run(store, "tenant-a", "run-live", steps=1, seal=False, started_at=BASE + timedelta(2))

    outcome = _tick(store)

    assert isinstance(outcome, RunRequest)
    assert outcome.run_key is None
    assert outcome.tags == {
        "run_proof/tenant_id": "tenant-b",
        "run_proof/run_id": "run-sealed",
        "run_proof/origin": "schedule:2026-02-10",
    }
    ops = outcome.run_config["ops"]
    assert ops["step_1_latest_trace"]["config"] == {"run_id": "run-sealed", "tenant_id": "tenant-b"}
    assert ops["step_5_coordinator_tests"]["config"]["enabled"] is True
    validate_run_config(run_proof_plan, outcome.run_config)
