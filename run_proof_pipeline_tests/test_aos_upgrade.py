"""`run-proof db upgrade` on tables AOS created: nothing lost or changed, AOS keeps writing,
the seed's SQL runs verbatim, and `--check` changes nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from run_proof_pipeline.cli.main import app
from run_proof_pipeline.coordinator.run_proof import LEGACY_REASON
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.migrate import current_revision, head_revision, upgrade
from run_proof_pipeline.store.recorder import DuplicateRun
from run_proof_pipeline_tests.support.aos_fixtures import (
    LEGACY_BASE,
    LEGACY_STEP_COUNT,
    LEGACY_TRACES,
    all_aos_contents,
    aos_archive_trace,
    aos_complete_trace,
    aos_hash,
    aos_insert_step,
    aos_insert_trace,
    sql,
)
from run_proof_pipeline_tests.support.stores import prove, record_run

SCHEMA_SQL = """
SELECT coalesce(json_agg(x ORDER BY x), '[]') FROM (
    SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' '
           || is_nullable || ' ' || coalesce(column_default, '') AS x
    FROM information_schema.columns WHERE table_schema = 'public'
    UNION ALL SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
    UNION ALL SELECT 'trigger ' || tgname || ' ' || tgenabled::text FROM pg_trigger
              WHERE NOT tgisinternal
    UNION ALL SELECT 'function ' || proname FROM pg_proc
              WHERE pronamespace = 'public'::regnamespace
    UNION ALL SELECT 'relation ' || relname FROM pg_class
              WHERE relnamespace = 'public'::regnamespace
) s
"""


def schema_of(url: DatabaseUrl) -> list[str]:
    with psycopg.connect(url.libpq()) as conn:
        return conn.execute(SCHEMA_SQL).fetchone()[0]  # type: ignore[index]


def invoke(url: DatabaseUrl, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    monkeypatch.setenv("DATABASE_URL", url.libpq())
    return CliRunner().invoke(app, list(args))


def test_upgrade_keeps_every_row_and_value(aos_store: DatabaseUrl) -> None:
    before = all_aos_contents(aos_store)
    assert len(before["aos_traces"]) == len(LEGACY_TRACES)
    assert len(before["aos_trace_steps"]) == LEGACY_STEP_COUNT

    upgrade(aos_store)

    assert all_aos_contents(aos_store) == before
    assert current_revision(aos_store) == head_revision()
    # Legacy rows stay legacy: no v1 hash, no seal sequence, AOS's own root hash untouched.
    assert sql(
        aos_store,
        "SELECT count(*) FROM aos_traces WHERE genesis_hash IS NULL AND seal_seq IS NULL"
        " AND root_hash IS NOT NULL AND aos_root_hash IS NULL",
    ) == [(len(LEGACY_TRACES),)]
    # Steps carry their trace's run and tenant, and nothing else of theirs changed.
    mismatched = sql(
        aos_store,
        "SELECT count(*) FROM aos_trace_steps s JOIN aos_traces t USING (trace_id)"
        " WHERE s.run_id IS DISTINCT FROM t.run_id OR s.tenant_id IS DISTINCT FROM t.tenant_id",
    )
    assert mismatched == [(0,)]


def test_upgrade_check_prints_the_plan_and_changes_nothing(
    aos_store: DatabaseUrl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schema = schema_of(aos_store)
    contents = all_aos_contents(aos_store)

    result = invoke(aos_store, monkeypatch, "db", "upgrade", "--check")

    assert result.exit_code == 0, result.output
    out = result.output
    assert "found existing AOS tables aos_traces (8 rows)" in out
    assert "aos_traces: add column genesis_hash text" in out
    assert "aos_traces.root_hash: drop NOT NULL" in out
    assert "aos_trace_steps.params: drop NOT NULL" in out
    assert f"fill run_id and tenant_id of {LEGACY_STEP_COUNT} existing steps" in out
    assert "aos_traces_archive: add column genesis_hash text" in out
    assert "create index aos_traces_v1_run_id_key" in out
    assert "nothing was changed (--check)" in out
    assert aos_store.url.password not in out
    assert schema_of(aos_store) == schema
    assert all_aos_contents(aos_store) == contents
    assert current_revision(aos_store) is None

    upgrade(aos_store)
    again = invoke(aos_store, monkeypatch, "db", "upgrade", "--check")
    assert again.exit_code == 0, again.output
    assert f"nothing to do: the trace store is at revision {head_revision()}" in again.output


def test_aos_keeps_writing_after_the_upgrade(aos_store: DatabaseUrl) -> None:
    upgrade(aos_store)
    started = LEGACY_BASE + timedelta(days=1)
    with psycopg.connect(aos_store.libpq()) as conn:
        aos_insert_trace(
            conn, trace_id="tr-new", run_id="run-new", tenant_id="acme", started_at=started
        )
        for index in range(2):
            aos_insert_step(conn, trace_id="tr-new", step_index=index, at=started)
        # A step AOS appends to the trace that was running before the upgrade.
        aos_insert_step(conn, trace_id="tr-live", step_index=2, at=started)
        # A legacy trace is AOS's own row: finished as AOS always did, its root hash included.
        assert aos_complete_trace(conn, "tr-live", started + timedelta(minutes=1)) == 1
        # Retention: the row goes to the archive (same columns), its steps by the cascade.
        assert aos_archive_trace(conn, "tr-a") == 1
    # A trace inserted after the upgrade is format v2 (docs/hash-chain-v2.md): its header
    # covers root_hash as the writer inserted it, so a completion that rewrites it is refused.
    with (
        psycopg.connect(aos_store.libpq()) as conn,
        pytest.raises(
            psycopg.errors.InsufficientPrivilege,
            match=r"trace tr-new \(format v2\): only status, completed_at and metadata may change",
        ),
    ):
        aos_complete_trace(conn, "tr-new", started + timedelta(minutes=2))
    # AOS's complete_trace changes status and completed_at (and metadata): the seal.
    assert sql(
        aos_store,
        "UPDATE aos_traces SET status = 'completed', completed_at = %s"
        " WHERE trace_id = 'tr-new' RETURNING trace_id",
        (started + timedelta(minutes=2),),
    ) == [("tr-new",)]

    steps = sql(
        aos_store,
        "SELECT trace_id, run_id, tenant_id FROM aos_trace_steps"
        " WHERE trace_id IN ('tr-new', 'tr-live') ORDER BY trace_id, step_index",
    )
    assert steps == [("tr-live", "run-live", "acme")] * 3 + [("tr-new", "run-new", "acme")] * 2
    assert sql(aos_store, "SELECT status FROM aos_traces WHERE trace_id = 'tr-live'") == [
        ("completed",)
    ]
    assert sql(aos_store, "SELECT count(*) FROM aos_trace_steps WHERE trace_id = 'tr-a'") == [(0,)]
    assert sql(aos_store, "SELECT run_id FROM aos_traces_archive") == [("run-a",)]
    # AOS's writes never give a legacy trace a format, nor make anything a format-v1 seal.
    formats = sql(
        aos_store,
        "SELECT trace_id, chain_format, genesis_hash IS NOT NULL, seal_hash IS NOT NULL,"
        " chain_length, root_hash FROM aos_traces WHERE chain_format IS NOT NULL"
        " OR genesis_hash IS NOT NULL OR seal_hash IS NOT NULL",
    )
    assert formats == [("tr-new", 2, True, True, 2, aos_hash("tr-new", "running"))]
    proof = prove(aos_store, "acme", "run-new").integrity
    assert proof.verification_status == "VERIFIED", proof.failure_reason
    assert proof.chain_length == 2
    assert prove(aos_store, "acme", "run-live").integrity.verification_status == "UNSUPPORTED"


def test_seed_step_1_and_step_2_sql_run_verbatim(aos_store: DatabaseUrl) -> None:
    upgrade(aos_store)
    with psycopg.connect(aos_store.libpq()) as conn:
        aos_insert_trace(
            conn,
            trace_id="tr-latest",
            run_id="run-latest",
            tenant_id="acme",
            started_at=LEGACY_BASE + timedelta(days=2),
        )
        for index in range(3):
            aos_insert_step(conn, trace_id="tr-latest", step_index=index, at=LEGACY_BASE)

    latest = sql(
        aos_store,
        "SELECT run_id, tenant_id, started_at, status\n"
        "FROM aos_traces\n"
        "ORDER BY started_at DESC\n"
        "LIMIT 1;",
    )
    assert [row[:2] + row[3:] for row in latest] == [("run-latest", "acme", "running")]
    step_count = sql(
        aos_store,
        "SELECT COUNT(*) AS step_count\nFROM aos_trace_steps\nWHERE run_id = 'run-latest';",
    )
    assert step_count == [(3,)]
    # A legacy run id shared by two traces counts the steps of both, as it did in AOS.
    assert sql(aos_store, "SELECT COUNT(*) FROM aos_trace_steps WHERE run_id = 'run-dup';") == [
        (3,)
    ]


def test_native_runs_work_beside_legacy_ones(aos_store: DatabaseUrl) -> None:
    upgrade(aos_store)

    record_run(aos_store, "acme", "run-native", steps=3)

    result = prove(aos_store, "acme", "run-native")
    assert result.integrity.verification_status == "VERIFIED"
    assert result.integrity.adopted_at is None
    native = sql(
        aos_store,
        "SELECT correlation_id, schema_version, trace, plan_hash FROM aos_traces"
        " WHERE run_id = 'run-native'",
    )
    assert native == [("run-native", "hash-chain-v1", {}, None)]
    # One format-v1 trace per run, and none for a run AOS already wrote.
    with pytest.raises(DuplicateRun):
        record_run(aos_store, "acme", "run-native", steps=1)
    with pytest.raises(DuplicateRun):
        record_run(aos_store, "acme", "run-a", steps=1)
    assert sql(aos_store, "SELECT count(*) FROM aos_traces WHERE run_id = 'run-dup'") == [(2,)]


def test_format_v1_rows_stay_append_only_on_an_upgraded_store(
    aos_store: DatabaseUrl,
) -> None:
    upgrade(aos_store)
    record_run(aos_store, "acme", "run-native", steps=2)
    attempts = [
        "UPDATE aos_traces SET status = 'failed' WHERE run_id = 'run-native'",
        "UPDATE aos_traces SET genesis_hash = NULL WHERE run_id = 'run-native'",
        "DELETE FROM aos_traces WHERE run_id = 'run-native'",
        "UPDATE aos_trace_steps SET skill_name = 'evil' WHERE run_id = 'run-native'",
        "DELETE FROM aos_trace_steps WHERE run_id = 'run-native'",
        # A legacy step may not be moved into a format-v1 trace.
        "UPDATE aos_trace_steps SET trace_id = 'trace-run-native', step_index = 9"
        " WHERE trace_id = 'tr-a' AND step_index = 0",
        "TRUNCATE aos_traces CASCADE",
        "TRUNCATE aos_trace_steps",
    ]
    for statement in attempts:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            sql(aos_store, statement)

    assert prove(aos_store, "acme", "run-native").integrity.verification_status == "VERIFIED"
    assert sql(aos_store, "SELECT count(*) FROM aos_trace_steps") == [(LEGACY_STEP_COUNT + 2,)]


def test_legacy_trace_is_unsupported_even_with_an_aos_root_hash(
    aos_store: DatabaseUrl,
) -> None:
    upgrade(aos_store)
    root = sql(aos_store, "SELECT root_hash FROM aos_traces WHERE trace_id = 'tr-a'")[0][0]
    assert root is not None

    result = prove(aos_store, "acme", "run-a")

    integrity = result.integrity
    assert integrity.verification_status == "UNSUPPORTED"
    assert integrity.model == "NONE"
    assert integrity.failure_reason == LEGACY_REASON
    assert "run-proof adopt" in integrity.failure_reason
    assert integrity.root_hash is None
    assert integrity.adopted_at is None


def test_a_run_id_with_legacy_duplicates_reads_its_newest_trace(
    aos_store: DatabaseUrl,
) -> None:
    upgrade(aos_store)

    result = prove(aos_store, "acme", "run-dup")

    # Two legacy traces share this run id; the proof names one, the newest, every time.
    assert [t.trace_id for t in result.aos_traces] == ["tr-dup-2"]
    assert result.integrity.verification_status == "UNSUPPORTED"


def test_fresh_store_has_the_same_rules(store: DatabaseUrl) -> None:
    record_run(store, "t", "run-1", steps=1)
    with pytest.raises(DuplicateRun):
        record_run(store, "t", "run-1", steps=1)
    indexes = sql(
        store, "SELECT indexdef FROM pg_indexes WHERE indexname = 'aos_traces_v1_run_id_key'"
    )
    assert indexes and indexes[0][0].endswith("WHERE (genesis_hash IS NOT NULL)")
    triggers = sql(
        store,
        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgenabled = 'A'"
        " AND starts_with(tgname, 'aos_') ORDER BY tgname",
    )
    assert {name for (name,) in triggers} >= {
        "aos_trace_steps_append_only",
        "aos_trace_steps_fill_identity",
        "aos_trace_steps_no_truncate",
        "aos_traces_guard_insert",
        "aos_traces_no_truncate",
        "aos_traces_seal_once",
    }
