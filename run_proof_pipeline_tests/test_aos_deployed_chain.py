"""Migration 0006 on AOS as deployed (issue 13, items 1, 2 and 5): legacy rows first, then
`run-proof db upgrade`; afterwards AOS's own unchanged statements are chained by the database.

No AOS column of any row changes and AOS's four triggers keep their definitions and state; every
writer pattern of AOS works unchanged and leaves genesis, step and seal hashes equal to the
Python reference (records_v2) recomputed from the rows; the ledger has one seal entry per
sealed run, naming its seal_hash; the seal covers metadata. A writer's hostile session, role or
database settings and temporary tables change no hash.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from run_proof_pipeline.cli.main import app
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.integrity.records_v2 import seal_canonical_v2
from run_proof_pipeline.ledger.keys import generate_signing_key
from run_proof_pipeline.ledger.retirement import retire_run
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import async_engine
from run_proof_pipeline_tests.support.aos_deployed import (
    AOS_TRIGGERS,
    ChainedRun,
    aos_trigger_definitions,
    archive_trace,
    chained_run,
    cleanup_old_traces,
    complete_trace,
    connect,
    create_aos_deployed_store,
    ledger_entries,
    mark_trace_aborted,
    record_step,
    retention_days_before,
    row_dumps,
    start_trace,
    store_trace,
)
from run_proof_pipeline_tests.support.stores import prove

Dumps = dict[str, dict[str, dict[str, Any]]]
OURS = {
    "aos_traces": {"chain_format", "seal_hash", "chain_problem"},
    "aos_trace_steps": {"chain_position", "chain_problem"},
    "aos_traces_archive": {"chain_format", "seal_hash", "chain_problem"},
}


@dataclass(frozen=True)
class Deployed:
    url: DatabaseUrl
    check_output: str
    dumps_before: Dumps
    dumps_after: Dumps
    triggers_before: list[tuple[str, str, str, str, str]]
    triggers_after: list[tuple[str, str, str, str, str]]


def cli(url: DatabaseUrl, *args: str) -> Any:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATABASE_URL", url.libpq())
        return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def deployed(pg_server: LocalPostgres) -> Iterator[Deployed]:
    name = f"aoschain_{uuid.uuid4().hex[:12]}"
    url = DatabaseUrl.parse(pg_server.create_database(name))
    create_aos_deployed_store(url)
    dumps_before, triggers_before = row_dumps(url), aos_trigger_definitions(url)
    check = cli(url, "db", "upgrade", "--check")
    assert check.exit_code == 0, check.output
    upgraded = cli(url, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    try:
        yield Deployed(
            url,
            check.output,
            dumps_before,
            row_dumps(url),
            triggers_before,
            aos_trigger_definitions(url),
        )
    finally:
        pg_server.drop_database(name)


def reference(url: DatabaseUrl) -> psycopg.Connection[Any]:
    """A connection that reads the rows exactly, whatever the database's or role's defaults."""
    conn = psycopg.connect(url.libpq(), autocommit=True)
    for name, value in (
        ("search_path", "public"),
        ("extra_float_digits", "3"),
        ("TimeZone", "UTC"),
        ("DateStyle", "ISO, MDY"),
    ):
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))
    return conn


def run_of(url: DatabaseUrl, trace_id: str) -> ChainedRun:
    with reference(url) as conn:
        return chained_run(conn, trace_id)


def entries(url: DatabaseUrl, trace_id: str) -> list[tuple[str, int, str]]:
    with reference(url) as conn:
        return ledger_entries(conn, trace_id)


def _step(conn: psycopg.Connection[Any], trace_id: str, index: int, **extra: Any) -> None:
    record_step(
        conn, trace_id, index, "http_call",
        {"i": index, "big": 2**64 + index, "ratio": 0.1 * index, "tiny": 5e-324},
        "success", "SUCCESS", "200", {"bytes": 10**20} if index % 2 else None,
        0.1 * index, 227.6 + index, 0, **extra,
    )  # fmt: skip


def test_check_lists_0006_and_lifts_no_aos_trigger(deployed: Deployed) -> None:
    out = deployed.check_output
    assert "revision 0006: Chaining in the database (format v2)" in out
    assert "aos_traces: add column chain_format smallint (run-proof's format-v2 column)" in out
    assert "aos_traces_archive: add column seal_hash text (as in aos_traces" in out
    assert "none is lifted by this revision" in out
    for table, name, _ in AOS_TRIGGERS:
        assert f"{name} on {table}" in out
    assert "create trigger aos_trace_steps_v2_chain (BEFORE INSERT ON aos_trace_steps" in out
    # 0001's backfill lift stays the only lift of an AOS trigger in the whole plan.
    assert out.count("lift trigger") == 1


def test_no_aos_column_of_any_row_changes(deployed: Deployed) -> None:
    before, after = deployed.dumps_before, deployed.dumps_after
    for table, rows in before.items():
        assert after[table].keys() == rows.keys(), table
        for row_id, old in rows.items():
            new = after[table][row_id]
            assert {c: new[c] for c in old} == old, (table, row_id)
            assert OURS[table] <= set(new), table
            # Legacy rows stay legacy: nothing of ours is written into them.
            assert {c: new[c] for c in OURS[table]} == dict.fromkeys(OURS[table]), (table, new)


def test_aos_triggers_are_identical_and_in_force(deployed: Deployed) -> None:
    assert deployed.triggers_after == deployed.triggers_before
    assert len(deployed.triggers_after) == 4 and all(t[3] == "O" for t in deployed.triggers_after)


def test_start_record_complete_is_chained_and_sealed(deployed: Deployed) -> None:
    url = deployed.url
    with connect(url) as conn:
        trace_id = start_trace(conn, "run-v2", "corr-v2", "acme", "agent-1", [{"s": 2**53 + 1}])
        # AOS retries start_trace: ON CONFLICT (trace_id) DO NOTHING, no error, nothing new.
        assert start_trace(conn, "run-v2", "corr-other", "acme", None, []) == trace_id
        for index in range(3):
            _step(conn, trace_id, index)
        genesis_run = run_of(url, trace_id)
        # A step recorded twice: ON CONFLICT (trace_id, step_index) DO NOTHING; chain unchanged.
        record_step(conn, trace_id, 1, "other", {}, "failure", "F", None, None, 0, 0, 0)
        assert run_of(url, trace_id).steps == genesis_run.steps
        assert complete_trace(conn, "run-v2", "completed", {"total_cost_cents": 0.3}) == 1
    run = run_of(url, trace_id)
    run.assert_matches()
    assert run.trace["root_hash"] == "pending"  # AOS's value, kept and covered by the header
    assert (run.trace["chain_length"], run.trace["status"]) == (3, "completed")
    assert entries(url, trace_id) == [("seal", 3, run.trace["seal_hash"])]
    # The seal covers metadata: the same seal without it is another hash.
    without = seal_canonical_v2(
        tenant_id="acme", run_id="run-v2", trace_id=trace_id, status="completed",
        completed_at=run.trace["completed_at"], chain_length=3, metadata=None,
    )  # fmt: skip
    assert without not in (run.trace["seal_hash"],)
    proof = prove(url, "acme", "run-v2").integrity
    assert proof.verification_status == "VERIFIED", proof


def test_mark_trace_aborted_seals_with_the_reason(deployed: Deployed) -> None:
    url = deployed.url
    with connect(url) as conn:
        trace_id = start_trace(conn, "run-v2-abort", "c", "globex", None, [])
        _step(conn, trace_id, 0)
        assert mark_trace_aborted(conn, "run-v2-abort", "worker died") == 1
        assert mark_trace_aborted(conn, "run-v2-abort", "again") == 0
    run = run_of(url, trace_id)
    run.assert_matches()
    assert run.trace["status"] == "aborted"
    assert json.loads(run.trace["metadata"]) == {"abort_reason": "worker died"}
    assert entries(url, trace_id) == [("seal", 1, run.trace["seal_hash"])]


def test_store_trace_is_sealed_once_its_listed_steps_are_in(deployed: Deployed) -> None:
    url = deployed.url
    whole = {
        "run_id": "run-v2-stored",
        "root_hash": "9" * 64,
        "plan": [{"skill": "a"}],
        "metadata": {"sdk": "py", "n": 18446744073709551616},
        "steps": [
            {"skill_name": "a", "params": {"n": 1}},  # no step_index: written as 0
            {"step_index": 1, "skill_name": "b", "status": "failure", "outcome_data": {"e": 2}},
        ],
    }
    with connect(url) as conn:
        trace_id = store_trace(conn, whole, "acme", stored_by="sdk")
        # Stored again: both statements take ON CONFLICT DO NOTHING, nothing changes.
        assert store_trace(conn, dict(whole, trace_id=trace_id), "acme") == trace_id
    run = run_of(url, trace_id)
    run.assert_matches()
    assert run.trace["root_hash"] == "9" * 64 and run.trace["chain_length"] == 2
    assert entries(url, trace_id) == [("seal", 2, run.trace["seal_hash"])]


def test_store_trace_without_steps_is_sealed_at_insert(deployed: Deployed) -> None:
    url = deployed.url
    with connect(url) as conn:
        trace_id = store_trace(conn, {"run_id": "run-v2-none", "steps": []}, "initech")
    run = run_of(url, trace_id)
    run.assert_matches()
    assert run.trace["chain_length"] == 0
    assert entries(url, trace_id) == [("seal", 0, run.trace["seal_hash"])]


def test_out_of_order_gap_and_late_steps_are_stored(deployed: Deployed) -> None:
    url = deployed.url
    with connect(url) as conn:
        trace_id = start_trace(conn, "run-v2-odd", "c", "acme", None, [])
        for index in (2, 0, 7):
            _step(conn, trace_id, index)
        complete_trace(conn, "run-v2-odd", "completed", None)
        _step(conn, trace_id, 8)  # after the seal: stored, chained on
    run = run_of(url, trace_id)
    assert [(s.step_index, s.chain_position) for s in run.steps] == [
        (2, 0),
        (0, 1),
        (7, 2),
        (8, 3),
    ]
    assert all(s.step_hash == s.expected_hash for s in run.steps)
    assert run.trace["chain_length"] == 3 and run.trace["seal_hash"] == run.expected_seal
    assert prove(url, "acme", "run-v2-odd").integrity.verification_status == "FAILED"


def test_archival_of_a_sealed_run_keeps_its_proof(deployed: Deployed) -> None:
    url = deployed.url
    with connect(url) as conn:
        trace_id = start_trace(conn, "run-v2-arch", "c", "acme", None, [])
        _step(conn, trace_id, 0)
        _step(conn, trace_id, 1)
        complete_trace(conn, "run-v2-arch", "completed", {"ok": True})
        assert archive_trace(conn, trace_id) == (1, 2)
        # A second completion of a sealed run is refused; AOS's own refusals stay as they were.
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="is sealed"):
            complete_trace(conn, "run-v2-arch", "failed", None)
        # run-proof's step guard fires first (name order), AOS's would refuse it as well.
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute(
                "UPDATE aos_trace_steps SET params = '{}' WHERE trace_id = %s", (trace_id,)
            )
    run_of(url, trace_id).assert_matches()
    assert prove(url, "acme", "run-v2-arch").integrity.verification_status == "VERIFIED"


def test_retention_after_retiring_works(deployed: Deployed) -> None:
    """AOS's retention (INSERT INTO aos_traces_archive SELECT *, then DELETE) takes a legacy
    row and a retired format-v2 run alike; the archive has every column in aos_traces' order."""
    url = deployed.url
    old = datetime(2019, 1, 2, 3, 4, 5, tzinfo=UTC)
    with connect(url) as conn:
        conn.execute(
            "INSERT INTO aos_traces (trace_id, run_id, correlation_id, tenant_id, root_hash,"
            " schema_version, plan, trace, status, started_at, created_at)"
            " VALUES ('trace_run-v2-old', 'run-v2-old', 'c', 'acme', 'pending', '1.0', '[]',"
            " '{\"steps\": []}', 'running', %s, %s)",
            (old, old),
        )
        _step(conn, "trace_run-v2-old", 0)
        complete_trace(conn, "run-v2-old", "completed", None)
    engine = async_engine(url)
    try:
        asyncio.run(
            retire_run(engine, "acme", "run-v2-old", "retention", generate_signing_key("t"))
        )
    finally:
        asyncio.run(engine.dispose())
    with connect(url) as conn:
        # The legacy rows older than 2020-03-05 (trace_ancient) and the retired run go.
        days = retention_days_before(datetime(2020, 3, 5, tzinfo=UTC) + timedelta(days=1))
        assert cleanup_old_traces(conn, days) == 2
        archived = conn.execute(
            "SELECT trace_id, chain_format, seal_hash IS NOT NULL FROM aos_traces_archive"
            " WHERE trace_id IN ('trace_run-v2-old', 'trace_ancient') ORDER BY 1"
        ).fetchall()
    assert archived == [("trace_ancient", None, False), ("trace_run-v2-old", 2, True)]
    assert [e[0] for e in entries(url, "trace_run-v2-old")] == ["seal", "tombstone"]


HOSTILE = (
    ("search_path", "evil, pg_catalog, public, pg_temp"),
    ("extra_float_digits", "-15"),
    ("TimeZone", "Asia/Kathmandu"),
    ("DateStyle", "SQL, DMY"),
    ("IntervalStyle", "sql_standard"),
)
# Functions that would change what our triggers compute, were they found by name.
EVIL = """
CREATE SCHEMA evil;
CREATE FUNCTION evil.sha256(bytea) RETURNS bytea
    LANGUAGE sql AS $$ SELECT '\\x00'::bytea $$;
CREATE FUNCTION evil.encode(bytea, text) RETURNS text
    LANGUAGE sql AS $$ SELECT 'evil' $$;
CREATE FUNCTION evil.jsonb_array_length(jsonb) RETURNS integer
    LANGUAGE sql AS $$ SELECT 0 $$;
CREATE FUNCTION evil.jsonb_typeof(jsonb) RETURNS text
    LANGUAGE sql AS $$ SELECT 'array' $$;
CREATE FUNCTION evil.current_setting(text, boolean) RETURNS text
    LANGUAGE sql AS $$ SELECT $1 $$;
CREATE FUNCTION evil.to_char(timestamptz, text) RETURNS text
    LANGUAGE sql AS $$ SELECT 'x' $$;
CREATE FUNCTION evil.trim_scale(numeric) RETURNS numeric
    LANGUAGE sql AS $$ SELECT 0::numeric $$;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
"""
SHADOWS = (
    "CREATE TEMP TABLE aos_traces (LIKE public.aos_traces);"
    " CREATE TEMP TABLE aos_trace_steps (LIKE public.aos_trace_steps);"
    " CREATE TEMP TABLE run_proof_chain_heads (LIKE public.run_proof_chain_heads);"
    " CREATE TEMP TABLE run_proof_ledger (LIKE public.run_proof_ledger)"
)


def _setting(name: str, value: str) -> sql.Composable:
    """A setting's value in ALTER ... SET: search_path as a list of names (one literal would
    be a single schema name), the others as literals."""
    if name == "search_path":
        return sql.SQL(", ").join(sql.Identifier(s.strip()) for s in value.split(","))
    return sql.Literal(value)


def _write_hostile_runs(conn: psycopg.Connection[Any], label: str) -> list[str]:
    """AOS's statements with the session's temporary tables named like the store's."""
    conn.execute(SHADOWS)
    run_id = f"run-hostile-{label}"
    trace_id = start_trace(conn, run_id, "c", "acme", "agent", [{"x": 0.1}])
    for index in range(2):
        _step(conn, trace_id, index)
    complete_trace(conn, run_id, "completed", {"cost": 0.30000000000000004})
    stored = store_trace(
        conn,
        {
            "run_id": f"{run_id}-stored",
            "started_at": "2025-11-03T08:30:15.250000+00:00",
            "completed_at": "2025-11-03T08:31:15.999999+00:00",
            "steps": [{"step_index": 0, "skill_name": "a", "timestamp": "2025-11-03T08:30:16"}],
        },
        "acme",
    )
    return [trace_id, stored]


@pytest.mark.slow
def test_hostile_session_role_and_database_settings_change_no_hash(
    deployed: Deployed, pg_server: LocalPostgres
) -> None:
    url = deployed.url
    with psycopg.connect(url.libpq(), autocommit=True) as conn:
        conn.execute(EVIL)
    database = url.url.database
    role = f"aoshostile_{uuid.uuid4().hex[:8]}"
    password = "Hx7-hostile"
    traces: list[str] = []
    try:
        # Per session.
        with connect(url) as conn:
            for name, value in HOSTILE:
                conn.execute("SELECT set_config(%s, %s, false)", (name, value))
            traces += _write_hostile_runs(conn, "session")
        # Per role: a login of its own, its defaults set on the role.
        with psycopg.connect(url.libpq(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )
            for name, value in HOSTILE:
                conn.execute(
                    sql.SQL("ALTER ROLE {} SET {} = {}").format(
                        sql.Identifier(role), sql.Identifier(name), _setting(name, value)
                    )
                )
        as_role = DatabaseUrl(url.url.set(username=role, password=password))
        with connect(as_role) as conn:
            assert conn.execute("SHOW extra_float_digits").fetchone() == ("-15",)
            traces += _write_hostile_runs(conn, "role")
        # Per database.
        with psycopg.connect(url.libpq(), autocommit=True) as conn:
            for name, value in HOSTILE:
                conn.execute(
                    sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                        sql.Identifier(database), sql.Identifier(name), _setting(name, value)
                    )
                )
        with connect(url) as conn:
            assert conn.execute("SHOW TimeZone").fetchone() == ("Asia/Kathmandu",)
            traces += _write_hostile_runs(conn, "database")
    finally:
        with psycopg.connect(url.libpq(), autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} RESET ALL").format(sql.Identifier(database)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
            conn.execute("DROP SCHEMA evil CASCADE")
    assert len(traces) == 6
    for trace_id in traces:
        run = run_of(url, trace_id)
        run.assert_matches()
        assert run.trace["seal_hash"] is not None, trace_id
        assert entries(url, trace_id) == [("seal", run.trace["chain_length"], run.expected_seal)]
