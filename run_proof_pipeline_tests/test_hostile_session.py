"""Issue 11, classes 1-3: the database cannot steer what a proof reads.

Each attack is performed on the throwaway server as the owner, with the hostile value set
as a database default (`ALTER DATABASE`) and as a role default (`ALTER ROLE ... IN
DATABASE`, so other tests' databases are untouched), then every proof path is asked:
`verify` in one stream and in segment workers, the sweep (in process and in shards) and
`export`. The true verdict is FAILED at the tampered step (or a clear refusal), never
VERIFIED. Why it holds: store/session_pins.py and store/relations.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from run_proof_pipeline.cli.main import app
from run_proof_pipeline.coordinator import get_run_proof_coordinator
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.plan.coordinator_checks.fixtures import migrated_copy
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.relations import UntrustedStore
from run_proof_pipeline.sweep import SweepOptions, run_sweep
from run_proof_pipeline_tests.support.stores import prove, record_run
from run_proof_pipeline_tests.test_ledger_support import (
    audit,
    make_checkpoint,
    tamper,
)

TENANT = "tenant-h"
TAMPERED, CLEAN = "run-tampered", "run-clean"
STEPS = 4

# Each value, left to itself, changes how a value is rendered, which relation a name
# means, or how a session behaves; the first one printed 5.49 as 5 before the fix.
HOSTILE = [
    ("extra_float_digits", "-14"),
    ("DateStyle", "SQL, DMY"),
    ("IntervalStyle", "sql_standard"),
    ("TimeZone", "Pacific/Chatham"),
    ("client_encoding", "LATIN1"),
    ("client_encoding", "SQL_ASCII"),
    ("search_path", "shadow, public"),
    ("standard_conforming_strings", "off"),
    ("row_security", "off"),
    ("transform_null_equals", "on"),
    ("bytea_output", "escape"),
    ("default_transaction_read_only", "on"),
    ("default_transaction_isolation", "serializable"),
]


def _record(url: DatabaseUrl, run_id: str) -> None:
    """A sealed run whose steps were recorded with cost 5 and duration 2000."""
    record_run(
        url,
        TENANT,
        run_id,
        steps=STEPS,
        step_fields=lambda _: {"cost_cents": 5.0, "duration_ms": 2000.0},
        chain_format=1,
    )


def _shadow_copy(url: DatabaseUrl) -> None:
    """An untouched copy of every store table in schema `shadow` (class 2's decoy)."""
    with psycopg.connect(url.libpq()) as conn:
        conn.execute("CREATE SCHEMA shadow")
        for table in ("aos_traces", "aos_trace_steps", "run_proof_ledger"):
            conn.execute(
                sql.SQL("CREATE TABLE shadow.{t} AS SELECT * FROM public.{t}").format(
                    t=sql.Identifier(table)
                )
            )


def _tamper_step_one(url: DatabaseUrl) -> None:
    touched = tamper(
        url,
        (
            "UPDATE aos_trace_steps SET cost_cents = 5.49, duration_ms = 2499"
            " WHERE trace_id = %s AND step_index = 1",
            (f"trace-{TAMPERED}",),
        ),
    )
    assert touched == [1]


def _set_default(url: DatabaseUrl, scope: str, name: str, value: str) -> None:
    with psycopg.connect(url.libpq(), autocommit=True) as conn:
        target = sql.Identifier(url.database)
        if scope == "database":
            statement = sql.SQL("ALTER DATABASE {} SET {} = {}")
            conn.execute(statement.format(target, sql.Identifier(name), sql.Literal(value)))
        else:
            statement = sql.SQL("ALTER ROLE CURRENT_USER IN DATABASE {} SET {} = {}")
            conn.execute(statement.format(target, sql.Identifier(name), sql.Literal(value)))
    # A plain new session sees the default: the attack is in place.
    with psycopg.connect(url.libpq()) as conn:
        row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
    shown = row[0].decode() if isinstance(row[0], bytes) else row[0]  # SQL_ASCII: bytes
    assert _plain(shown) == _plain(value)


def _reset_default(url: DatabaseUrl, scope: str, name: str) -> None:
    # This plain connection would itself be under the hostile default: override it.
    plain = "-c client_encoding=UTF8 -c default_transaction_read_only=off"
    with psycopg.connect(url.libpq(), autocommit=True, options=plain) as conn:
        target, setting = sql.Identifier(url.database), sql.Identifier(name)
        if scope == "database":
            conn.execute(sql.SQL("ALTER DATABASE {} RESET {}").format(target, setting))
        else:
            statement = sql.SQL("ALTER ROLE CURRENT_USER IN DATABASE {} RESET {}")
            conn.execute(statement.format(target, setting))


def _plain(setting: str) -> str:
    return setting.replace(" ", "").replace('"', "").lower()


@dataclass(frozen=True)
class Findings:
    status: str
    first_bad: int | None


def _stream(url: DatabaseUrl, run_id: str) -> Findings:
    integrity = prove(url, TENANT, run_id, coordinator=get_run_proof_coordinator(workers=1))
    failure = integrity.integrity.failure
    return Findings(integrity.integrity.verification_status, failure and failure.step_index)


def _segments(url: DatabaseUrl, run_id: str, *, workers_expected: bool = True) -> Findings:
    coordinator = get_run_proof_coordinator(workers=2, parallel_min_steps=1)
    result = prove(url, TENANT, run_id, coordinator=coordinator, step_summary_limit=10)
    # The segment path ran (or, for a trace it cannot split, the stream did).
    assert (result.segment_workers >= 2) is workers_expected
    failure = result.integrity.failure
    return Findings(result.integrity.verification_status, failure and failure.step_index)


def _sweep(url: DatabaseUrl, workers: int) -> dict[str, str]:
    report = run_sweep(url, SweepOptions(full=True, workers=workers, tenant_id=TENANT))
    failed = {f.run_id: f.first_bad for f in report.failed}
    assert report.runs == 2
    return failed


def _export(url: DatabaseUrl, out: Path) -> dict[str, Any]:
    result = CliRunner().invoke(
        app,
        ["export", "--tenant-id", TENANT, "--run-id", TAMPERED, "--out", str(out)],
        env={"DATABASE_URL": url.libpq()},
    )
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text(encoding="utf-8"))


def _new_store(pg_server: LocalPostgres) -> tuple[str, DatabaseUrl]:
    """A store with a tampered and a clean run and a shadow schema holding the originals."""
    name = f"hostile_{uuid.uuid4().hex[:12]}"
    url = migrated_copy(pg_server, name)
    _record(url, TAMPERED)
    _record(url, CLEAN)
    _shadow_copy(url)
    _tamper_step_one(url)
    return name, url


@pytest.fixture(scope="module")
def shared_hostile_store(pg_server: LocalPostgres) -> Iterator[DatabaseUrl]:
    """One store for the settings cases: each sets its default and resets it after."""
    name, url = _new_store(pg_server)
    yield url
    pg_server.drop_database(name)


@pytest.fixture
def hostile_store(pg_server: LocalPostgres) -> Iterator[DatabaseUrl]:
    """A store of its own, for a case that changes tables."""
    name, url = _new_store(pg_server)
    yield url
    pg_server.drop_database(name)


# The whole matrix takes minutes (every path, two scopes): slow; the first case stays in the
# fast loop.
_MATRIX = [
    pytest.param(
        scope,
        name,
        value,
        id=f"{name}={value}-{scope}",
        marks=() if (scope, name) == ("database", "extra_float_digits") else pytest.mark.slow,
    )
    for scope in ("database", "role")
    for name, value in HOSTILE
]


@pytest.mark.parametrize(("scope", "name", "value"), _MATRIX)
def test_a_hostile_session_default_changes_no_verdict(
    shared_hostile_store: DatabaseUrl, tmp_path: Path, scope: str, name: str, value: str
) -> None:
    url = shared_hostile_store
    _set_default(url, scope, name, value)
    try:
        assert _stream(url, TAMPERED) == Findings("FAILED", 1)
        assert _stream(url, CLEAN) == Findings("VERIFIED", None)
        assert _segments(url, TAMPERED) == Findings("FAILED", 1)
        assert _sweep(url, workers=1) == {TAMPERED: "step 1"}
        assert _sweep(url, workers=2) == {TAMPERED: "step 1"}
        bundle = _export(url, tmp_path / "bundle.json")
        step = bundle["steps"][1]
        assert (step["cost_cents"], step["duration_ms"]) == (5.49, 2499.0)  # what is stored
    finally:
        _reset_default(url, scope, name)


def test_a_schema_named_after_the_login_role_is_not_read(hostile_store: DatabaseUrl) -> None:
    # The default search_path is "$user", public: a schema named after the verifier's login
    # role shadows public with no setting changed at all.
    with psycopg.connect(hostile_store.libpq(), autocommit=True) as conn:
        user = conn.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
        conn.execute(sql.SQL("ALTER SCHEMA shadow RENAME TO {}").format(sql.Identifier(user)))

    assert _stream(hostile_store, TAMPERED) == Findings("FAILED", 1)
    assert _segments(hostile_store, TAMPERED) == Findings("FAILED", 1)
    assert _sweep(hostile_store, workers=1) == {TAMPERED: "step 1"}


def _owner(url: DatabaseUrl, *statements: str) -> None:
    with psycopg.connect(url.libpq(), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _refused(url: DatabaseUrl, tmp_path: Path, needle: str) -> None:
    """Every proof path refuses, naming `needle`; none gives a verdict."""
    for attempt in (
        lambda: _stream(url, TAMPERED),
        lambda: _segments(url, TAMPERED),
        lambda: _sweep(url, workers=1),
    ):
        with pytest.raises(UntrustedStore, match=needle):
            attempt()
    result = CliRunner().invoke(
        app,
        ["verify", "--tenant-id", TENANT, "--run-id", CLEAN],
        env={"DATABASE_URL": url.libpq()},
    )
    assert result.exit_code == 1, result.output
    assert needle.replace("\\", "") in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(
        app,
        ["export", "--tenant-id", TENANT, "--run-id", CLEAN, "--out", str(tmp_path / "b.json")],
        env={"DATABASE_URL": url.libpq()},
    )
    assert result.exit_code == 1, result.output
    assert not (tmp_path / "b.json").exists()


def test_a_view_in_place_of_the_steps_table_is_refused(
    hostile_store: DatabaseUrl, tmp_path: Path
) -> None:
    _owner(
        hostile_store,
        "ALTER TABLE public.aos_trace_steps RENAME TO aos_trace_steps_real",
        "CREATE VIEW public.aos_trace_steps AS SELECT * FROM shadow.aos_trace_steps",
    )
    _refused(hostile_store, tmp_path, "public.aos_trace_steps is not a plain table")


@pytest.mark.parametrize(
    ("column", "new_type", "stored"),
    [
        ("retry_count", "text", "'0_0'"),
        ("cost_cents", "text", "' +4.283e0 '"),
        ("duration_ms", "numeric", "2499.0000000000000000001"),
        ("step_index", "bigint", None),  # allowed: an integer type, must still verify
        ("params", "json", None),
        ("timestamp", "timestamp", None),
    ],
)
def test_a_changed_column_type_is_refused(
    hostile_store: DatabaseUrl, tmp_path: Path, column: str, new_type: str, stored: str | None
) -> None:
    _owner(
        hostile_store,
        f'ALTER TABLE aos_trace_steps ALTER COLUMN "{column}" TYPE {new_type}'
        f' USING "{column}"::{new_type}',
    )
    if stored is not None:
        tamper(
            hostile_store,
            (f'UPDATE aos_trace_steps SET "{column}" = {stored} WHERE step_index = 2', ()),
        )
    if new_type == "bigint":
        assert _stream(hostile_store, CLEAN) == Findings("VERIFIED", None)
        assert _segments(hostile_store, TAMPERED) == Findings("FAILED", 1)
        return
    _refused(hostile_store, tmp_path, f"public.aos_trace_steps.{column} has type")


def test_a_domain_over_the_right_type_is_refused(
    hostile_store: DatabaseUrl, tmp_path: Path
) -> None:
    _owner(
        hostile_store,
        "CREATE DOMAIN public.cents AS double precision",
        "ALTER TABLE aos_trace_steps ALTER COLUMN cost_cents TYPE public.cents",
    )
    _refused(hostile_store, tmp_path, "public.aos_trace_steps.cost_cents has type")


def test_a_policy_hiding_rows_from_the_verifier_is_refused(
    hostile_store: DatabaseUrl, tmp_path: Path
) -> None:
    # As owner: a forged extra step after the seal, hidden from everyone who reads as the
    # owner by a restrictive policy (FORCEd), so that the verifier would not see it.
    _owner(
        hostile_store,
        "ALTER TABLE aos_trace_steps ENABLE ROW LEVEL SECURITY",
        "ALTER TABLE aos_trace_steps FORCE ROW LEVEL SECURITY",
        "CREATE POLICY see_all ON aos_trace_steps FOR ALL USING (true)",
        "CREATE POLICY hide ON aos_trace_steps AS RESTRICTIVE FOR SELECT USING (step_index < 100)",
    )
    # A superuser bypasses row-level security: read as a plain owner role instead.
    role_url = _plain_owner(hostile_store)
    _refused(role_url, tmp_path, "row-level security on public.aos_trace_steps")


def _plain_owner(url: DatabaseUrl) -> DatabaseUrl:
    """A login role (no superuser) that owns every store table, and its URL."""
    role = f"owner_{url.database}"[:60]
    statements = [
        f"CREATE ROLE {role} LOGIN PASSWORD 'pw'",
        f"GRANT ALL ON SCHEMA public TO {role}",
    ]
    statements += [
        f"ALTER TABLE public.{t} OWNER TO {role}"
        for t in ("aos_traces", "aos_trace_steps", "run_proof_ledger")
    ]
    statements += [f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}"]
    statements += [f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}"]
    _owner(url, *statements)
    return DatabaseUrl(url.url.set(username=role, password="pw"))


def test_a_row_without_step_index_in_a_sealed_run_is_counted_and_fails(
    hostile_store: DatabaseUrl,
) -> None:
    # AOS's own step_index column is nullable; ours is made so here by the owner. Ranges and
    # min()/max() skip NULL: such a row must still be read, counted and named.
    _owner(hostile_store, "ALTER TABLE aos_trace_steps ALTER COLUMN step_index DROP NOT NULL")
    tamper(
        hostile_store,
        (
            "INSERT INTO aos_trace_steps (trace_id, run_id, tenant_id, step_index, params,"
            " outcome_category, prev_hash, step_hash)"
            " SELECT trace_id, run_id, tenant_id, NULL, '{\"to\": \"mallory\"}', 'success',"
            " prev_hash, step_hash FROM aos_trace_steps WHERE trace_id = %s AND step_index = 3",
            (f"trace-{CLEAN}",),
        ),
    )

    stream = _stream(hostile_store, CLEAN)
    # Segments cannot hold a NULL index: the coordinator proves that trace in one stream.
    segments = _segments(hostile_store, CLEAN, workers_expected=False)
    assert stream.status == segments.status == "FAILED"
    result = prove(hostile_store, TENANT, CLEAN, coordinator=get_run_proof_coordinator(workers=1))
    assert "step_index is not an integer" in (result.integrity.failure_reason or "")
    assert result.steps_read == STEPS + 1  # every row counted
    assert _sweep(hostile_store, workers=1)[CLEAN] is not None


def test_checkpoint_verify_reads_the_stores_ledger_not_a_shadow_copy(
    hostile_store: DatabaseUrl, checkpoint_env: Any
) -> None:
    make_checkpoint(hostile_store)
    # As by a restore: a run and its ledger entry gone from public; `shadow` still has both.
    touched = tamper(
        hostile_store,
        ("DELETE FROM aos_traces WHERE run_id = %s", (CLEAN,)),
        ("DELETE FROM run_proof_ledger WHERE run_id = %s", (CLEAN,)),
    )
    assert touched == [1, 1]
    _set_default(hostile_store, "database", "search_path", "shadow, public")

    problems = audit(hostile_store).problems

    assert any("rolled back" in p for p in problems), problems
