"""`run-proof adopt`: finished legacy traces get format-v2 hashes from their rows as they stand
(docs/existing-aos-database.md, "What adoption does"), an 'adoption' ledger entry naming the
seal, and VERIFIED proofs that say since when; no AOS column changes, root_hash included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from run_proof_pipeline.adoption.kinds import TraceKindCounts, count_trace_kinds
from run_proof_pipeline.cli.main import app
from run_proof_pipeline.coordinator.run_proof import LEGACY_REASON
from run_proof_pipeline.ledger.queries import ledger_trace_mismatches
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.migrate import upgrade
from run_proof_pipeline_tests.support.aos_fixtures import (
    AOS_TRACE_COLUMNS,
    LEGACY_BASE,
    aos_complete_trace,
    aos_insert_step,
    on,
    sql,
    table_contents,
)
from run_proof_pipeline_tests.support.plan_runs import (
    PLAN_STEPS,
    plan_config,
    run_plan,
    stop_of,
    succeeded_steps,
    trace_store,
)
from run_proof_pipeline_tests.support.stores import owner_sql, prove, record_run

# Of the fixture's legacy traces: finished, one trace per run id across all tenants.
ADOPTABLE = {("acme", "run-a"), ("acme", "run-empty"), ("globex", "run-ü")}


def adopt(url: DatabaseUrl, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    monkeypatch.setenv("DATABASE_URL", url.libpq())
    result = CliRunner().invoke(app, ["adopt", *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def upgraded(aos_store: DatabaseUrl) -> DatabaseUrl:
    upgrade(aos_store)
    return aos_store


def test_adopt_verifies_finished_legacy_traces_and_says_since_when(
    upgraded: DatabaseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {r["trace_id"]: r for r in table_contents(upgraded, "aos_traces", AOS_TRACE_COLUMNS)}
    steps_before = sql(upgraded, "SELECT count(*) FROM aos_trace_steps")
    ahead = datetime.now(UTC)

    output = adopt(upgraded, monkeypatch, "--batch-size", "3")

    assert "batch 1: 3 traces examined" in output  # a line per batch when not on a TTY
    assert "batch 3: 2 traces examined" in output
    assert "3 adopted, 5 skipped, 0 adopted before" in output
    assert "(trace 'tr-live'): it is still running" in output
    assert (
        "run 'run-dup' has 2 traces and a format run has one; "
        "archive or delete the others (they are legacy), then adopt"
    ) in output
    for tenant, run_id in ADOPTABLE:
        result = prove(upgraded, tenant, run_id)
        integrity = result.integrity
        assert integrity.verification_status == "VERIFIED", integrity.failure_reason
        assert integrity.model == "HASH_CHAIN"
        assert integrity.chain_length == result.steps_read
        assert integrity.adopted_at is not None and integrity.adopted_at >= ahead
    # Format v2 changes no AOS column, root_hash included (covered by the header as
    # aos_root_hash, never written to that column); only the adopted traces have a format.
    after = {r["trace_id"]: r for r in table_contents(upgraded, "aos_traces", AOS_TRACE_COLUMNS)}
    assert after == before
    ours = {
        trace_id: rest
        for trace_id, *rest in sql(
            upgraded,
            "SELECT trace_id, chain_format, aos_root_hash, seal_hash IS NOT NULL FROM aos_traces",
        )
    }
    for trace_id in before:
        adopted = trace_id in {"tr-a", "tr-empty", "tr-unicode"}
        assert ours[trace_id] == ([2, None, True] if adopted else [None, None, False])
    assert sql(upgraded, "SELECT count(*) FROM aos_trace_steps") == steps_before
    # Every adoption is in the ledger naming the format's seal, and the ledger agrees with
    # the traces.
    entries = sql(
        upgraded,
        "SELECT l.tenant_id, l.run_id, l.root_hash = t.seal_hash FROM run_proof_ledger l"
        " JOIN aos_traces t USING (trace_id) WHERE l.kind = 'adoption'",
    )
    assert {(t, r) for t, r, _ in entries} == ADOPTABLE
    assert all(same for _, _, same in entries)
    assert on(upgraded, ledger_trace_mismatches) == []
    assert on(upgraded, count_trace_kinds) == TraceKindCounts(
        legacy=5, legacy_running=1, adopted=3, native=0, retired=0, retired_still_present=0
    )


def test_adoption_is_idempotent(upgraded: DatabaseUrl, monkeypatch: pytest.MonkeyPatch) -> None:
    adopt(upgraded, monkeypatch)
    hashes = sql(upgraded, "SELECT trace_id, seal_hash, adopted_at FROM aos_traces ORDER BY 1")

    output = adopt(upgraded, monkeypatch)

    assert "0 adopted, 5 skipped, 3 adopted before" in output
    assert sql(upgraded, "SELECT trace_id, seal_hash, adopted_at FROM aos_traces ORDER BY 1") == (
        hashes
    )
    assert sql(upgraded, "SELECT count(*) FROM run_proof_ledger WHERE kind = 'adoption'") == [(3,)]


def test_adopt_filters_by_tenant_run_and_start(
    upgraded: DatabaseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "1 adopted, 1 skipped" in adopt(upgraded, monkeypatch, "--tenant-id", "globex")
    before_empty = (LEGACY_BASE + timedelta(hours=5)).isoformat()
    output = adopt(upgraded, monkeypatch, "--tenant-id", "acme", "--started-before", before_empty)
    assert "1 adopted, 2 skipped, 0 adopted before" in output
    assert "run 'run-a'" in output
    assert "1 adopted, 0 skipped, 0 adopted before" in adopt(
        upgraded, monkeypatch, "--run-id", "run-empty"
    )
    adopted = sql(upgraded, "SELECT run_id FROM aos_traces WHERE adopted_at IS NOT NULL")
    assert sorted(adopted) == [("run-a",), ("run-empty",), ("run-ü",)]


def test_started_before_without_offset_is_a_usage_error(
    upgraded: DatabaseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", upgraded.libpq())
    result = CliRunner().invoke(app, ["adopt", "--started-before", "2025-11-03T10:00:00"])
    assert result.exit_code == 2
    assert "has no UTC offset" in result.output
    assert sql(upgraded, "SELECT count(*) FROM aos_traces WHERE adopted_at IS NOT NULL") == [(0,)]


def test_a_running_trace_is_adopted_once_it_has_finished(
    upgraded: DatabaseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "0 adopted, 1 skipped" in adopt(upgraded, monkeypatch, "--run-id", "run-live")
    assert prove(upgraded, "acme", "run-live").integrity.verification_status == "UNSUPPORTED"
    with psycopg.connect(upgraded.libpq()) as conn:
        aos_insert_step(conn, trace_id="tr-live", step_index=2, at=LEGACY_BASE)
        aos_complete_trace(conn, "tr-live", LEGACY_BASE + timedelta(hours=8))

    assert "1 adopted, 0 skipped" in adopt(upgraded, monkeypatch, "--run-id", "run-live")

    result = prove(upgraded, "acme", "run-live")
    assert result.integrity.verification_status == "VERIFIED"
    assert result.integrity.chain_length == 3


def test_an_adopted_trace_is_append_only_and_tampering_fails(
    upgraded: DatabaseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    adopt(upgraded, monkeypatch, "--run-id", "run-a")
    with (
        psycopg.connect(upgraded.libpq()) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        # AOS finishing it again, as it would a legacy trace, is refused now.
        aos_complete_trace(conn, "tr-a", LEGACY_BASE)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        sql(upgraded, "DELETE FROM aos_traces WHERE trace_id = 'tr-a'")

    touched = owner_sql(
        upgraded,
        "UPDATE aos_trace_steps SET outcome_code = '500' WHERE trace_id = %s AND step_index = 1",
        ("tr-a",),
        table="aos_trace_steps",
    )

    assert touched == 1
    failed = prove(upgraded, "acme", "run-a").integrity
    assert failed.verification_status == "FAILED"
    assert failed.failure is not None and failed.failure.step_index == 1
    assert failed.adopted_at is not None


def test_adoption_may_only_add_hashes_and_must_keep_aos_root_hash(upgraded: DatabaseUrl) -> None:
    fake = "0" * 64
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="aos_root_hash"):
        sql(
            upgraded,
            "UPDATE aos_traces SET genesis_hash = %s, root_hash = %s, chain_length = 3"
            " WHERE trace_id = 'tr-a'",
            (fake, fake),
        )
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only add"):
        sql(
            upgraded,
            "UPDATE aos_traces SET genesis_hash = %s, aos_root_hash = root_hash,"
            " status = 'failed' WHERE trace_id = 'tr-a'",
            (fake,),
        )
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="native"):
        record_run_with_adopted_at(upgraded)


def record_run_with_adopted_at(url: DatabaseUrl) -> None:
    sql(
        url,
        "INSERT INTO aos_traces (trace_id, run_id, tenant_id, status, genesis_hash, adopted_at)"
        " VALUES ('tr-forged', 'run-forged', 'acme', 'running', %s, now())",
        ("1" * 64,),
    )


def test_native_and_adopted_kinds_are_counted_side_by_side(
    upgraded: DatabaseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_run(upgraded, "acme", "run-native-1", steps=2, chain_format=1)
    record_run(upgraded, "acme", "run-native-2", steps=1, seal=False, chain_format=1)
    adopt(upgraded, monkeypatch, "--run-id", "run-a")

    counts = on(upgraded, count_trace_kinds)

    assert counts == TraceKindCounts(
        legacy=7, legacy_running=1, adopted=1, native=2, retired=0, retired_still_present=0
    )
    assert counts.summary() == (
        "2 native, 1 adopted, 7 legacy (1 running), 0 retired (0 not yet removed)"
    )


@pytest.mark.slow
def test_seed_plan_stops_at_step_4_on_legacy_and_passes_once_adopted(
    upgraded: DatabaseUrl,
    monkeypatch: pytest.MonkeyPatch,
    dagster_instance: Any,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("RUN_PROOF_REPORT_DIR", str(tmp_path))
    config = plan_config(tmp_path, run_id="run-a", tenant_id="acme")
    legacy = run_plan(dagster_instance, trace_store(upgraded), config)
    assert not legacy.success
    step, data = stop_of(dagster_instance, legacy.run_id)
    assert step == "step_4_integrity_expectations"
    assert LEGACY_REASON in str(data)

    adopt(upgraded, monkeypatch, "--run-id", "run-a")
    adopted = run_plan(dagster_instance, trace_store(upgraded), config)

    assert adopted.success
    assert succeeded_steps(dagster_instance, adopted.run_id) == PLAN_STEPS
    proof = adopted.output_for_node("step_3_coordinator_proof")
    assert proof.proof.integrity.verification_status == "VERIFIED"
    assert proof.proof.integrity.adopted_at is not None
    report = Path(adopted.output_for_node("output_report")).read_text(encoding="utf-8")
    assert "adopted at " in report and "not since the run" in report


def test_a_number_format_v1_refused_is_adopted_and_covered_exactly(
    upgraded: DatabaseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    # AOS (or anyone) wrote a number that is not the double it reads as (docs/stored-numbers.md).
    # Format v1 refused it (23 significant digits); format v2 hashes it exactly
    # (docs/hash-chain-v2.md "Primitives": no number is refused).
    touched = owner_sql(
        upgraded,
        "UPDATE aos_trace_steps SET params = jsonb_set(params, '{attempt}',"
        " '1.0000000000000000000001') WHERE trace_id = 'tr-a' AND step_index = 1",
        table="aos_trace_steps",
    )
    assert touched == 1

    output = " ".join(adopt(upgraded, monkeypatch, "--run-id", "run-a").split())

    assert "1 adopted, 0 skipped, 0 adopted before" in output
    assert prove(upgraded, "acme", "run-a").integrity.verification_status == "VERIFIED"
    # 1 is the double 1.0000000000000000000001 reads as: v1 would hash both alike, v2 not.
    touched = owner_sql(
        upgraded,
        "UPDATE aos_trace_steps SET params = jsonb_set(params, '{attempt}', '1')"
        " WHERE trace_id = 'tr-a' AND step_index = 1",
        table="aos_trace_steps",
    )
    assert touched == 1
    failed = prove(upgraded, "acme", "run-a").integrity
    assert failed.verification_status == "FAILED"
    assert failed.failure is not None and failed.failure.step_index == 1


def test_a_legacy_trace_with_a_refused_value_is_skipped_naming_trace_step_and_value(
    upgraded: DatabaseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A NaN cost: a double column format v2 writes ES6(d), which has no NaN.
    touched = owner_sql(
        upgraded,
        "UPDATE aos_trace_steps SET cost_cents = 'NaN' WHERE trace_id = 'tr-a' AND step_index = 1",
        table="aos_trace_steps",
    )
    assert touched == 1

    output = " ".join(adopt(upgraded, monkeypatch, "--run-id", "run-a").split())

    assert "0 adopted, 1 skipped" in output
    assert "(trace 'tr-a')" in output
    assert "step 1: stored value is not representable in format v2" in output
    assert "cost_cents: nan is not a finite number" in output
    assert sql(upgraded, "SELECT genesis_hash FROM aos_traces WHERE trace_id = 'tr-a'") == [(None,)]
    assert prove(upgraded, "acme", "run-a").integrity.verification_status == "UNSUPPORTED"


def test_verify_says_on_its_plain_output_that_a_trace_was_adopted_and_since_when(
    upgraded: DatabaseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    adopt(upgraded, monkeypatch, "--run-id", "run-a")
    adopted_at = prove(upgraded, "acme", "run-a").integrity.adopted_at
    assert adopted_at is not None

    result = CliRunner().invoke(app, ["verify", "--tenant-id", "acme", "--run-id", "run-a"])

    assert result.exit_code == 0, result.output
    assert "verification_status: VERIFIED" in result.output.splitlines()
    assert (
        f"adoption: adopted at {adopted_at.isoformat()}: proves no change since adoption, "
        "not since the run"
    ) in result.output.splitlines()
