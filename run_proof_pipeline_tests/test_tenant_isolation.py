"""Tenant isolation after `run-proof db harden`, with two writer roles bound to two tenants.

Every attack is made over a real connection as a login role that was granted one writer
role, after the session tried to steer its tenant (`SET run_proof.tenant_id` and
`set_config`, which isolation no longer reads). What the other tenant holds is checked
afterwards as the superuser (docs/threat-model.md, "Tenant isolation").

One database for the module: the attacks leave no row behind (they are refused), and the
writes that succeed use run ids of their own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.exc import DBAPIError

from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.harden import TenantScope, harden
from run_proof_pipeline.store.migrate import upgrade
from run_proof_pipeline.store.recorder import TraceNotFound
from run_proof_pipeline.store.session_pins import startup_options
from run_proof_pipeline_tests.support.stores import make_step, prove, record_run, run
from run_proof_pipeline_tests.test_ledger_support import ledger_entries

CLI = str(Path(sys.executable).with_name("run-proof"))
PASSWORD = "tenant-pw"
BULK = 200  # tenant B's extra traces: enough rows for statistics to tell tenants apart


@dataclass(frozen=True)
class Isolated:
    url: DatabaseUrl
    writer_a: str
    writer_b: str
    writer_every: str
    verifier: str
    login_a: str
    login_b: str
    login_every: str
    login_verifier: str

    def as_login(self, login: str) -> DatabaseUrl:
        return DatabaseUrl(self.url.url.set(username=login, password=PASSWORD))


def _owner(
    url: DatabaseUrl, statement: str, params: tuple[Any, ...] | None = None
) -> list[tuple[Any, ...]]:
    with psycopg.connect(url.libpq(), autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def _b_rows(url: DatabaseUrl) -> tuple[Any, ...]:
    """Everything of tenant B a writer could have changed, as the superuser reads it."""
    return (
        _owner(url, "SELECT * FROM aos_traces WHERE tenant_id = 'tenant-b' ORDER BY trace_id"),
        _owner(url, "SELECT * FROM aos_trace_steps WHERE tenant_id = 'tenant-b' ORDER BY trace_id"),
        _owner(url, "SELECT count(*) FROM aos_trace_steps WHERE trace_id LIKE 'trace-run-b%'"),
    )


@pytest.fixture(scope="module")
def iso(pg_server: LocalPostgres) -> Iterator[Isolated]:
    name = f"iso_{uuid.uuid4().hex[:12]}"
    url = DatabaseUrl.parse(pg_server.create_database(name, exist_ok=False))
    # A legacy (AOS) trace of tenant B, written before the store knew format v2 (revision
    # 0005; since 0006 the same INSERT is chained by the database): its run id must stay
    # unique across tenants too.
    upgrade(url, "0005")
    _owner(
        url,
        "INSERT INTO aos_traces (trace_id, run_id, tenant_id) VALUES"
        " ('trace_legacy-b', 'legacy-b', 'tenant-b')",
    )
    upgrade(url)
    assert _owner(
        url,
        "SELECT genesis_hash IS NULL AND chain_format IS NULL FROM aos_traces"
        " WHERE trace_id = 'trace_legacy-b'",
    ) == [(True,)]
    suffix = uuid.uuid4().hex[:8]
    roles = Isolated(
        url,
        *(f"rp_{kind}_{suffix}" for kind in ("wa", "wb", "every", "ver")),
        *(f"rp_login_{kind}_{suffix}" for kind in ("a", "b", "every", "ver")),
    )
    record_run(url, "tenant-a", "run-a", steps=2, chain_format=1)
    record_run(url, "tenant-a", "run-a-open", steps=1, seal=False, chain_format=1)
    record_run(url, "tenant-b", "run-b", steps=2, chain_format=1)
    record_run(url, "tenant-b", "run-b-open", steps=1, seal=False, chain_format=1)
    _owner(
        url,
        "INSERT INTO aos_traces (trace_id, run_id, tenant_id, genesis_hash)"
        " SELECT 'trace-bulk-' || g, 'bulk-' || md5(g::text), 'tenant-b', repeat('0', 64)"
        " FROM generate_series(1, %s) g",
        (BULK,),
    )
    # Statistics gathered before hardening, as on any store in use.
    _owner(url, "ANALYZE aos_traces")
    _owner(url, "ANALYZE aos_trace_steps")
    harden(
        url,
        writer_role=roles.writer_a,
        verifier_role=roles.verifier,
        scope=TenantScope(tenants=("tenant-a",)),
    )
    harden(
        url,
        writer_role=roles.writer_b,
        verifier_role=roles.verifier,
        scope=TenantScope(tenants=("tenant-b",)),
    )
    harden(
        url,
        writer_role=roles.writer_every,
        verifier_role=roles.verifier,
        scope=TenantScope(all_tenants=True),
    )
    logins = {
        roles.login_a: roles.writer_a,
        roles.login_b: roles.writer_b,
        roles.login_every: roles.writer_every,
        roles.login_verifier: roles.verifier,
    }
    for login, granted in logins.items():
        _owner(
            url,
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}")
            .format(sql.Identifier(login), sql.Literal(PASSWORD), sql.Identifier(granted))
            .as_string(),
        )
    _owner(url, "ANALYZE aos_traces")
    yield roles
    pg_server.drop_database(name)
    with psycopg.connect(pg_server.url(driver=""), autocommit=True) as conn:
        for role in [*logins, *logins.values()]:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@contextmanager
def _session(iso: Isolated, login: str) -> Iterator[psycopg.Connection]:
    """A writer's own connection that has tried to name tenant B as its tenant."""
    with psycopg.connect(
        iso.as_login(login).libpq(), autocommit=True, options=startup_options()
    ) as conn:
        conn.execute("SET run_proof.tenant_id = 'tenant-b'")
        conn.execute("SELECT set_config('run_proof.tenant_id', 'tenant-b', false)")
        yield conn


def _refused(
    conn: psycopg.Connection, statement: str | sql.Composable, params: tuple[Any, ...] | None = None
) -> str:
    with pytest.raises(psycopg.Error) as refused:
        conn.execute(statement, params)
    return str(refused.value)


def test_a_writer_reads_only_its_own_tenant_whatever_the_session_sets(iso: Isolated) -> None:
    with _session(iso, iso.login_a) as conn:
        tenants = {r[0] for r in conn.execute("SELECT tenant_id FROM aos_traces")}
        runs = {r[0] for r in conn.execute("SELECT run_id FROM aos_traces")}
        step_tenants = {r[0] for r in conn.execute("SELECT tenant_id FROM aos_trace_steps")}
        asked = conn.execute(
            "SELECT count(*) FROM aos_traces WHERE tenant_id = 'tenant-b' OR run_id = 'run-b'"
        ).fetchone()
        bindings = conn.execute("SELECT role_name, tenant_id FROM run_proof_writer_tenants")
        own_bindings = bindings.fetchall()
        switch = _refused(conn, sql.SQL("SET ROLE {}").format(sql.Identifier(iso.writer_b)))

    assert tenants == step_tenants == {"tenant-a"}
    assert "run-a" in runs and "run-b" not in runs
    assert asked == (0,)
    assert own_bindings == [(iso.writer_a, "tenant-a")]
    assert "permission denied to set role" in switch


@pytest.mark.parametrize(
    ("statement", "params"),
    [
        (
            "INSERT INTO aos_traces (trace_id, run_id, tenant_id, genesis_hash)"
            " VALUES ('trace-planted', 'planted', 'tenant-b', repeat('0', 64))",
            None,
        ),
        (
            # Into B's open trace, claiming A as the step's tenant.
            "INSERT INTO aos_trace_steps (trace_id, run_id, tenant_id, step_index)"
            " VALUES ('trace-run-b-open', 'run-b-open', 'tenant-a', 1)",
            None,
        ),
        (
            "INSERT INTO aos_trace_steps (trace_id, run_id, tenant_id, step_index)"
            " VALUES ('trace-run-b-open', 'run-b-open', 'tenant-b', 1)",
            None,
        ),
        (
            # As AOS inserts: no run or tenant, the trigger would fill them from the trace.
            "INSERT INTO aos_trace_steps (trace_id, step_index) VALUES ('trace-run-b-open', 1)",
            None,
        ),
        (
            # Into A's own open trace, but naming B's run: a step of B's run by its run id.
            "INSERT INTO aos_trace_steps (trace_id, run_id, tenant_id, step_index)"
            " VALUES ('trace-run-a-open', 'run-b', 'tenant-a', 1)",
            None,
        ),
    ],
    ids=["trace-of-b", "step-claiming-a", "step-claiming-b", "step-filled", "step-naming-b-run"],
)
def test_a_writer_cannot_plant_rows_in_another_tenant(
    iso: Isolated, statement: str, params: tuple[Any, ...] | None
) -> None:
    before = _b_rows(iso.url)
    with _session(iso, iso.login_a) as conn:
        message = _refused(conn, statement, params)

    assert "new row violates row-level security policy" in message
    assert _b_rows(iso.url) == before


def test_a_writer_cannot_seal_or_reach_another_tenants_trace(iso: Isolated) -> None:
    before = _b_rows(iso.url)
    with _session(iso, iso.login_a) as conn:
        sealed = conn.execute(
            "UPDATE aos_traces SET status = 'succeeded', completed_at = now(),"
            " root_hash = repeat('a', 64), chain_length = 1 WHERE run_id = 'run-b-open'"
            " RETURNING run_id"
        ).fetchall()
        everything = conn.execute(
            "UPDATE aos_traces SET status = status WHERE root_hash IS NULL RETURNING tenant_id"
        ).fetchall()
        upsert = _refused(
            conn,
            "INSERT INTO aos_traces (trace_id, run_id, tenant_id, genesis_hash)"
            " VALUES ('trace-run-b-open', 'upsert-a', 'tenant-a', repeat('0', 64))"
            " ON CONFLICT (trace_id) DO UPDATE SET status = 'hijacked' RETURNING *",
        )
        skipped = conn.execute(
            "INSERT INTO aos_traces (trace_id, run_id, tenant_id, genesis_hash)"
            " VALUES ('trace-run-b-open', 'skip-a', 'tenant-a', repeat('0', 64))"
            " ON CONFLICT DO NOTHING RETURNING *"
        ).fetchall()
        retired = _refused(conn, "SELECT run_proof_trace_retired('trace-run-b')")

    assert sealed == [] and skipped == []
    assert {row[0] for row in everything} <= {"tenant-a"}
    assert "row-level security policy (USING expression)" in upsert
    assert "permission denied for function run_proof_trace_retired" in retired
    assert _b_rows(iso.url) == before


def test_a_taken_run_id_tells_the_writer_only_that_it_is_taken(iso: Isolated) -> None:
    """The one existence oracle unique run ids need: the refusal names the id the writer
    supplied and nothing of the trace that holds it (no tenant, no other column)."""
    attempts = {
        "run id of B": ("trace-probe-1", "run-b"),
        "trace id of B": ("trace-run-b", "probe-2"),
        "run id of B's legacy trace": ("trace-probe-3", "legacy-b"),
    }
    errors: dict[str, psycopg.Error] = {}
    with _session(iso, iso.login_a) as conn:
        for what, (trace_id, run_id) in attempts.items():
            with pytest.raises(psycopg.errors.UniqueViolation) as refused:
                conn.execute(
                    "INSERT INTO aos_traces (trace_id, run_id, tenant_id, genesis_hash)"
                    " VALUES (%s, %s, 'tenant-a', repeat('0', 64))",
                    (trace_id, run_id),
                )
            errors[what] = refused.value

    legacy = errors["run id of B's legacy trace"]
    assert str(legacy).startswith("run legacy-b already has a legacy trace")
    for error in errors.values():
        text = f"{error} {error.diag.message_detail} {error.diag.message_hint}"
        assert error.diag.message_detail is None
        assert "tenant-b" not in text and "genesis" not in text and "agent" not in text
    assert _owner(
        iso.url, "SELECT count(*) FROM aos_traces WHERE trace_id LIKE 'trace-probe%'"
    ) == [(0,)]


def test_a_writer_learns_no_ids_from_statistics(iso: Isolated) -> None:
    """pg_stats hides a table whose rows RLS filters, but the planner applies leakproof
    operators to the statistics themselves: db harden keeps none for these tables."""

    def estimate(conn: psycopg.Connection, where: str) -> str:
        plan = conn.execute(f"EXPLAIN SELECT 1 FROM aos_traces WHERE {where}").fetchone()
        return str(plan[0]).split("rows=")[1].split()[0]

    _owner(iso.url, "ANALYZE aos_traces")
    _owner(iso.url, "ANALYZE aos_trace_steps")
    with _session(iso, iso.login_a) as conn:
        visible = conn.execute(
            "SELECT count(*) FROM pg_stats WHERE tablename IN"
            " ('aos_traces', 'aos_trace_steps', 'run_proof_writer_tenants')"
        ).fetchone()
        tenant_b = estimate(conn, "tenant_id = 'tenant-b'")
        nobody = estimate(conn, "tenant_id = 'tenant-nobody'")
        below = [estimate(conn, f"run_id < 'bulk-{c}'") for c in "08f"]

    assert visible == (0,)
    assert tenant_b == nobody
    assert len(set(below)) == 1, below
    assert _owner(
        iso.url,
        "SELECT count(*) FROM pg_statistic WHERE starelid IN"
        " ('aos_traces'::regclass, 'aos_trace_steps'::regclass)",
    ) == [(0,)]


def test_a_temporary_table_cannot_stand_in_for_the_store(iso: Isolated) -> None:
    """Relation names in the store's triggers are looked up in pg_catalog and the schema,
    never first among the caller's temporary tables."""
    run_id = f"temp-{uuid.uuid4().hex[:6]}"
    record_run(iso.as_login(iso.login_a), "tenant-a", run_id, steps=1, seal=False, chain_format=1)
    with _session(iso, iso.login_a) as conn:
        conn.execute(
            "CREATE TEMP TABLE run_proof_ledger (kind text, tenant_id text, run_id text,"
            " trace_id text, chain_length bigint, root_hash text)"
        )
        conn.execute(
            "UPDATE aos_traces SET status = 'succeeded', completed_at = now(),"
            " root_hash = repeat('b', 64), chain_length = 1 WHERE run_id = %s",
            (run_id,),
        )
        diverted = conn.execute("SELECT count(*) FROM pg_temp.run_proof_ledger").fetchone()
        conn.execute(
            "CREATE TEMP TABLE aos_traces (trace_id text, run_id text, tenant_id text,"
            " root_hash text, genesis_hash text)"
        )
        after_seal = _refused(
            conn,
            "INSERT INTO public.aos_trace_steps (trace_id, run_id, tenant_id, step_index)"
            " VALUES (%s, %s, 'tenant-a', 1)",
            (f"trace-{run_id}", run_id),
        )

    assert diverted == (0,)
    assert [e.run_id for e in ledger_entries(iso.url)][-1] == run_id
    assert "is sealed: no step may be appended" in after_seal


def test_each_writer_records_and_proves_only_its_own_tenant(iso: Isolated) -> None:
    run_a, run_b = (f"own-{t}-{uuid.uuid4().hex[:6]}" for t in "ab")
    record_run(iso.as_login(iso.login_a), "tenant-a", run_a, steps=3)
    record_run(iso.as_login(iso.login_b), "tenant-b", run_b, steps=2)

    with pytest.raises(DBAPIError, match="row-level security"):
        record_run(iso.as_login(iso.login_b), "tenant-a", f"{run_a}-by-b", steps=1)
    with pytest.raises(TraceNotFound):
        run(_append(iso.as_login(iso.login_a), "tenant-b", "run-b-open"))

    verifier = iso.as_login(iso.login_verifier)
    for tenant, run_id, steps in (("tenant-a", run_a, 3), ("tenant-b", run_b, 2)):
        proof = prove(verifier, tenant, run_id)
        assert proof.integrity.verification_status == "VERIFIED"
        assert proof.integrity.chain_length == steps
    assert {e.run_id for e in ledger_entries(iso.url)} >= {run_a, run_b}
    assert _owner(
        iso.url, "SELECT count(*) FROM aos_traces WHERE run_id = %s", (f"{run_a}-by-b",)
    ) == [(0,)]


async def _append(url: DatabaseUrl, tenant: str, run_id: str) -> None:
    from run_proof_pipeline.store.engine import async_engine
    from run_proof_pipeline.store.recorder import TraceRecorder

    engine = async_engine(url)
    try:
        await TraceRecorder(engine).append_step(tenant, run_id, make_step(1))
    finally:
        await engine.dispose()


def test_the_all_tenants_role_writes_every_tenant_and_steps_still_follow_their_trace(
    iso: Isolated,
) -> None:
    """One producer role for every tenant, as AOS: it reads and writes all tenants, completes
    a trace by run id alone, and still cannot put a step of one tenant into another's trace."""
    runs = {t: f"aos-{t}-{uuid.uuid4().hex[:6]}" for t in ("tenant-a", "tenant-b")}
    for tenant, run_id in runs.items():
        record_run(iso.as_login(iso.login_every), tenant, run_id, steps=1, seal=False)
    with _session(iso, iso.login_every) as conn:
        tenants = {r[0] for r in conn.execute("SELECT DISTINCT tenant_id FROM aos_traces")}
        completed = conn.execute(
            "UPDATE aos_traces SET status = 'failed' WHERE run_id = %s RETURNING tenant_id",
            (runs["tenant-b"],),
        ).fetchall()
        crossed = _refused(
            conn,
            "INSERT INTO aos_trace_steps (trace_id, run_id, tenant_id, step_index)"
            " VALUES (%s, %s, 'tenant-a', 1)",
            (f"trace-{runs['tenant-b']}", runs["tenant-b"]),
        )

    assert tenants == {"tenant-a", "tenant-b"}
    assert completed == [("tenant-b",)]
    assert "new row violates row-level security policy" in crossed


def test_the_verifier_reads_every_tenant_and_writes_none(iso: Isolated) -> None:
    with _session(iso, iso.login_verifier) as conn:
        tenants = {r[0] for r in conn.execute("SELECT DISTINCT tenant_id FROM aos_traces")}
        steps = conn.execute("SELECT count(*) FROM aos_trace_steps").fetchone()
        message = _refused(
            conn,
            "INSERT INTO aos_traces (trace_id, run_id, tenant_id) VALUES ('v', 'v', 'tenant-a')",
        )

    assert tenants == {"tenant-a", "tenant-b"}
    assert steps == _owner(iso.url, "SELECT count(*) FROM aos_trace_steps")[0]
    assert "permission denied for table aos_traces" in message


def _state(url: DatabaseUrl) -> list[Any]:
    """Policies, grants, bindings, function settings and statistics targets, as the owner."""
    queries = (
        "SELECT tablename, policyname, roles::text, cmd, qual, with_check FROM pg_policies"
        " ORDER BY 1, 2",
        "SELECT relname, relacl::text, relrowsecurity, relforcerowsecurity FROM pg_class"
        " WHERE relname IN ('aos_traces', 'aos_trace_steps', 'run_proof_ledger',"
        " 'run_proof_writer_tenants', 'aos_traces_seal_seq') ORDER BY 1",
        "SELECT role_name, tenant_id FROM run_proof_writer_tenants ORDER BY 1, 2",
        "SELECT proname, prosecdef, proconfig::text, proacl::text FROM pg_proc"
        " WHERE proname LIKE 'run_proof_%' ORDER BY 1",
        "SELECT attrelid::regclass::text, attname, attstattarget FROM pg_attribute"
        " WHERE attrelid IN ('aos_traces'::regclass, 'aos_trace_steps'::regclass)"
        " AND attnum > 0 ORDER BY 1, 2",
    )
    return [_owner(url, query) for query in queries]


def test_harden_twice_changes_nothing(iso: Isolated) -> None:
    before = _state(iso.url)

    again = harden(
        iso.url,
        writer_role=iso.writer_a,
        verifier_role=iso.verifier,
        scope=TenantScope(tenants=("tenant-a",)),
    )

    assert again[:3] == [
        f"role {iso.writer_a}: exists",
        f"role {iso.verifier}: exists",
        f"{iso.writer_a}: bound to tenant tenant-a",
    ]
    assert _state(iso.url) == before


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("USE_POSTGRES_TRACES",)}
    env["DATABASE_URL"] = database_url
    return subprocess.run(
        [CLI, "db", "harden", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_harden_on_an_unmigrated_database_is_a_usage_error_and_creates_nothing(
    new_database: Any,
) -> None:
    url = DatabaseUrl.parse(new_database("bare"))
    suffix = uuid.uuid4().hex[:8]
    writer, verifier = f"rp_bare_w_{suffix}", f"rp_bare_v_{suffix}"

    done = _cli(
        url.sqlalchemy(),
        "--writer-role",
        writer,
        "--verifier-role",
        verifier,
        "--tenant",
        "tenant-a",
    )

    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert lines[0].startswith("run-proof: configuration error: the trace store in schema public")
    assert "run `run-proof db upgrade` first; db harden changed nothing" in lines[0]
    assert url.url.password not in done.stderr + done.stdout
    assert _owner(
        url, "SELECT count(*) FROM pg_roles WHERE rolname IN (%s, %s)", (writer, verifier)
    ) == [(0,)]
    assert _owner(url, "SELECT to_regclass('run_proof_writer_tenants')") == [(None,)]
