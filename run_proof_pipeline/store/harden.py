"""`run-proof db harden` (opt-in): least-privilege roles and tenant row-level security.

Roles are server-wide and managed databases often forbid creating them, so this is a
command, not a migration. It runs in one transaction, changes nothing on a store that is not
migrated to head, and is idempotent. It creates (NOLOGIN; grant them to login roles):

- a writer role for producers: INSERT and SELECT on the trace tables, UPDATE of the seal
  columns only, and nothing on the ledger (the seal trigger appends as its owner);
- a verifier role that reads everything (the seed's Step 1 is cross-tenant) and writes nothing;
- row-level security on both trace tables, FORCEd so that the owner is held to it too.

Which tenants a writer role may read and write is stored in the database, in
`run_proof_writer_tenants` (owned by the table owner; a writer may read only its own
bindings and change none), never taken from the client: a row `(role, tenant)` binds a role
to one tenant, `(role, NULL)` to every tenant (`--all-tenants`, for a producer such as AOS
that writes all tenants through one role). A session's tenants are those of the roles whose
privileges `CURRENT_USER` can use (`pg_has_role(..., 'USAGE')`), which a client cannot choose
beyond the roles it was granted. The `run_proof.tenant_id` setting of earlier versions is not
read any more (any session could set it). A step is visible and writable only when its trace
is a visible trace with the same tenant and run, so no writer puts a step into another
tenant's trace. The verifier and the owner read all rows, so proofs and audits never miss a
run. docs/threat-model.md ("Tenant isolation") says what a writer can still learn.

What stays possible for the owner or a superuser (disable triggers, RLS, rewrite rows) is
caught by the ledger and the signed checkpoints (docs/threat-model.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from run_proof_pipeline.settings import ConfigError, DatabaseUrl
from run_proof_pipeline.store.relations import StoreNotMigrated
from run_proof_pipeline.store.session_pins import startup_options, store_schema
from run_proof_pipeline.store.sql import CANONICAL_JSON_FUNCTIONS, CHAIN_V2_FUNCTIONS

__all__ = [
    "BINDINGS_TABLE",
    "HardenRefused",
    "TenantScope",
    "bound_tenants",
    "harden",
]

BINDINGS_TABLE = "run_proof_writer_tenants"
TRACE_TABLES = ("aos_traces", "aos_trace_steps")
# Tables a hardened store must already have (created by `run-proof db upgrade`).
REQUIRED_TABLES = ("aos_traces", "aos_trace_steps", "run_proof_ledger")
# What a writer may UPDATE on aos_traces: the format-v1 recorder's seal (root_hash,
# chain_length) and AOS's completion (status, completed_at, metadata; migration 0006 seals a
# format-v2 trace itself, into columns no writer may write). archived_at is granted where the
# table has it (AOS's archival).
SEAL_COLUMNS = ("status", "completed_at", "metadata", "root_hash", "chain_length")
# Trigger functions of migration 0006 that run as the owner (SECURITY DEFINER): nobody needs
# EXECUTE on them (a trigger fires without it), and a writer holding it could attach them to a
# table of its own (they refuse that too).
DEFINER_TRIGGER_FUNCTIONS = (
    "run_proof_guard_trace_insert()",
    "run_proof_guard_trace_change()",
    "run_proof_v2_open_chain()",
    "run_proof_v2_chain_step()",
    "run_proof_ledger_record_seal()",
    "run_proof_ledger_record_adoption()",
    "run_proof_record_retirement()",
    "run_proof_record_ids_once()",
)
ISOLATION_POLICY = "run_proof_tenant_isolation"
READ_ALL_POLICY = "run_proof_read_all"
OWN_BINDINGS_POLICY = "run_proof_own_bindings"
# Serialises concurrent `db harden` runs (role creation and bindings), "RPHARD".
HARDEN_LOCK_KEY = 0x52_50_48_41_52_44


class HardenRefused(ConfigError):
    """`db harden` was asked for something that would not isolate; nothing was changed."""


class TenantScope(BaseModel):
    """Which tenants the writer role is bound to: listed tenants, every tenant, or (neither
    given) the bindings it already has, unchanged."""

    model_config = ConfigDict(frozen=True)

    tenants: tuple[str, ...] = ()
    all_tenants: bool = False

    @field_validator("tenants")
    @classmethod
    def _tenant_ids(cls, tenants: tuple[str, ...]) -> tuple[str, ...]:
        for tenant in tenants:
            if not tenant or "\x00" in tenant:
                raise ValueError(f"tenant id {tenant!r} is empty or holds a NUL byte")
        return tuple(sorted(set(tenants)))

    @model_validator(mode="after")
    def _one_kind(self) -> TenantScope:
        if self.tenants and self.all_tenants:
            raise ValueError("give --tenant or --all-tenants, not both")
        return self

    @property
    def declared(self) -> bool:
        return bool(self.tenants) or self.all_tenants

    def rows(self) -> set[str | None]:
        """The binding rows' tenant_id values (None: every tenant)."""
        return {None} if self.all_tenants else set(self.tenants)


def _member(alias: str) -> sql.Composable:
    """The binding row `alias` belongs to a role whose privileges the session can use now.
    A role dropped after binding has no oid: pg_has_role of NULL is NULL, never an error."""
    return sql.SQL(
        "pg_catalog.pg_has_role(CURRENT_USER, (SELECT r.oid FROM pg_catalog.pg_roles r"
        " WHERE r.rolname = {a}.role_name), 'USAGE')"
    ).format(a=sql.Identifier(alias))


class _Expressions:
    """Policy expressions, schema-qualified: a policy is stored parsed, so no search path of
    a later session can change what these names mean."""

    def __init__(self, schema: str) -> None:
        self.schema = sql.Identifier(schema)
        self.bindings = sql.SQL("{}.{}").format(self.schema, sql.Identifier(BINDINGS_TABLE))

    def listed(self, column: sql.Composable) -> sql.Composable:
        return sql.SQL(
            "{c} IN (SELECT b.tenant_id FROM {t} b WHERE b.tenant_id IS NOT NULL AND {m})"
        ).format(c=column, t=self.bindings, m=_member("b"))

    def every(self) -> sql.Composable:
        return sql.SQL("EXISTS (SELECT 1 FROM {t} b WHERE b.tenant_id IS NULL AND {m})").format(
            t=self.bindings, m=_member("b")
        )

    def bound(self, column: sql.Composable) -> sql.Composable:
        return sql.SQL("({} OR {})").format(self.listed(column), self.every())

    def trace_match(self) -> sql.Composable:
        # The trace is read under its own policy: only a trace the session may see counts.
        step = sql.Identifier("aos_trace_steps")
        return sql.SQL(
            "EXISTS (SELECT 1 FROM {s}.aos_traces t WHERE t.trace_id = {st}.trace_id"
            " AND t.tenant_id = {st}.tenant_id AND t.run_id = {st}.run_id)"
        ).format(s=self.schema, st=step)

    def policy(self, table: str) -> tuple[sql.Composable, sql.Composable]:
        """(USING, WITH CHECK) of the isolation policy on `table`."""
        tenant = sql.Identifier(table, "tenant_id")
        if table == "aos_traces":
            return self.bound(tenant), self.bound(tenant)
        # A role bound to every tenant reads every step (AOS's own, a legacy step without a
        # trace included); any role writes a step only into a visible trace of its tenant
        # and run.
        using = sql.SQL("({} OR ({} AND {}))").format(
            self.every(), self.listed(tenant), self.trace_match()
        )
        check = sql.SQL("({} AND {})").format(self.bound(tenant), self.trace_match())
        return using, check


def _qualified_text(schema: str) -> str:
    """The schema as a quoted identifier, for to_regprocedure's text argument."""
    return '"' + schema.replace('"', '""') + '"'


def _qualified(schema: str, name: str) -> sql.Composable:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def _one_value(
    cur: psycopg.Cursor[Any], query: str | sql.Composed, params: tuple[Any, ...] = ()
) -> Any:
    """The value of a one-row query (a function call, an aggregate without GROUP BY)."""
    row = cur.execute(query, params).fetchone()
    if row is None:  # psycopg's type: no row at all, which such a query never returns
        raise RuntimeError(f"no row from {query!r}")
    return row[0]


def _require_migrated(cur: psycopg.Cursor, schema: str) -> None:
    """StoreNotMigrated (exit 2) unless the store is at head; checked before any change, since
    the policies name the columns and functions the migrations create."""
    from run_proof_pipeline.store.migrate import VERSION_TABLE, head_revision

    missing = [
        f"{schema}.{table}"
        for table in REQUIRED_TABLES
        if _one_value(cur, "SELECT pg_catalog.to_regclass(%s)", (f"{schema}.{table}",)) is None
    ]
    current = None
    if _one_value(cur, "SELECT pg_catalog.to_regclass(%s)", (f"{schema}.{VERSION_TABLE}",)):
        current = _one_value(
            cur,
            sql.SQL("SELECT max(version_num) FROM {}").format(_qualified(schema, VERSION_TABLE)),
        )
    head = head_revision()
    if missing or current != head:
        lacks = f"{', '.join(missing)} missing, " if missing else ""
        raise StoreNotMigrated(
            f"the trace store in schema {schema} is not migrated ({lacks}database at "
            f"{current or 'no run-proof revision'}, code at {head}): run `run-proof db upgrade`"
            " first; db harden changed nothing"
        )


def _ensure_role(cur: psycopg.Cursor, role: str) -> str:
    exists = cur.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", (role,)).fetchone()
    if exists:
        return f"role {role}: exists"
    cur.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    return f"role {role}: created"


def _refuse_bypass(cur: psycopg.Cursor, role: str) -> None:
    row = cur.execute(
        "SELECT rolsuper OR rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = %s", (role,)
    ).fetchone()
    if row is not None and row[0]:
        raise HardenRefused(
            f"role {role} is a superuser or has BYPASSRLS: row-level security never applies to"
            " it, so it cannot be bound to a tenant; use a role without them"
        )


def _policy(cur: psycopg.Cursor, schema: str, table: str, name: str, body: sql.Composable) -> None:
    target = _qualified(schema, table)
    cur.execute(sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(sql.Identifier(name), target))
    cur.execute(sql.SQL("CREATE POLICY {} ON {} ").format(sql.Identifier(name), target) + body)


def _table_owner(cur: psycopg.Cursor, schema: str, table: str) -> str:
    row = cur.execute(
        "SELECT pg_catalog.pg_get_userbyid(relowner) FROM pg_catalog.pg_class"
        " WHERE oid = pg_catalog.to_regclass(%s)",
        (f"{schema}.{table}",),
    ).fetchone()
    assert row is not None, "checked by _require_migrated"
    return str(row[0])


def _bindings_table(cur: psycopg.Cursor, schema: str, owner: str, ex: _Expressions) -> None:
    """The role-to-tenant table: owned by the table owner, readable row by row by the roles
    it binds (their own rows only), writable by nobody else."""
    table = ex.bindings
    cur.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (role_name text NOT NULL CHECK (role_name <> ''),"
            " tenant_id text CHECK (tenant_id <> ''))"
        ).format(table)
    )
    cur.execute(
        sql.SQL(
            "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} (role_name, tenant_id)"
            " WHERE tenant_id IS NOT NULL"
        ).format(sql.Identifier(f"{BINDINGS_TABLE}_key"), table)
    )
    cur.execute(
        sql.SQL(
            "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} (role_name) WHERE tenant_id IS NULL"
        ).format(sql.Identifier(f"{BINDINGS_TABLE}_every_key"), table)
    )
    cur.execute(
        sql.SQL(
            "COMMENT ON TABLE {} IS 'run-proof db harden: the tenants each writer role may"
            " read and write (tenant_id NULL: every tenant)'"
        ).format(table)
    )
    cur.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(table, sql.Identifier(owner)))
    cur.execute(sql.SQL("REVOKE ALL ON {} FROM PUBLIC").format(table))
    # The trace policies read it as the session's role; its own policy shows each role only
    # its own bindings (not FORCEd: the owner manages it).
    cur.execute(sql.SQL("GRANT SELECT ON {} TO PUBLIC").format(table))
    cur.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(table))
    _policy(
        cur,
        schema,
        BINDINGS_TABLE,
        OWN_BINDINGS_POLICY,
        sql.SQL("FOR SELECT TO PUBLIC USING ({})").format(_member(BINDINGS_TABLE)),
    )


def _tenant_label(tenant: str | None) -> str:
    return "every tenant" if tenant is None else f"tenant {tenant}"


def _bind(cur: psycopg.Cursor, ex: _Expressions, role: str, scope: TenantScope) -> list[str]:
    done: list[str] = []
    for name, tenant in cur.execute(
        sql.SQL(
            "DELETE FROM {} b WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r"
            " WHERE r.rolname = b.role_name) RETURNING role_name, tenant_id"
        ).format(ex.bindings)
    ).fetchall():
        done.append(f"binding of dropped role {name} to {_tenant_label(tenant)}: removed")
    have = {
        row[0]
        for row in cur.execute(
            sql.SQL("SELECT tenant_id FROM {} WHERE role_name = %s").format(ex.bindings), (role,)
        )
    }
    if scope.declared:
        want = scope.rows()
        for tenant in sorted(have - want, key=lambda t: (t is not None, t or "")):
            cur.execute(
                sql.SQL(
                    "DELETE FROM {} WHERE role_name = %s AND tenant_id IS NOT DISTINCT FROM %s"
                ).format(ex.bindings),
                (role, tenant),
            )
            done.append(f"{role}: {_tenant_label(tenant)} unbound")
        for tenant in sorted(want - have, key=lambda t: (t is not None, t or "")):
            cur.execute(
                sql.SQL("INSERT INTO {} (role_name, tenant_id) VALUES (%s, %s)").format(
                    ex.bindings
                ),
                (role, tenant),
            )
        have = want
    if not have:
        done.append(
            f"{role}: bound to no tenant, so it reads and writes no trace"
            f" (run-proof db harden --writer-role {role} --tenant T, or --all-tenants)"
        )
    elif None in have:
        done.append(f"{role}: bound to every tenant (the producer keeps tenants apart)")
    else:
        done.append(f"{role}: bound to tenant {', '.join(sorted(t for t in have if t))}")
    return done


def _has_column(cur: psycopg.Cursor, schema: str, table: str, column: str) -> bool:
    row = cur.execute(
        "SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = pg_catalog.to_regclass(%s)"
        " AND attname = %s AND attnum > 0 AND NOT attisdropped",
        (f"{schema}.{table}", column),
    ).fetchone()
    return row is not None


def _trace_tables(
    cur: psycopg.Cursor, schema: str, ex: _Expressions, writer: str, verifier: str
) -> list[str]:
    done: list[str] = []
    w, v = sql.Identifier(writer), sql.Identifier(verifier)
    for table in TRACE_TABLES:
        owner = sql.Identifier(_table_owner(cur, schema, table))
        target = _qualified(schema, table)
        cur.execute(sql.SQL("REVOKE ALL ON {} FROM PUBLIC").format(target))
        cur.execute(sql.SQL("GRANT SELECT, INSERT ON {} TO {}").format(target, w))
        cur.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(target, v))
        if _has_column(cur, schema, table, "archived_at"):
            # AOS's archival through its producer role: the guards of migration 0005 let only a
            # pure archival through (docs/existing-aos-database.md), the policies its tenants.
            cur.execute(sql.SQL("GRANT UPDATE (archived_at) ON {} TO {}").format(target, w))
        cur.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(target))
        cur.execute(sql.SQL("ALTER TABLE {} FORCE ROW LEVEL SECURITY").format(target))
        using, check = ex.policy(table)
        _policy(
            cur,
            schema,
            table,
            ISOLATION_POLICY,
            sql.SQL("FOR ALL TO PUBLIC USING ({}) WITH CHECK ({})").format(using, check),
        )
        _policy(
            cur,
            schema,
            table,
            READ_ALL_POLICY,
            sql.SQL("FOR SELECT TO {}, {} USING (true)").format(v, owner),
        )
        done.append(f"{table}: row-level security by bound tenant (forced), policies in place")
    return done


def _functions(cur: psycopg.Cursor, schema: str) -> None:
    """Pin the search path of the store's functions (triggers and their helpers) to
    `pg_catalog, <schema>, pg_temp`. Unpinned, or pinned without pg_temp, a relation name in
    them is looked up first among the caller's temporary tables: a writer's
    `CREATE TEMP TABLE aos_traces (...)` made the no-step-after-seal trigger read it (a step
    was appended to a sealed trace), and a temporary `run_proof_ledger` took the seal's ledger
    entry (docs/threat-model.md, "Tenant isolation")."""
    # The canonicalizer and the format-v2 hash functions (store/sql/) pin their own settings,
    # a path without the store's schema included; they keep them.
    own_pins = [
        f"{_qualified_text(schema)}.{signature}"
        for signature in (*CANONICAL_JSON_FUNCTIONS, *CHAIN_V2_FUNCTIONS)
    ]
    names = cur.execute(
        "SELECT p.oid::pg_catalog.regprocedure::text FROM pg_catalog.pg_proc p"
        " WHERE p.pronamespace = pg_catalog.to_regnamespace(%s) AND p.prokind = 'f'"
        " AND p.proname LIKE 'run\\_proof\\_%%'"
        " AND p.oid <> ALL (SELECT pg_catalog.to_regprocedure(f)"
        " FROM pg_catalog.unnest(%s::text[]) f WHERE pg_catalog.to_regprocedure(f) IS NOT NULL)"
        " ORDER BY 1",
        (schema, own_pins),
    ).fetchall()
    path = sql.SQL("pg_catalog, {}, pg_temp").format(sql.Identifier(schema))
    for (signature,) in names:
        # regprocedure's own text: quoted and qualified as needed under this search path.
        cur.execute(
            sql.SQL("ALTER FUNCTION {} SET search_path = {}").format(sql.SQL(signature), path)
        )
    # The insert guard refuses a format-v1 run id that a legacy trace already has; run as the
    # writer it would see only its own tenant's legacy traces, so run ids would stop being
    # unique across tenants. As the owner (who reads all rows) it sees them all; its error
    # names only the run id the writer supplied.
    cur.execute(
        sql.SQL("ALTER FUNCTION {}() SECURITY DEFINER").format(
            _qualified(schema, "run_proof_guard_trace_insert")
        )
    )
    for signature in DEFINER_TRIGGER_FUNCTIONS:
        exists = cur.execute(
            "SELECT pg_catalog.to_regprocedure(%s) IS NOT NULL",
            (f"{_qualified_text(schema)}.{signature}",),
        ).fetchone()
        if exists and exists[0]:
            cur.execute(
                sql.SQL("REVOKE EXECUTE ON FUNCTION {}.{} FROM PUBLIC").format(
                    sql.Identifier(schema), sql.SQL(signature)
                )
            )
    # Whether another tenant's trace is retired is not a writer's business; only the DELETE
    # trigger calls it, and writers may not delete.
    cur.execute(
        sql.SQL("REVOKE EXECUTE ON FUNCTION {}(text) FROM PUBLIC").format(
            _qualified(schema, "run_proof_trace_retired")
        )
    )


def _no_statistics(cur: psycopg.Cursor, schema: str, tables: Sequence[str]) -> str | None:
    """Turn off column statistics: the planner applies leakproof operators (=, <) to them
    whatever row-level security hides, so EXPLAIN's row estimates gave a writer other
    tenants' ids (tenant ids from the most common values, run ids from histogram bounds,
    recovered by bisection). Returns a line when old statistics may remain."""
    names = [f"{schema}.{table}" for table in tables]
    for name, table in zip(names, tables, strict=True):
        columns = cur.execute(
            "SELECT attname FROM pg_catalog.pg_attribute"
            " WHERE attrelid = pg_catalog.to_regclass(%s) AND attnum > 0 AND NOT attisdropped"
            " ORDER BY attnum",
            (name,),
        ).fetchall()
        for (column,) in columns:
            cur.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET STATISTICS 0").format(
                    _qualified(schema, table), sql.Identifier(column)
                )
            )
    # ANALYZE skips such columns but keeps what it gathered before; only a superuser may
    # delete from pg_statistic.
    superuser = cur.execute(
        "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user"
    ).fetchone()
    if superuser is not None and superuser[0]:
        cur.execute(
            "DELETE FROM pg_catalog.pg_statistic WHERE starelid = ANY(SELECT"
            " pg_catalog.to_regclass(n) FROM pg_catalog.unnest(%s::text[]) n)",
            (names,),
        )
        return None
    listed = ", ".join(f"'{name}'::regclass" for name in names)
    # Printed for an administrator, never executed here.
    advice = f"DELETE FROM pg_catalog.pg_statistic WHERE starelid IN ({listed})"  # noqa: S608
    return (
        "column statistics are off, but those gathered before may remain and only a superuser"
        f" can remove them: {advice}"
    )


def harden(
    url: DatabaseUrl,
    *,
    writer_role: str,
    verifier_role: str,
    scope: TenantScope | None = None,
) -> list[str]:
    """Apply roles, bindings, grants and policies in one transaction; returns what was done.

    `scope` binds `writer_role` to exactly those tenants (or every tenant); without it the
    role's bindings stay as they are."""
    scope = scope or TenantScope()
    schema = store_schema()
    done: list[str] = []
    writer, verifier = sql.Identifier(writer_role), sql.Identifier(verifier_role)
    ex = _Expressions(schema)
    with (
        psycopg.connect(url.libpq(), options=startup_options(ddl=True)) as conn,
        conn.cursor() as cur,
    ):
        _require_migrated(cur, schema)
        if scope.tenants:
            _refuse_bypass(cur, writer_role)
        cur.execute("SELECT pg_catalog.pg_advisory_xact_lock(%s)", (HARDEN_LOCK_KEY,))
        done.append(_ensure_role(cur, writer_role))
        done.append(_ensure_role(cur, verifier_role))
        owner = _table_owner(cur, schema, "aos_traces")
        cur.execute(
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}, {}").format(ex.schema, writer, verifier)
        )
        _bindings_table(cur, schema, owner, ex)
        done.extend(_bind(cur, ex, writer_role, scope))
        done.extend(_trace_tables(cur, schema, ex, writer_role, verifier_role))
        seal_columns = sql.SQL(", ").join(sql.Identifier(c) for c in SEAL_COLUMNS)
        cur.execute(
            sql.SQL("GRANT UPDATE ({}) ON {} TO {}").format(
                seal_columns, _qualified(schema, "aos_traces"), writer
            )
        )
        # The seal trigger (run as the sealing user) draws seal_seq from this sequence.
        cur.execute(
            sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(
                _qualified(schema, "aos_traces_seal_seq"), writer
            )
        )
        ledger = _qualified(schema, "run_proof_ledger")
        cur.execute(sql.SQL("REVOKE ALL ON {} FROM PUBLIC").format(ledger))
        cur.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(ledger, verifier))
        # What the ledger audit reads besides the ledger: the signed tombstones and the record
        # of used ids (migrations 0003, 0004), and the revision (store/relations.py).
        # The proof of an adopted format-v2 trace reads its step hashes (migration 0006).
        for table in (
            "run_proof_alembic_version",
            "run_proof_retirements",
            "run_proof_run_ids",
            "run_proof_adopted_steps",
        ):
            cur.execute(
                sql.SQL("GRANT SELECT ON {} TO {}").format(_qualified(schema, table), verifier)
            )
        _functions(cur, schema)
        remains = _no_statistics(cur, schema, (*TRACE_TABLES, BINDINGS_TABLE))
        if remains:
            done.append(remains)
        done.append(
            f"{writer_role}: INSERT/SELECT on trace tables of its tenants, UPDATE of the seal"
            " and completion columns only, no access to the ledger or to run-proof's chain"
            " tables (the triggers write them as their owner)"
        )
        done.append(f"{verifier_role}: SELECT on trace tables and ledger, across tenants")
    return done


def bound_tenants(url: DatabaseUrl, role: str) -> Sequence[str | None]:
    """The tenants `role` is bound to (None: every tenant), as the owner reads them."""
    with psycopg.connect(url.libpq(), options=startup_options()) as conn:
        rows = conn.execute(
            sql.SQL("SELECT tenant_id FROM {} WHERE role_name = %s ORDER BY 1").format(
                _qualified(store_schema(), BINDINGS_TABLE)
            ),
            (role,),
        ).fetchall()
    return [row[0] for row in rows]
