"""The sensors: one plan run per new seal (none missed, none twice), and the failure alert."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    SensorResult,
    build_run_status_sensor_context,
    build_sensor_context,
)

from run_proof_pipeline.defs.plan import sensors
from run_proof_pipeline.defs.plan.job import run_proof_plan
from run_proof_pipeline.defs.plan.seal_cursor import PENDING_SECONDS, SealCursor
from run_proof_pipeline.defs.plan.sensors import (
    fetch_new_seals,
    new_sealed_traces,
    run_proof_failure_alert,
)
from run_proof_pipeline.plan import messages
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import async_engine
from run_proof_pipeline.store.recorder import TraceRecorder
from run_proof_pipeline_tests.support.plan_runs import (
    output_metadata,
    plan_config,
    run_plan,
    trace_store,
)
from run_proof_pipeline_tests.support.stores import BASE, owner_sql, record_run, run


def _tick(store: DatabaseUrl, cursor: str | None) -> SensorResult:
    context = build_sensor_context(cursor=cursor, resources={"trace_store": trace_store(store)})
    result = new_sealed_traces(context)
    assert isinstance(result, SensorResult)
    return result


def _requested(result: SensorResult) -> list[str]:
    return [request.tags["run_proof/run_id"] for request in result.run_requests or []]


def _seal_seqs(store: DatabaseUrl) -> dict[str, int | None]:
    with psycopg.connect(store.libpq()) as conn:
        return dict(conn.execute("SELECT run_id, seal_seq FROM aos_traces").fetchall())


def _sequence(store: DatabaseUrl, sql: str, params: tuple[int, ...] = ()) -> int:
    with psycopg.connect(store.libpq()) as conn:
        return conn.execute(sql, params).fetchone()[0]


def test_first_tick_only_sets_the_cursor_at_the_newest_seal(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-1", steps=2)
    record_run(store, "tenant-a", "run-2", steps=2)

    result = _tick(store, None)

    assert result.run_requests == []
    assert SealCursor.parse(result.cursor) == SealCursor(high=_seal_seqs(store)["run-2"])


def test_each_new_seal_with_steps_gets_one_run_in_seal_order(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-before", steps=2, chain_format=1)
    cursor = _tick(store, None).cursor
    record_run(store, "tenant-a", "run-b", steps=3, chain_format=1)
    record_run(store, "tenant-b", "run-live", steps=2, seal=False, chain_format=1)
    record_run(store, "tenant-a", "run-no-steps", steps=0, chain_format=1)
    # Sealed last although its producer's clock says it started first.
    record_run(
        store, "tenant-c", "run-a", steps=1, started_at=BASE - timedelta(days=1), chain_format=1
    )

    result = _tick(store, cursor)

    assert _requested(result) == ["run-b", "run-a"]
    with psycopg.connect(store.libpq()) as conn:
        trace_id, root = conn.execute(
            "SELECT trace_id, root_hash FROM aos_traces WHERE run_id = 'run-b'"
        ).fetchone()
    first = result.run_requests[0]
    assert first.run_key == f"{trace_id}:{root}"
    assert first.tags["run_proof/tenant_id"] == "tenant-a"
    assert first.tags["run_proof/origin"] == "sensor:new_sealed_traces"
    ops = first.run_config["ops"]
    assert ops["step_1_latest_trace"]["config"] == {"run_id": "run-b", "tenant_id": "tenant-a"}
    assert ops["step_5_coordinator_tests"]["config"]["enabled"] is False
    assert SealCursor.parse(result.cursor) == SealCursor(high=_seal_seqs(store)["run-a"])
    again = _tick(store, result.cursor)
    assert again.run_requests == [] and again.cursor == result.cursor


def test_seal_committed_after_a_later_numbered_one_is_not_missed(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-slow", steps=2, seal=False)
    cursor = _tick(store, None).cursor
    # Two producers seal at once: the slow one draws its number first and commits last.
    # Drawing the number here and handing it back with setval gives exactly that order.
    slow_number = _sequence(store, "SELECT nextval('aos_traces_seal_seq')")
    record_run(store, "tenant-a", "run-fast", steps=1)
    fast = _tick(store, cursor)
    assert _requested(fast) == ["run-fast"]
    assert slow_number in SealCursor.parse(fast.cursor).pending
    _sequence(store, "SELECT setval('aos_traces_seal_seq', %s, false)", (slow_number,))
    _seal_late(store, "run-slow")
    assert _seal_seqs(store)["run-slow"] == slow_number

    late = _tick(store, fast.cursor)

    assert _requested(late) == ["run-slow"]
    assert SealCursor.parse(late.cursor).pending == {}


def _seal_late(store: DatabaseUrl, run_id: str) -> None:
    async def go() -> None:
        engine = async_engine(store)
        try:
            await TraceRecorder(engine).seal(
                "tenant-a", run_id, status="succeeded", completed_at=BASE + timedelta(hours=2)
            )
        finally:
            await engine.dispose()

    run(go())


def test_number_of_a_rolled_back_seal_is_given_up_after_a_while(store: DatabaseUrl) -> None:
    cursor = SealCursor.parse(_tick(store, None).cursor)
    lost = _sequence(store, "SELECT nextval('aos_traces_seal_seq')")
    record_run(store, "tenant-a", "run-1", steps=1)

    seals, waiting = fetch_new_seals(trace_store(store), cursor, now=1000.0)
    assert [s.run_id for s in seals] == ["run-1"] and waiting.pending == {lost: 1000.0}
    seals, still = fetch_new_seals(trace_store(store), waiting, now=1000.0 + PENDING_SECONDS - 1)
    assert seals == [] and still.pending == {lost: 1000.0}
    seals, given_up = fetch_new_seals(trace_store(store), still, now=1000.0 + PENDING_SECONDS)
    assert seals == [] and given_up == SealCursor(high=waiting.high)


def test_a_burst_of_seals_is_taken_in_batches(
    store: DatabaseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sensors, "SENSOR_BATCH", 3)
    cursor = _tick(store, None).cursor
    for n in range(5):
        record_run(store, "tenant-a", f"run-{n}", steps=1)

    first = _tick(store, cursor)
    second = _tick(store, first.cursor)

    assert _requested(first) == ["run-0", "run-1", "run-2"]
    assert _requested(second) == ["run-3", "run-4"]
    assert SealCursor.parse(first.cursor).pending == {}
    assert SealCursor.parse(second.cursor) == SealCursor(high=_seal_seqs(store)["run-4"])


def test_cursor_of_the_first_sensor_version_is_read() -> None:
    assert SealCursor.parse("42") == SealCursor(high=42)
    assert SealCursor.parse(None) is None
    with pytest.raises(ValueError, match="unreadable new-seal sensor cursor"):
        SealCursor.parse("{not json")


def test_pending_numbers_are_bounded() -> None:
    advanced = SealCursor(high=0).advance([5000], now=0.0)

    assert advanced.high == 5000
    assert sorted(advanced.pending) == list(range(4000, 5000))


def test_sensor_run_request_proves_its_trace(
    store: DatabaseUrl, dagster_instance: DagsterInstance, report_dir: Path
) -> None:
    cursor = _tick(store, None).cursor
    record_run(store, "tenant-a", "run-new", steps=4)
    record_run(store, "tenant-a", "run-newer-unsealed", steps=1, seal=False)
    (request,) = _tick(store, cursor).run_requests

    result = run_proof_plan.execute_in_process(
        run_config=request.run_config,
        tags=request.tags,
        instance=dagster_instance,
        resources={"trace_store": trace_store(store)},
    )

    assert result.success
    assert output_metadata(dagster_instance, result.run_id, "step_1_latest_trace")["run_id"] == (
        "run-new"
    )
    assert list(report_dir.glob(f"run-proof-report-{result.run_id}.*"))


@dataclass
class Webhook:
    url: str
    status: int = 200
    received: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """A real HTTP endpoint on loopback that records what is POSTed to it."""
    hook = Webhook(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            hook.received.append(json.loads(self.rfile.read(length)))
            self.send_response(hook.status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _alert(instance: DagsterInstance, run_id: str) -> dict[str, Any]:
    """Run the failure sensor for a failed run; returns the observation it recorded."""
    dagster_run = instance.get_run_by_id(run_id)
    failure = [
        e for e in instance.all_logs(run_id) if e.dagster_event and e.dagster_event.is_run_failure
    ]
    context = build_run_status_sensor_context(
        sensor_name="run_proof_failure_alert",
        dagster_event=failure[0].dagster_event,
        dagster_instance=instance,
        dagster_run=dagster_run,
    ).for_run_failure()
    run_proof_failure_alert(context)
    for record in instance.fetch_observations(AssetKey("aos_traces"), limit=100).records:
        metadata = {k: v.value for k, v in record.asset_observation.metadata.items()}
        if metadata.get("dagster_run_id") == run_id:
            return metadata
    raise AssertionError(f"no alert recorded for {run_id}")


def test_failed_proof_alert_names_the_trace_the_step_and_the_first_bad_step(
    store: DatabaseUrl,
    dagster_instance: DagsterInstance,
    report_dir: Path,
    webhook: Webhook,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record_run(store, "tenant-a", "run-bad", steps=4)
    touched = owner_sql(
        store,
        "UPDATE aos_trace_steps SET cost_cents = 0 WHERE run_id = %s AND step_index = 1",
        ("run-bad",),
        table="aos_trace_steps",
    )
    assert touched == 1
    failed = run_plan(dagster_instance, trace_store(store), plan_config(report_dir))
    assert not failed.success
    monkeypatch.setenv("RUN_PROOF_ALERT_WEBHOOK", webhook.url)

    observed = _alert(dagster_instance, failed.run_id)

    (stop,) = json.loads(observed["failed_steps"])
    assert stop["step"] == "step_4_integrity_expectations"
    assert stop["first_bad"] == "step 1"
    assert stop["error"].startswith("Integrity expectations not met:")
    assert (observed["tenant_id"], observed["run_id"]) == ("tenant-a", "run-bad")
    assert observed["webhook"] == "HTTP 200"
    assert webhook.received == [
        {
            "event": "run_proof_failed",
            "dagster_run_id": failed.run_id,
            "tenant_id": "tenant-a",
            "run_id": "run-bad",
            "failed_steps": [stop],
        }
    ]


def test_alert_for_a_stop_before_any_trace_carries_the_seed_message(
    store: DatabaseUrl, dagster_instance: DagsterInstance, report_dir: Path
) -> None:
    failed = run_plan(dagster_instance, trace_store(store), plan_config(report_dir))

    observed = _alert(dagster_instance, failed.run_id)

    assert json.loads(observed["failed_steps"]) == [
        {"step": "step_1_latest_trace", "error": messages.NO_TRACE_DATA, "first_bad": None}
    ]
    assert "run_id" not in observed and "webhook" not in observed


def test_alert_for_a_run_that_failed_outside_any_step_says_why(
    dagster_instance: DagsterInstance,
) -> None:
    dagster_run = dagster_instance.create_run_for_job(
        run_proof_plan, tags={"run_proof/tenant_id": "tenant-a", "run_proof/run_id": "run-9"}
    )
    dagster_instance.report_run_failed(dagster_run, message="run worker exited unexpectedly")

    observed = _alert(dagster_instance, dagster_run.run_id)

    assert json.loads(observed["failed_steps"]) == [
        {"step": "run", "error": "run worker exited unexpectedly", "first_bad": None}
    ]
    assert (observed["tenant_id"], observed["run_id"]) == ("tenant-a", "run-9")


@pytest.mark.parametrize("status", [500, None])
def test_webhook_that_fails_does_not_lose_the_alert(
    store: DatabaseUrl,
    dagster_instance: DagsterInstance,
    report_dir: Path,
    webhook: Webhook,
    monkeypatch: pytest.MonkeyPatch,
    status: int | None,
) -> None:
    failed = run_plan(dagster_instance, trace_store(store), plan_config(report_dir))
    if status is None:
        # Nothing listens on port 1: the POST cannot be delivered at all.
        monkeypatch.setenv("RUN_PROOF_ALERT_WEBHOOK", "http://127.0.0.1:1/alerts")
    else:
        webhook.status = status
        monkeypatch.setenv("RUN_PROOF_ALERT_WEBHOOK", webhook.url)

    observed = _alert(dagster_instance, failed.run_id)

    assert observed["event"] == "run_proof_failed"
    if status is None:
        assert observed["webhook"].startswith("not delivered:")
    else:
        assert observed["webhook"] == "HTTP 500" and len(webhook.received) == 1
