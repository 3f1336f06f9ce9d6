"""`run-proof db harden`: least-privilege roles and tenant row-level security, idempotent.

The roles are NOLOGIN; these tests act as them with SET ROLE from the superuser connection.
A writer's tenants are its bindings in run_proof_writer_tenants, never a session setting.
Two login roles of two tenants attacking each other: test_tenant_isolation.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from run_proof_pipeline.cli.main import app
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.harden import (
    HardenRefused,
    TenantScope,
    bound_tenants,
    harden,
)
from run_proof_pipeline.store.migrate import upgrade
from run_proof_pipeline.store.relations import StoreNotMigrated
from run_proof_pipeline_tests.support.stores import prove, record_run
from run_proof_pipeline_tests.test_ledger_support import audit, ledger_entries

TENANT_A = TenantScope(tenants=("tenant-a",))


def _drop_roles(url: DatabaseUrl, *roles: str) -> None:
    with psycopg.connect(url.libpq(), autocommit=True) as conn:
        for role in roles:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
def hardened(store: DatabaseUrl) -> Iterator[tuple[DatabaseUrl, str, str]]:
    suffix = uuid.uuid4().hex[:8]
    writer, verifier = f"rp_writer_{suffix}", f"rp_verifier_{suffix}"
    record_run(store, "tenant-a", "run-a", steps=2, chain_format=1)
    record_run(store, "tenant-b", "run-b", steps=2, chain_format=1)
    record_run(store, "tenant-a", "run-a-open", steps=1, seal=False, chain_format=1)
    harden(store, writer_role=writer, verifier_role=verifier, scope=TENANT_A)
    yield store, writer, verifier
    _drop_roles(store, writer, verifier)


def _as(conn: psycopg.Connection, role: str) -> None:
    conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
    # Ignored since isolation reads the bindings: any session could set it.
    conn.execute("SELECT set_config('run_proof.tenant_id', 'tenant-b', true)")


def _refused(url: DatabaseUrl, role: str, statement: str) -> str:
    with psycopg.connect(url.libpq()) as conn:
        _as(conn, role)
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
            conn.execute(statement)
    return str(refused.value)


def _count(url: DatabaseUrl, role: str, statement: str) -> int:
    with psycopg.connect(url.libpq()) as conn:
        _as(conn, role)
        return int(conn.execute(statement).fetchone()[0])


def test_the_writer_sees_and_writes_only_its_bound_tenant(
    hardened: tuple[DatabaseUrl, str, str],
) -> None:
    url, writer, verifier = hardened
    with psycopg.connect(url.libpq()) as conn:
        _as(conn, writer)
        runs = [r[0] for r in conn.execute("SELECT run_id FROM aos_traces ORDER BY run_id")]
        steps = conn.execute("SELECT count(*) FROM aos_trace_steps").fetchone()[0]
    unbound = f"{writer}_unbound"
    harden(url, writer_role=unbound, verifier_role=verifier)
    try:
        unbound_sees = _count(url, unbound, "SELECT count(*) FROM aos_traces")
    finally:
        _drop_roles(url, unbound)

    assert runs == ["run-a", "run-a-open"] and steps == 3
    assert unbound_sees == 0
    message = _refused(
        url,
        writer,
        "INSERT INTO aos_traces (trace_id, run_id, tenant_id, genesis_hash)"
        " VALUES ('trace-x', 'run-x', 'tenant-b', repeat('0', 64))",
    )
    assert "row-level security" in message


# Each refused as the writer, each on its own connection.
FORBIDDEN = {
    "update-step": "UPDATE aos_trace_steps SET status = 'x'",
    "delete-step": "DELETE FROM aos_trace_steps",
    "delete-trace": "DELETE FROM aos_traces",
    "update-header": "UPDATE aos_traces SET plan = '{}'::jsonb",
    "truncate": "TRUNCATE aos_trace_steps",
    "read-ledger": "SELECT * FROM run_proof_ledger",
    "bind-itself": "INSERT INTO run_proof_writer_tenants VALUES (current_user, 'tenant-b')",
    "rebind-itself": "UPDATE run_proof_writer_tenants SET tenant_id = 'tenant-b'",
    "unbind": "DELETE FROM run_proof_writer_tenants",
}


def test_the_writer_cannot_change_history_its_tenants_or_read_the_ledger(
    hardened: tuple[DatabaseUrl, str, str],
) -> None:
    url, writer, _verifier = hardened

    refused = {case: _refused(url, writer, statement) for case, statement in FORBIDDEN.items()}

    assert {case for case, message in refused.items() if "permission denied" in message} == set(
        FORBIDDEN
    )
    assert bound_tenants(url, writer) == ["tenant-a"]


def test_the_writer_can_append_and_seal_and_the_ledger_records_it(
    hardened: tuple[DatabaseUrl, str, str],
) -> None:
    url, writer, _verifier = hardened
    with psycopg.connect(url.libpq()) as conn:
        _as(conn, writer)
        sealed = conn.execute(
            "UPDATE aos_traces SET status = 'succeeded', completed_at = now(),"
            " root_hash = repeat('a', 64), chain_length = 1 WHERE run_id = 'run-a-open'"
        ).rowcount
        other = conn.execute("UPDATE aos_traces SET status = 'x' WHERE run_id = 'run-b'").rowcount

    assert (sealed, other) == (1, 0)
    assert [e.run_id for e in ledger_entries(url)][-1] == "run-a-open"


def test_the_verifier_reads_every_tenant_and_writes_nothing(
    hardened: tuple[DatabaseUrl, str, str],
) -> None:
    url, _writer, verifier = hardened
    with psycopg.connect(url.libpq()) as conn:
        _as(conn, verifier)
        traces = conn.execute("SELECT count(*) FROM aos_traces").fetchone()[0]
        entries = conn.execute("SELECT count(*) FROM run_proof_ledger").fetchone()[0]

    assert (traces, entries) == (3, 2)
    for statement in (
        "INSERT INTO aos_traces (trace_id, run_id, tenant_id) VALUES ('t', 'r', 'tenant-a')",
        "UPDATE aos_traces SET status = 'x'",
        "DELETE FROM aos_trace_steps",
    ):
        assert "permission denied" in _refused(url, verifier, statement)


def test_harden_is_idempotent(hardened: tuple[DatabaseUrl, str, str]) -> None:
    url, writer, verifier = hardened

    again = harden(url, writer_role=writer, verifier_role=verifier, scope=TENANT_A)

    assert again[:3] == [
        f"role {writer}: exists",
        f"role {verifier}: exists",
        f"{writer}: bound to tenant tenant-a",
    ]
    with psycopg.connect(url.libpq()) as conn:
        policies = conn.execute(
            "SELECT tablename, policyname FROM pg_policies ORDER BY 1, 2"
        ).fetchall()
        forced = conn.execute(
            "SELECT relname FROM pg_class WHERE relforcerowsecurity ORDER BY 1"
        ).fetchall()
    assert policies == [
        ("aos_trace_steps", "run_proof_read_all"),
        ("aos_trace_steps", "run_proof_tenant_isolation"),
        ("aos_traces", "run_proof_read_all"),
        ("aos_traces", "run_proof_tenant_isolation"),
        ("run_proof_writer_tenants", "run_proof_own_bindings"),
    ]
    assert forced == [("aos_trace_steps",), ("aos_traces",)]
    assert bound_tenants(url, writer) == ["tenant-a"]


def test_tenants_given_replace_the_bindings_and_none_given_keeps_them(
    hardened: tuple[DatabaseUrl, str, str],
) -> None:
    url, writer, verifier = hardened

    moved = harden(
        url,
        writer_role=writer,
        verifier_role=verifier,
        scope=TenantScope(tenants=("tenant-b", "tenant-c", "tenant-b")),
    )
    kept = harden(url, writer_role=writer, verifier_role=verifier)

    assert f"{writer}: tenant tenant-a unbound" in moved
    assert f"{writer}: bound to tenant tenant-b, tenant-c" in moved
    assert f"{writer}: bound to tenant tenant-b, tenant-c" in kept
    assert bound_tenants(url, writer) == ["tenant-b", "tenant-c"]
    assert _count(url, writer, "SELECT count(*) FROM aos_traces WHERE tenant_id = 'tenant-a'") == 0
    assert _count(url, writer, "SELECT count(*) FROM aos_traces WHERE tenant_id = 'tenant-b'") == 1


def test_the_binding_of_a_dropped_role_is_removed_and_never_errors(
    hardened: tuple[DatabaseUrl, str, str],
) -> None:
    """A bound role dropped later must not break every query (pg_has_role of a missing role
    raises) nor pass its tenant on to a role created later under its name by mistake."""
    url, writer, verifier = hardened
    gone = f"{writer}_gone"
    harden(url, writer_role=gone, verifier_role=verifier, scope=TenantScope(tenants=("tenant-b",)))
    _drop_roles(url, gone)

    still = _count(url, writer, "SELECT count(*) FROM aos_traces")
    done = harden(url, writer_role=writer, verifier_role=verifier)

    assert still == 2
    assert f"binding of dropped role {gone} to tenant tenant-b: removed" in done
    assert bound_tenants(url, gone) == []


def test_a_role_that_bypasses_row_level_security_is_refused_and_nothing_is_created(
    store: DatabaseUrl,
) -> None:
    suffix = uuid.uuid4().hex[:8]
    bypass, verifier = f"rp_bypass_{suffix}", f"rp_verifier_{suffix}"
    with psycopg.connect(store.libpq(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN BYPASSRLS").format(sql.Identifier(bypass)))
    try:
        with pytest.raises(HardenRefused, match="BYPASSRLS"):
            harden(store, writer_role=bypass, verifier_role=verifier, scope=TENANT_A)
        with psycopg.connect(store.libpq()) as conn:
            created = conn.execute(
                "SELECT (SELECT count(*) FROM pg_roles WHERE rolname = %s),"
                " to_regclass('run_proof_writer_tenants')",
                (verifier,),
            ).fetchone()
    finally:
        _drop_roles(store, bypass)

    assert created == (0, None)


def test_a_store_behind_head_is_refused_before_anything_is_created(new_database: Any) -> None:
    url = DatabaseUrl.parse(new_database("behind"))
    upgrade(url, "0002")
    suffix = uuid.uuid4().hex[:8]
    writer, verifier = f"rp_w_{suffix}", f"rp_v_{suffix}"

    with pytest.raises(StoreNotMigrated) as refused:
        harden(url, writer_role=writer, verifier_role=verifier, scope=TENANT_A)

    assert "database at 0002" in str(refused.value)
    assert "run `run-proof db upgrade` first; db harden changed nothing" in str(refused.value)
    with psycopg.connect(url.libpq()) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_roles WHERE rolname IN (%s, %s)", (writer, verifier)
        ).fetchone() == (0,)
        assert conn.execute(
            "SELECT relrowsecurity, to_regclass('run_proof_writer_tenants') FROM pg_class"
            " WHERE relname = 'aos_traces'"
        ).fetchone() == (False, None)


def test_the_cli_binds_two_roles_and_refuses_both_kinds_of_scope(
    store: DatabaseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    suffix = uuid.uuid4().hex[:8]
    roles = [f"rp_cli_a_{suffix}", f"rp_cli_b_{suffix}", f"rp_cli_v_{suffix}"]
    monkeypatch.setenv("DATABASE_URL", store.libpq())
    runner = CliRunner()
    try:
        both = runner.invoke(
            app, ["db", "harden", "--writer-role", roles[0], "--tenant", "t", "--all-tenants"]
        )
        first = runner.invoke(
            app,
            ["db", "harden", "--writer-role", roles[0], "--verifier-role", roles[2]]
            + ["--tenant", "tenant-a", "--tenant", "tenant-c"],
        )
        second = runner.invoke(
            app,
            ["db", "harden", "--writer-role", roles[1], "--verifier-role", roles[2]]
            + ["--all-tenants"],
        )
        bindings = [bound_tenants(store, role) for role in roles[:2]]
    finally:
        _drop_roles(store, *roles)

    assert both.exit_code == 2
    assert both.output.strip() == "run-proof: db harden: give --tenant or --all-tenants, not both"
    assert first.exit_code == 0, first.output
    assert f"{roles[0]}: bound to tenant tenant-a, tenant-c" in first.output
    assert second.exit_code == 0, second.output
    assert f"{roles[1]}: bound to every tenant" in second.output
    assert bindings == [["tenant-a", "tenant-c"], [None]]


def test_the_recorder_writes_through_row_level_security_as_the_writer(
    hardened: tuple[DatabaseUrl, str, str],
) -> None:
    """The hardened writer role can use the recorder as it is: the recorder writes format v2,
    chained by the database's triggers (migration 0006), through the writer's row-level
    security; the trace, its steps and its seal are the database's, in the ledger."""
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    from run_proof_pipeline.store.recorder import InvalidRecord, TraceRecorder, TraceStart
    from run_proof_pipeline_tests.support.stores import BASE, make_step, prove, run

    url, writer, _verifier = hardened

    async def go() -> None:
        engine = create_async_engine(
            url.sqlalchemy(), poolclass=NullPool, connect_args={"options": f"-c role={writer}"}
        )
        try:
            recorder = TraceRecorder(engine)
            await recorder.start_trace(
                TraceStart(
                    tenant_id="tenant-a",
                    run_id="run-a-v2",
                    trace_id="trace-run-a-v2",
                    agent_id="agent-7",
                    plan_id="plan-42",
                    plan={"goal": "fetch and summarize"},
                    started_at=BASE,
                )
            )
            for index in range(2):
                await recorder.append_step("tenant-a", "run-a-v2", make_step(index, at=BASE))
            await recorder.seal(
                "tenant-a", "run-a-v2", status="succeeded", completed_at="2026-02-09T11:00:00Z"
            )
            # The fixture's open run is format v1: the recorder extends format-v2 traces only.
            with pytest.raises(InvalidRecord, match="is in format v1"):
                await recorder.append_step("tenant-a", "run-a-open", make_step(1))
        finally:
            await engine.dispose()

    run(go())

    proof = prove(url, "tenant-a", "run-a-v2").integrity
    assert proof.verification_status == "VERIFIED", proof.failure_reason
    assert proof.chain_length == 2
    with psycopg.connect(url.libpq()) as conn:
        trace = conn.execute(
            "SELECT chain_format, seal_hash FROM aos_traces WHERE run_id = 'run-a-v2'"
        ).fetchone()
    assert trace is not None and trace[0] == 2 and trace[1] is not None
    sealed = [e for e in ledger_entries(url) if e.run_id == "run-a-v2"]
    assert [(e.kind, e.chain_length, e.root_hash) for e in sealed] == [("seal", 2, trace[1])]


def test_a_login_role_of_the_verifier_proves_and_audits_every_tenant(
    hardened: tuple[DatabaseUrl, str, str],
) -> None:
    """The verifier role reads all a proof and the ledger audit read (tombstones and the
    record of used ids included), as a real login, not only through SET ROLE."""
    url, _writer, verifier = hardened
    login = f"{verifier}_login"
    password = "Vf7-login-pw"
    with psycopg.connect(url.libpq(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                sql.Identifier(login), sql.Literal(password), sql.Identifier(verifier)
            )
        )
    as_verifier = DatabaseUrl(url.url.set(username=login, password=password))
    try:
        for tenant, run_id in (("tenant-a", "run-a"), ("tenant-b", "run-b")):
            proof = prove(as_verifier, tenant, run_id)
            assert proof.integrity.verification_status == "VERIFIED", proof.integrity
        assert audit(as_verifier).problems == []
        with psycopg.connect(as_verifier.libpq()) as conn:
            for table in ("run_proof_retirements", "run_proof_run_ids", "run_proof_ledger"):
                conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
    finally:
        _drop_roles(url, login)


def test_the_writer_archives_its_tenants_runs_and_nothing_else(
    hardened: tuple[DatabaseUrl, str, str],
) -> None:
    """Every store at 0006 has AOS's `archived_at` (the revision adds it where AOS's tables
    lack it), so the producer role may archive (migrations 0005 and 0006 let only a pure
    archival through, of a format-v1 and a format-v2 run alike; the policies only its
    tenants' rows)."""
    url, writer, _verifier = hardened
    record_run(url, "tenant-a", "run-a-v2", steps=2)
    with psycopg.connect(url.libpq()) as conn:
        columns = conn.execute(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public'"
            " AND column_name = 'archived_at' AND table_name IN ('aos_traces', 'aos_trace_steps')"
            " ORDER BY 1"
        ).fetchall()
    assert columns == [("aos_trace_steps",), ("aos_traces",)]

    with psycopg.connect(url.libpq()) as conn:
        _as(conn, writer)
        archived = {
            run_id: conn.execute(
                "UPDATE aos_traces SET archived_at = now() WHERE run_id = %s", (run_id,)
            ).rowcount
            for run_id in ("run-a", "run-a-v2", "run-b")
        }
        steps = conn.execute(
            "UPDATE aos_trace_steps SET archived_at = now()"
            " WHERE run_id IN ('run-a', 'run-a-v2', 'run-b')"
        ).rowcount
    assert archived == {"run-a": 1, "run-a-v2": 1, "run-b": 0} and steps == 4
    for run_id in ("run-a", "run-a-v2"):
        assert "permission denied" in _refused(
            url, writer, f"UPDATE aos_traces SET plan_id = 'x' WHERE run_id = '{run_id}'"
        )
    for tenant, run_id in (("tenant-a", "run-a"), ("tenant-a", "run-a-v2"), ("tenant-b", "run-b")):
        proof = prove(url, tenant, run_id).integrity
        assert proof.verification_status == "VERIFIED", proof.failure_reason
    with psycopg.connect(url.libpq()) as conn:
        left = conn.execute(
            "SELECT run_id, count(*) FILTER (WHERE archived_at IS NOT NULL) FROM ("
            " SELECT run_id, archived_at FROM aos_traces UNION ALL"
            " SELECT run_id, archived_at FROM aos_trace_steps) r"
            " WHERE run_id IN ('run-a', 'run-a-v2', 'run-b') GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert left == [("run-a", 3), ("run-a-v2", 3), ("run-b", 0)]
