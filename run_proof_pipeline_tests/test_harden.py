"""`run-proof db harden`: least-privilege roles and tenant row-level security, idempotent.

The roles are NOLOGIN; the tests act as them with SET ROLE from the superuser connection,
and the tenant is set transaction-locally, as producers must."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.harden import harden
from run_proof_pipeline_tests.store_fixtures import record_run
from run_proof_pipeline_tests.test_ledger_support import ledger_entries


@pytest.fixture
def hardened(store: DatabaseUrl) -> Iterator[tuple[DatabaseUrl, str, str]]:
    suffix = uuid.uuid4().hex[:8]
    writer, verifier = f"rp_writer_{suffix}", f"rp_verifier_{suffix}"
    record_run(store, "tenant-a", "run-a", steps=2)
    record_run(store, "tenant-b", "run-b", steps=2)
    record_run(store, "tenant-a", "run-a-open", steps=1, seal=False)
    harden(store, writer_role=writer, verifier_role=verifier)
    yield store, writer, verifier
    with psycopg.connect(store.libpq(), autocommit=True) as conn:
        for role in (writer, verifier):
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _as(conn: psycopg.Connection, role: str, tenant: str | None) -> None:
    conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
    if tenant is not None:
        conn.execute("SELECT set_config('run_proof.tenant_id', %s, true)", (tenant,))


def _refused(url: DatabaseUrl, role: str, tenant: str | None, statement: str) -> str:
    with psycopg.connect(url.libpq()) as conn:
        _as(conn, role, tenant)
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
            conn.execute(statement)
    return str(refused.value)


def test_the_writer_sees_and_writes_only_its_tenant(hardened: tuple[DatabaseUrl, str, str]) -> None:
    url, writer, _verifier = hardened
    with psycopg.connect(url.libpq()) as conn:
        _as(conn, writer, "tenant-a")
        runs = [r[0] for r in conn.execute("SELECT run_id FROM aos_traces ORDER BY run_id")]
        steps = conn.execute("SELECT count(*) FROM aos_trace_steps").fetchone()[0]
    with psycopg.connect(url.libpq()) as conn:
        _as(conn, writer, None)
        unset = conn.execute("SELECT count(*) FROM aos_traces").fetchone()[0]

    assert runs == ["run-a", "run-a-open"] and steps == 3
    assert unset == 0
    message = _refused(
        url,
        writer,
        "tenant-a",
        "INSERT INTO aos_traces (trace_id, run_id, tenant_id, genesis_hash)"
        " VALUES ('trace-x', 'run-x', 'tenant-b', repeat('0', 64))",
    )
    assert "row-level security" in message


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE aos_trace_steps SET status = 'x'",
        "DELETE FROM aos_trace_steps",
        "DELETE FROM aos_traces",
        "UPDATE aos_traces SET plan = '{}'::jsonb",
        "TRUNCATE aos_trace_steps",
        "SELECT * FROM run_proof_ledger",
    ],
    ids=["update-step", "delete-step", "delete-trace", "update-header", "truncate", "read-ledger"],
)
def test_the_writer_cannot_change_history_or_read_the_ledger(
    hardened: tuple[DatabaseUrl, str, str], statement: str
) -> None:
    url, writer, _verifier = hardened

    assert "permission denied" in _refused(url, writer, "tenant-a", statement)


def test_the_writer_can_append_and_seal_and_the_ledger_records_it(
    hardened: tuple[DatabaseUrl, str, str],
) -> None:
    url, writer, _verifier = hardened
    with psycopg.connect(url.libpq()) as conn:
        _as(conn, writer, "tenant-a")
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
        _as(conn, verifier, None)
        traces = conn.execute("SELECT count(*) FROM aos_traces").fetchone()[0]
        entries = conn.execute("SELECT count(*) FROM run_proof_ledger").fetchone()[0]

    assert (traces, entries) == (3, 2)
    for statement in (
        "INSERT INTO aos_traces (trace_id, run_id, tenant_id) VALUES ('t', 'r', 'tenant-a')",
        "UPDATE aos_traces SET status = 'x'",
        "DELETE FROM aos_trace_steps",
    ):
        assert "permission denied" in _refused(url, verifier, "tenant-a", statement)


def test_harden_is_idempotent(hardened: tuple[DatabaseUrl, str, str]) -> None:
    url, writer, verifier = hardened

    again = harden(url, writer_role=writer, verifier_role=verifier)

    assert again[:2] == [f"role {writer}: exists", f"role {verifier}: exists"]
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
    ]
    assert forced == [("aos_trace_steps",), ("aos_traces",)]


def test_the_recorder_writes_through_row_level_security_as_the_writer(
    hardened: tuple[DatabaseUrl, str, str],
) -> None:
    """The recorder binds its tenant per transaction, so the hardened writer role can use it."""
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    from run_proof_pipeline.store.recorder import TraceRecorder
    from run_proof_pipeline_tests.store_fixtures import make_step, prove, run

    url, writer, _verifier = hardened

    async def go() -> None:
        engine = create_async_engine(
            url.sqlalchemy(), poolclass=NullPool, connect_args={"options": f"-c role={writer}"}
        )
        try:
            recorder = TraceRecorder(engine)
            await recorder.append_step("tenant-a", "run-a-open", make_step(1))
            await recorder.seal(
                "tenant-a", "run-a-open", status="succeeded", completed_at="2026-02-09T11:00:00Z"
            )
        finally:
            await engine.dispose()

    run(go())

    assert prove(url, "tenant-a", "run-a-open").integrity.verification_status == "VERIFIED"
