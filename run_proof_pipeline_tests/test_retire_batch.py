"""`run-proof retire --created-before` and the `aos_retention_retirement` schedule (issue 13
item 5): every format run of AOS's retention window gets a signed tombstone first, so AOS's
own retention (two set-based statements) then succeeds and `checkpoint verify` raises no
alarm; a removal without a tombstone is still an alarm.

Two stores: run-proof's own schema with format-v1 runs of the recorder (the batch's
selection, idempotence, refusals and exit codes), and AOS as deployed
(aos_deployed.create_aos_deployed_store, then `db upgrade`) with format-v2 runs chained by
the database, sealed or not, and an adopted legacy run (the schedule, AOS's retention).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from dagster import DagsterInstance, RunRequest, SkipReason, build_schedule_context
from typer.testing import CliRunner

from run_proof_pipeline.cli.main import app
from run_proof_pipeline.defs.resources import TraceStoreResource
from run_proof_pipeline.defs.retention.retirement import (
    RETIRE_OP,
    RetentionSettings,
    aos_retention_retirement,
    aos_retention_retirement_job,
    retention_settings,
)
from run_proof_pipeline.ledger.keys import generate_signing_key, write_signing_key
from run_proof_pipeline.ledger.settings import default_origin
from run_proof_pipeline.settings import ConfigError, DatabaseUrl
from run_proof_pipeline.store.migrate import upgrade
from run_proof_pipeline_tests.support.aos_deployed import (
    cleanup_old_traces,
    complete_trace,
    connect,
    create_aos_deployed_store,
    record_step,
    start_trace,
)
from run_proof_pipeline_tests.support.ledger_fixtures import CheckpointEnv
from run_proof_pipeline_tests.support.stores import prove, record_run
from run_proof_pipeline_tests.test_ledger_support import (
    audit,
    make_checkpoint,
    one,
    tamper,
)

RETENTION_DAYS = 30


@pytest.fixture
def signing(checkpoint_env: CheckpointEnv) -> CheckpointEnv:
    """checkpoint_env; `_key_for(url)` writes its key (retire never creates one)."""
    return checkpoint_env


def _key_for(url: DatabaseUrl, env: CheckpointEnv) -> None:
    # Named by the log's origin, so that checkpoints can be signed with it too.
    write_signing_key(env.signing_key, generate_signing_key(default_origin(url.database)))


def _cli(url: DatabaseUrl, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    monkeypatch.setenv("DATABASE_URL", url.libpq())
    monkeypatch.delenv("USE_POSTGRES_TRACES", raising=False)
    return CliRunner().invoke(app, list(args))


def _tombstones(url: DatabaseUrl) -> list[tuple[Any, ...]]:
    with psycopg.connect(url.libpq()) as conn:
        return conn.execute(
            "SELECT tenant_id, run_id, trace_id, chain_length, root_hash FROM run_proof_ledger"
            " WHERE kind = 'tombstone' ORDER BY seq"
        ).fetchall()


def _soon() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).isoformat()


# --- the batch on run-proof's own schema (format v1) ------------------------------------


def test_batch_retires_every_format_run_of_the_window_once(
    store: DatabaseUrl, signing: CheckpointEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    _key_for(store, signing)
    for run_id in ("r1", "r2", "r3"):
        record_run(store, "tenant-a", run_id, steps=2)
    record_run(store, "tenant-a", "r-open", steps=3, seal=False)
    record_run(store, "tenant-b", "b1", steps=1)
    args = ("retire", "--created-before", _soon(), "--tenant-id", "tenant-a")

    first = _cli(store, monkeypatch, *args, "--reason", "retention", "--batch-size", "3")

    assert first.exit_code == 0, first.output
    assert "batch 1: 3 runs examined" in first.stderr and "batch 2: 4 runs examined" in first.stderr
    assert "batch" not in first.stdout  # progress goes to stderr only
    assert first.stdout.count("retired: tenant 'tenant-a'") == 4
    assert "4 retired, 0 retired before, 0 refused" in first.stdout
    tombstones = _tombstones(store)
    assert sorted(t[1] for t in tombstones) == ["r-open", "r1", "r2", "r3"]
    # The unsealed run is retired as it stands: its head (the last step's hash), 3 steps.
    [(length, head)] = [(t[3], t[4]) for t in tombstones if t[1] == "r-open"]
    last_step = one(
        store,
        "SELECT step_hash FROM aos_trace_steps WHERE trace_id = 'trace-r-open' AND step_index = 2",
    )
    assert (length, head) == (3, last_step)

    again = _cli(store, monkeypatch, *args, "--reason", "retention")

    assert again.exit_code == 0, again.output
    assert "0 retired, 4 retired before, 0 refused" in again.stdout
    assert _tombstones(store) == tombstones
    # Retired, then deleted: no alarm; the other tenant's run is untouched and still proved.
    with psycopg.connect(store.libpq()) as conn:
        conn.execute("DELETE FROM aos_traces WHERE tenant_id = 'tenant-a'")
    make_checkpoint(store)
    assert audit(store).problems == []
    assert prove(store, "tenant-b", "b1").integrity.verification_status == "VERIFIED"


def test_batch_outside_the_window_and_refusals(
    store: DatabaseUrl, signing: CheckpointEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    _key_for(store, signing)
    record_run(store, "tenant-a", "r1", steps=1, chain_format=1)
    record_run(store, "tenant-a", "r-cleared", steps=1, chain_format=1)

    past = _cli(
        store, monkeypatch, "retire", "--created-before", "2020-01-01", "--reason", "retention"
    )

    assert past.exit_code == 0, past.output
    assert "created before 2020-01-01T00:00:00+00:00: 0 retired" in past.stdout
    assert _tombstones(store) == []
    # An owner cleared a genesis hash: the run reads as legacy and is not retired; the batch
    # retires the others and exits as `retire` does on a refusal (4).
    tamper(store, ("UPDATE aos_traces SET genesis_hash = NULL WHERE run_id = 'r-cleared'", ()))

    ran = _cli(store, monkeypatch, "retire", "--created-before", _soon(), "--reason", "retention")

    assert ran.exit_code == 4, ran.output
    assert "refused: tenant 'tenant-a', run 'r-cleared'" in ran.stdout
    assert "legacy trace" in ran.stdout
    assert "1 runs created before" in ran.stderr and "AOS's retention will fail" in ran.stderr
    assert [t[1] for t in _tombstones(store)] == ["r1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "either --run-id"),
        (("--run-id", "r", "--tenant-id", "t", "--created-before", "2026-01-01"), "either"),
        (("--run-id", "r"), "--run-id needs --tenant-id"),
        (("--created-before", "2026-01-01T10:00"), "has no UTC offset"),
        (("--created-before", "yesterday"), "is not a date"),
    ],
)
def test_batch_usage_errors_exit_2(
    store: DatabaseUrl, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], message: str
) -> None:
    result = _cli(store, monkeypatch, "retire", *args, "--reason", "x")

    assert result.exit_code == 2, result.output
    assert message in result.stderr


# --- the schedule (no database) ----------------------------------------------------------


def test_retention_settings_and_the_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUN_PROOF_AOS_RETENTION_DAYS", raising=False)
    monkeypatch.delenv("RUN_PROOF_AOS_RETENTION_LEAD_HOURS", raising=False)
    assert retention_settings() == RetentionSettings(30, timedelta(hours=24))
    monkeypatch.setenv("RUN_PROOF_AOS_RETENTION_DAYS", "7")
    monkeypatch.setenv("RUN_PROOF_AOS_RETENTION_LEAD_HOURS", "3")
    at = datetime(2026, 3, 10, 0, 0, tzinfo=UTC)

    request = aos_retention_retirement(build_schedule_context(scheduled_execution_time=at))

    assert isinstance(request, RunRequest)
    config = request.run_config["ops"][RETIRE_OP]["config"]
    assert config["created_before"] == "2026-03-03T03:00:00+00:00"
    assert "AOS retention (7 days)" in config["reason"]
    assert request.run_key == "aos-retention:2026-03-03T03:00:00+00:00"


@pytest.mark.parametrize(
    ("days", "lead", "message"),
    [("thirty", "", "not a whole number"), ("0", "", "at least 1"), ("1", "24", "shorter")],
)
def test_a_bad_retention_setting_skips_the_tick(
    monkeypatch: pytest.MonkeyPatch, days: str, lead: str, message: str
) -> None:
    monkeypatch.setenv("RUN_PROOF_AOS_RETENTION_DAYS", days)
    monkeypatch.setenv("RUN_PROOF_AOS_RETENTION_LEAD_HOURS", lead)
    with pytest.raises(ConfigError, match=message):
        retention_settings()

    tick = aos_retention_retirement(
        build_schedule_context(scheduled_execution_time=datetime(2026, 3, 10, tzinfo=UTC))
    )

    assert isinstance(tick, SkipReason) and message in (tick.skip_message or "")


# --- AOS as deployed: the schedule's run, then AOS's retention ----------------------------


def _old_v2_run(
    conn: psycopg.Connection[Any], run_id: str, created_at: datetime, *, steps: int, seal: bool
) -> str:
    """A run inserted after the upgrade (chained by the database) but created long ago: AOS's
    start_trace statement with an explicit creation time, then AOS's record_step."""
    trace_id = f"trace_{run_id}"
    conn.execute(
        "INSERT INTO aos_traces (trace_id, run_id, correlation_id, tenant_id, agent_id,"
        " root_hash, plan, trace, schema_version, status, started_at, created_at)"
        " VALUES (%s, %s, %s, 'acme', 'agent-1', 'pending', %s, %s, '1.0', 'running', %s, %s)",
        (
            trace_id,
            run_id,
            f"corr-{run_id}",
            json.dumps([{"skill": "http_call"}]),
            json.dumps({"steps": []}),
            created_at,
            created_at,
        ),
    )
    for index in range(steps):
        record_step(
            conn, trace_id, index, "http_call", {"n": index}, "success", "SUCCESS", "200", None,
            0.5, 12.5, 0,
        )  # fmt: skip
    if seal:
        complete_trace(conn, run_id, "completed", {"cost_cents": 1.0})
    return trace_id


@pytest.fixture
def deployed(new_database: Any, signing: CheckpointEnv) -> DatabaseUrl:
    url = DatabaseUrl.parse(new_database("aosret"))
    create_aos_deployed_store(url)
    upgrade(url)
    _key_for(url, signing)
    long_ago = datetime.now(UTC) - timedelta(days=2 * RETENTION_DAYS)
    with connect(url) as conn:
        _old_v2_run(conn, "run-old-sealed", long_ago, steps=2, seal=True)
        _old_v2_run(conn, "run-old-open", long_ago + timedelta(hours=1), steps=1, seal=False)
        recent = start_trace(conn, "run-recent", "corr-recent", "acme", "agent-1", [])
        record_step(conn, recent, 0, "http_call", {}, "success", "SUCCESS", None, None, 0.0, 1.0, 0)
        complete_trace(conn, "run-recent", "completed", None)
    return url


def _format_traces(url: DatabaseUrl) -> dict[str, Any]:
    with psycopg.connect(url.libpq()) as conn:
        return dict(
            conn.execute(
                "SELECT trace_id, chain_format FROM aos_traces WHERE chain_format IS NOT NULL"
            ).fetchall()
        )


def _run_the_schedule(url: DatabaseUrl, instance: DagsterInstance) -> Any:
    # Closed at once: an open context keeps Dagster's current defs-state storage on an
    # instance of its own (see test_sweep_dagster.py).
    with build_schedule_context(
        instance=instance, scheduled_execution_time=datetime.now(UTC)
    ) as context:
        request = aos_retention_retirement(context)
    assert isinstance(request, RunRequest)
    return aos_retention_retirement_job.execute_in_process(
        run_config=request.run_config,
        instance=instance,
        resources={
            "trace_store": TraceStoreResource(database_url=url.libpq(), use_postgres_traces="true")
        },
    )


@pytest.mark.slow
def test_the_schedule_retires_ahead_of_aos_retention_which_then_raises_no_alarm(
    deployed: DatabaseUrl,
    signing: CheckpointEnv,
    monkeypatch: pytest.MonkeyPatch,
    dagster_instance: DagsterInstance,
) -> None:
    monkeypatch.setenv("RUN_PROOF_AOS_RETENTION_DAYS", str(RETENTION_DAYS))
    monkeypatch.delenv("RUN_PROOF_AOS_RETENTION_LEAD_HOURS", raising=False)
    # An adopted legacy run of the window (created 2025) is retired like a native one.
    adopted = _cli(deployed, monkeypatch, "adopt", "--run-id", "run-trace_old_0")
    assert adopted.exit_code == 0 and "1 adopted" in adopted.stdout, adopted.output
    assert _format_traces(deployed) == {
        "trace_run-old-sealed": 2,
        "trace_run-old-open": 2,
        "trace_run-recent": 2,
        "trace_old_0": 2,
    }
    # Without the retirement AOS's job fails whole on the first format run of its window.
    with connect(deployed) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        cleanup_old_traces(conn, RETENTION_DAYS)

    result = _run_the_schedule(deployed, dagster_instance)

    assert result.success
    assert result.output_for_node(RETIRE_OP) == 3
    retired = {t[2] for t in _tombstones(deployed)}
    assert retired == {"trace_run-old-sealed", "trace_run-old-open", "trace_old_0"}
    again = _run_the_schedule(deployed, dagster_instance)
    assert again.success and again.output_for_node(RETIRE_OP) == 0
    assert {t[2] for t in _tombstones(deployed)} == retired
    make_checkpoint(deployed)

    with connect(deployed) as conn:
        removed = cleanup_old_traces(conn, RETENTION_DAYS)

    # Every row of the window went (legacy ones too), into AOS's archive; the recent run stays.
    assert removed >= 3
    assert _format_traces(deployed) == {"trace_run-recent": 2}
    archived = {
        row[0]
        for row in psycopg.connect(deployed.libpq())
        .execute("SELECT trace_id FROM aos_traces_archive")
        .fetchall()
    }
    assert retired <= archived
    assert audit(deployed).problems == []
    verify = _cli(deployed, monkeypatch, "checkpoint", "verify")
    assert verify.exit_code == 0, verify.output
    assert prove(deployed, "acme", "run-recent").integrity.verification_status == "VERIFIED"


@pytest.mark.slow
def test_a_removal_without_a_tombstone_is_still_an_alarm(
    deployed: DatabaseUrl, signing: CheckpointEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_checkpoint(deployed)
    # The guard refuses AOS's retention of an unretired format run ...
    with connect(deployed) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        cleanup_old_traces(conn, RETENTION_DAYS)
    assert "trace_run-old-sealed" in _format_traces(deployed)
    # ... and an owner who deletes it past the guards leaves an alarm.
    tamper(deployed, ("DELETE FROM aos_traces WHERE trace_id = 'trace_run-old-sealed'", ()))

    problems = audit(deployed).problems

    assert any("run 'run-old-sealed'" in p for p in problems), problems
    verify = _cli(deployed, monkeypatch, "checkpoint", "verify")
    assert verify.exit_code == 1, verify.output


@pytest.mark.slow
def test_a_run_no_tombstone_can_name_is_refused_and_the_batch_goes_on(
    deployed: DatabaseUrl, signing: CheckpointEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Inserted after the upgrade with a creation time format v2 cannot represent: stored, no
    # genesis (docs/hash-chain-v2.md "Never raises"), so no hash for a tombstone.
    with connect(deployed) as conn:
        conn.execute(
            "INSERT INTO aos_traces (trace_id, run_id, correlation_id, tenant_id, root_hash,"
            " plan, trace, schema_version, status, started_at, created_at) VALUES"
            " ('trace_run-neg', 'run-neg', 'c', 'acme', 'pending', '[]', '{\"steps\": []}',"
            " '1.0', 'running', now(), '-infinity')"
        )
    assert one(deployed, "SELECT chain_format FROM aos_traces WHERE run_id = 'run-neg'") == 2
    cut = (datetime.now(UTC) - timedelta(days=RETENTION_DAYS)).isoformat()

    ran = _cli(deployed, monkeypatch, "retire", "--created-before", cut, "--reason", "retention")

    assert ran.exit_code == 4, ran.output
    assert "refused: tenant 'acme', run 'run-neg' (trace 'trace_run-neg'): it has no hash" in (
        ran.stdout
    )
    assert "2 retired, 0 retired before, 1 refused" in ran.stdout
    assert {t[2] for t in _tombstones(deployed)} == {"trace_run-old-sealed", "trace_run-old-open"}
