"""Issue 11, class 4: a sealed, checkpointed run turned "legacy" by its owner.

The owner clears `genesis_hash`, `chain_format` and `seal_hash` (every trigger off: since
migration 0006 `chain_format` marks a format trace too, so clearing `genesis_hash` alone no
longer lifts the guards); the run's steps are then legacy rows that any client may UPDATE or
DELETE with every trigger on. A ledger entry whose trace is no longer
format v1 is an alarm, FAILED and naming the entry, in `checkpoint verify`, `sweep` and
`verify`; a trace that was legacy all along (no ledger entry) stays UNSUPPORTED.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from run_proof_pipeline.cli.main import app
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.migrate import upgrade
from run_proof_pipeline.sweep import SweepOptions, run_sweep
from run_proof_pipeline_tests.support.ledger_fixtures import CheckpointEnv
from run_proof_pipeline_tests.support.stores import BASE, prove, record_run
from run_proof_pipeline_tests.test_ledger_support import (
    audit,
    ledger_entries,
    make_checkpoint,
    one,
    tamper,
)

TENANT = "tenant-acme"
RUN = "run-07-0003"
TRACE = f"trace-{RUN}"


def _cli(url: DatabaseUrl, monkeypatch: pytest.MonkeyPatch, *args: str):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", url.libpq())
    monkeypatch.delenv("USE_POSTGRES_TRACES", raising=False)
    return CliRunner().invoke(app, list(args))


def _sealed_and_checkpointed(url: DatabaseUrl) -> int:
    """A sealed run, a neighbour, and a signed checkpoint covering both; the run's seq."""
    record_run(url, TENANT, RUN, steps=4, chain_format=1)
    record_run(
        url, TENANT, "run-neighbour", steps=2, started_at=BASE.replace(hour=11), chain_format=1
    )
    make_checkpoint(url)
    [seq] = [e.seq for e in ledger_entries(url) if e.run_id == RUN]
    return seq


def _turn_legacy(url: DatabaseUrl) -> None:
    """As the owner: the format-v1 run's columns of a format trace are cleared, so that it
    looks like a legacy row (genesis_hash NULL, chain_format NULL, no seal of a format)."""
    touched = tamper(
        url,
        (
            "UPDATE aos_traces SET genesis_hash = NULL, chain_format = NULL, seal_hash = NULL"
            " WHERE trace_id = %s",
            (TRACE,),
        ),
    )
    assert touched == [1]


def _client_sql(url: DatabaseUrl, statement: str, params: tuple[object, ...]) -> int:
    """As any client, every trigger on."""
    with psycopg.connect(url.libpq()) as conn:
        return conn.execute(statement, params).rowcount


def test_turned_legacy_run_is_an_alarm_in_checkpoint_verify_sweep_and_verify(
    store: DatabaseUrl, checkpoint_env: CheckpointEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    seq = _sealed_and_checkpointed(store)
    before = _cli(store, monkeypatch, "checkpoint", "verify")
    assert before.exit_code == 0, before.output
    assert "no step row is re-hashed" in before.output
    assert "the ledger is attested; the rows were not re-hashed" in before.output

    _turn_legacy(store)
    # What the attack buys: the run's steps now take an UPDATE and a DELETE from any client.
    assert (
        _client_sql(
            store,
            "UPDATE aos_trace_steps SET skill_name = 'evil' WHERE trace_id = %s AND step_index = 1",
            (TRACE,),
        )
        == 1
    )
    assert (
        _client_sql(
            store, "DELETE FROM aos_trace_steps WHERE trace_id = %s AND step_index = 3", (TRACE,)
        )
        == 1
    )

    # checkpoint verify: FAILED, naming the ledger entry and why.
    checked = _cli(store, monkeypatch, "checkpoint", "verify")
    assert checked.exit_code == 1, checked.output
    inconsistent = [x for x in checked.output.splitlines() if x.startswith("INCONSISTENT")]
    assert len(inconsistent) == 1, checked.output
    assert inconsistent[0].startswith(
        f"INCONSISTENT: ledger entry {seq} (tenant {TENANT!r}, run {RUN!r}): "
        f"the recorded trace {TRACE!r} is no longer format v1 or v2 (its chain_format was "
        "cleared): its steps are now legacy rows any client may change or delete"
    )
    assert "every recorded run" not in checked.output
    assert "no step row is re-hashed" in checked.output

    # sweep --full: the run is FAILED at "ledger", naming the entry; its neighbour verifies.
    swept = _cli(store, monkeypatch, "sweep", "--full", "--json", "--workers", "1")
    assert swept.exit_code == 1, swept.output
    report = json.loads(swept.stdout.splitlines()[-1])
    assert (report["runs"], report["verified"], report["failures"]) == (2, 1, 1)
    [failed] = report["failed_runs"]
    assert (failed["tenant_id"], failed["run_id"], failed["status"], failed["first_bad"]) == (
        TENANT,
        RUN,
        "FAILED",
        "ledger",
    )
    assert f"ledger entry {seq} (seal of tenant {TENANT!r}" in failed["reason"]
    assert "no longer format v1" in failed["reason"]
    # Incremental sweeps say so too, every time, and so does the sweep with several workers.
    again = run_sweep(store, SweepOptions(full=False, workers=2))
    assert [(f.run_id, f.first_bad) for f in again.failed] == [(RUN, "ledger")]

    # verify: FAILED (exit 1), not UNSUPPORTED, naming the ledger entry.
    verified = _cli(store, monkeypatch, "verify", "--tenant-id", TENANT, "--run-id", RUN)
    assert verified.exit_code == 1, verified.output
    assert "verification_status: FAILED" in verified.output
    integrity = prove(store, TENANT, RUN).integrity
    assert integrity.verification_status == "FAILED"
    assert integrity.failure is not None and integrity.failure.location == "ledger"
    assert integrity.failure.rule == 5
    assert f"ledger entry {seq} (seal of tenant {TENANT!r}, run {RUN!r}, trace {TRACE!r}" in (
        integrity.failure_reason or ""
    )


def test_turned_legacy_run_with_its_seal_columns_cleared_too_is_still_named(
    store: DatabaseUrl, checkpoint_env: CheckpointEnv
) -> None:
    seq = _sealed_and_checkpointed(store)
    _turn_legacy(store)
    # Once legacy, the trace guard lets any client clear the seal columns as well.
    assert (
        _client_sql(
            store,
            "UPDATE aos_traces SET root_hash = NULL, chain_length = NULL WHERE trace_id = %s",
            (TRACE,),
        )
        == 1
    )

    problems = audit(store).problems
    assert len(problems) == 1 and problems[0].startswith(f"ledger entry {seq} ")
    assert "no longer format v1" in problems[0]
    assert prove(store, TENANT, RUN).integrity.verification_status == "FAILED"
    swept = run_sweep(store, SweepOptions(full=True, tenant_id=TENANT))
    assert [(f.run_id, f.status) for f in swept.failed] == [(RUN, "FAILED")]
    # Another tenant's sweep is not this run's.
    assert run_sweep(store, SweepOptions(full=True, tenant_id="tenant-other")).ok


def test_a_sealed_run_replaced_by_a_legacy_trace_is_failed_naming_the_entry(
    store: DatabaseUrl, checkpoint_env: CheckpointEnv
) -> None:
    seq = _sealed_and_checkpointed(store)
    tamper(
        store,
        ("DELETE FROM aos_trace_steps WHERE trace_id = %s", (TRACE,)),
        ("DELETE FROM aos_traces WHERE trace_id = %s", (TRACE,)),
    )
    forged = (
        "INSERT INTO aos_traces (trace_id, run_id, tenant_id, status, started_at)"
        " VALUES ('forged-legacy', %s, %s, 'succeeded', '2026-02-10')"
    )
    # Since 0006 a client's plain INSERT is chained in format v2, and a format run id is
    # recorded once: the run's id cannot be taken again by any writer.
    with pytest.raises(psycopg.errors.UniqueViolation, match="a run id is recorded once"):
        _client_sql(store, forged, (RUN, TENANT))
    assert one(store, "SELECT count(*) FROM aos_traces WHERE run_id = %s", (RUN,)) == 0
    # The owner can still forge a legacy trace with the run's id (every trigger off).
    assert tamper(store, (forged, (RUN, TENANT))) == [1]
    assert (
        one(
            store,
            "SELECT genesis_hash IS NULL AND chain_format IS NULL FROM aos_traces"
            " WHERE trace_id = 'forged-legacy'",
        )
        is True
    )

    problems = audit(store).problems
    assert len(problems) == 1, problems
    assert problems[0].startswith(
        f"ledger entry {seq} (tenant {TENANT!r}, run {RUN!r}): the recorded trace {TRACE!r} is "
        "gone from aos_traces and the run id is now held by trace 'forged-legacy' (legacy"
    )
    integrity = prove(store, TENANT, RUN).integrity
    assert integrity.verification_status == "FAILED"
    assert "now held by legacy trace 'forged-legacy'" in (integrity.failure_reason or "")


def test_a_trace_legacy_all_along_stays_unsupported_and_raises_no_alarm(
    new_database: Any, checkpoint_env: CheckpointEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # AOS wrote the trace before the store knew format v2 (at revision 0005, a plain INSERT):
    # it stays legacy after the upgrade (since 0006 the same INSERT is chained instead).
    store = DatabaseUrl.parse(new_database("store"))
    upgrade(store, "0005")
    assert (
        _client_sql(
            store,
            "INSERT INTO aos_traces (trace_id, run_id, tenant_id, status, started_at)"
            " VALUES ('aos-legacy', 'run-aos', %s, 'succeeded', '2026-02-08')",
            (TENANT,),
        )
        == 1
    )
    upgrade(store)
    _sealed_and_checkpointed(store)

    integrity = prove(store, TENANT, "run-aos").integrity
    assert integrity.verification_status == "UNSUPPORTED"
    assert "legacy trace" in (integrity.failure_reason or "")
    assert audit(store).ok
    assert run_sweep(store, SweepOptions(full=True)).ok
    result = _cli(store, monkeypatch, "checkpoint", "verify")
    assert result.exit_code == 0, result.output
    assert one(store, "SELECT count(*) FROM aos_traces WHERE genesis_hash IS NULL") == 1
