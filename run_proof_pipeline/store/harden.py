"""`run-proof db harden` (opt-in): least-privilege roles and tenant row-level security.

Roles are server-wide and managed databases often forbid creating them, so this is a
command, not a migration. It is idempotent. It creates (NOLOGIN; grant them to login roles):

- a writer role for producers: INSERT and SELECT on the trace tables, UPDATE of the seal
  columns only, and nothing on the ledger (the seal trigger appends as its owner);
- a verifier role that reads everything (the seed's Step 1 is cross-tenant) and writes nothing;
- row-level security on both trace tables, FORCEd so that the owner is held to it too: rows
  are visible and writable only for the tenant set in the transaction with
  `SELECT set_config('run_proof.tenant_id', '<tenant>', true)` (transaction-local, so it
  cannot leak to the next user of a pooled connection). The verifier and the owner read all
  rows, so proofs and audits never miss a run.

What stays possible for the owner or a superuser (disable triggers, RLS, rewrite rows) is
caught by the ledger and the signed checkpoints (docs/threat-model.md).
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.session_pins import startup_options

__all__ = ["TENANT_SETTING", "harden"]

TENANT_SETTING = "run_proof.tenant_id"
TRACE_TABLES = ("aos_traces", "aos_trace_steps")
SEAL_COLUMNS = ("status", "completed_at", "root_hash", "chain_length")
_TENANT_MATCH = sql.SQL("tenant_id = current_setting({}, true)").format(sql.Literal(TENANT_SETTING))


def _ensure_role(cur: psycopg.Cursor, role: str) -> str:
    exists = cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    if exists:
        return f"role {role}: exists"
    cur.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    return f"role {role}: created"


def _policy(cur: psycopg.Cursor, table: str, name: str, body: sql.Composable) -> None:
    ident = sql.Identifier(table)
    cur.execute(sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(sql.Identifier(name), ident))
    cur.execute(sql.SQL("CREATE POLICY {} ON {} ").format(sql.Identifier(name), ident) + body)


def _table_owner(cur: psycopg.Cursor, table: str) -> str:
    row = cur.execute(
        "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = to_regclass(%s)", (table,)
    ).fetchone()
    if row is None:
        raise LookupError(f"table {table} is missing: run `run-proof db upgrade` first")
    return str(row[0])


def harden(url: DatabaseUrl, *, writer_role: str, verifier_role: str) -> list[str]:
    """Apply roles, grants and policies in one transaction; returns what was done."""
    done: list[str] = []
    writer, verifier = sql.Identifier(writer_role), sql.Identifier(verifier_role)
    with (
        psycopg.connect(url.libpq(), options=startup_options(ddl=True)) as conn,
        conn.cursor() as cur,
    ):
        done.append(_ensure_role(cur, writer_role))
        done.append(_ensure_role(cur, verifier_role))
        schema = sql.Identifier(str(cur.execute("SELECT current_schema()").fetchone()[0]))
        cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}, {}").format(schema, writer, verifier))
        for table in TRACE_TABLES:
            owner = sql.Identifier(_table_owner(cur, table))
            ident = sql.Identifier(table)
            cur.execute(sql.SQL("REVOKE ALL ON {} FROM PUBLIC").format(ident))
            cur.execute(sql.SQL("GRANT SELECT, INSERT ON {} TO {}").format(ident, writer))
            cur.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(ident, verifier))
            cur.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(ident))
            cur.execute(sql.SQL("ALTER TABLE {} FORCE ROW LEVEL SECURITY").format(ident))
            _policy(
                cur,
                table,
                "run_proof_tenant_isolation",
                sql.SQL("FOR ALL TO PUBLIC USING ({m}) WITH CHECK ({m})").format(m=_TENANT_MATCH),
            )
            _policy(
                cur,
                table,
                "run_proof_read_all",
                sql.SQL("FOR SELECT TO {}, {} USING (true)").format(verifier, owner),
            )
            done.append(f"{table}: row-level security by tenant (forced), policies in place")
        seal_columns = sql.SQL(", ").join(sql.Identifier(c) for c in SEAL_COLUMNS)
        cur.execute(sql.SQL("GRANT UPDATE ({}) ON aos_traces TO {}").format(seal_columns, writer))
        # The seal trigger (run as the sealing user) draws seal_seq from this sequence.
        cur.execute(sql.SQL("GRANT USAGE ON SEQUENCE aos_traces_seal_seq TO {}").format(writer))
        cur.execute("REVOKE ALL ON run_proof_ledger FROM PUBLIC")
        cur.execute(sql.SQL("GRANT SELECT ON run_proof_ledger TO {}").format(verifier))
        if cur.execute("SELECT to_regclass('run_proof_alembic_version')").fetchone()[0]:
            cur.execute(sql.SQL("GRANT SELECT ON run_proof_alembic_version TO {}").format(verifier))
        done.append(
            f"{writer_role}: INSERT/SELECT on trace tables, UPDATE of the seal columns only, "
            "no access to the ledger"
        )
        done.append(f"{verifier_role}: SELECT on trace tables and ledger, across tenants")
    return done
