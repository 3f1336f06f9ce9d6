"""Which relations a proof reads, checked before it reads them (fail closed).

The owner of the store can swap a table for a view, move a shadow copy into a schema the
search path prefers, change a column's type so that `'0_0'` reads as 0, or add a row-level
security policy that hides rows from the verifier. Under the pinned search path
(store/session_pins.py) a proof checks, in its own snapshot transaction, that:

- each name resolves to a plain table (`relkind = 'r'`) of the configured schema;
- every column the proof reads exists with one of the types `db upgrade` creates or finds
  on an AOS store (text or varchar(n) for text; smallint, integer or bigint for integers;
  double precision; jsonb; timestamptz), compared by the built-in type's OID, so neither a
  domain nor a look-alike type of another schema passes;
- where row-level security applies to the current role, a permissive policy lets it read
  every row (`USING (true)`, as `db harden` installs) and no restrictive policy narrows it.

docs/threat-model.md ("What a proof trusts") lists what this covers.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["PROOF_RELATIONS", "UntrustedStore", "check_proof_relations"]

# Built-in type OIDs (fixed in PostgreSQL's catalog, pg_type.dat).
_TEXT = frozenset({25, 1043})  # text, varchar(n)
_INT = frozenset({21, 23, 20})  # smallint, integer, bigint
_FLOAT8 = frozenset({701})
_JSONB = frozenset({3802})
_TSTZ = frozenset({1184})
_NAMES = {25: "text", 1043: "varchar", 21: "smallint", 23: "integer", 20: "bigint"}
_NAMES |= {701: "double precision", 3802: "jsonb", 1184: "timestamptz"}


PROOF_RELATIONS: Mapping[str, Mapping[str, frozenset[int]]] = {
    "aos_traces": {
        **dict.fromkeys(
            ("trace_id", "run_id", "tenant_id", "agent_id", "plan_id", "status"), _TEXT
        ),
        **dict.fromkeys(("genesis_hash", "root_hash"), _TEXT),
        "plan": _JSONB,
        **dict.fromkeys(("started_at", "completed_at", "adopted_at"), _TSTZ),
        **dict.fromkeys(("chain_length", "seal_seq"), _INT),
    },
    "aos_trace_steps": {
        **dict.fromkeys(
            (
                "trace_id",
                "tenant_id",
                "run_id",
                "skill_id",
                "skill_name",
                "status",
                "outcome_category",
                "outcome_code",
                "prev_hash",
                "step_hash",
            ),
            _TEXT,
        ),
        **dict.fromkeys(("step_index", "retry_count"), _INT),
        **dict.fromkeys(("params", "outcome_data"), _JSONB),
        **dict.fromkeys(("cost_cents", "duration_ms"), _FLOAT8),
        "timestamp": _TSTZ,
    },
    "run_proof_ledger": {
        **dict.fromkeys(("seq", "chain_length"), _INT),
        **dict.fromkeys(("kind", "tenant_id", "run_id", "trace_id", "root_hash"), _TEXT),
        "leaf_hash": _TEXT,
        "recorded_at": _TSTZ,
    },
}


class UntrustedStore(RuntimeError):
    """The store's relations are not what a proof may read; nothing was proved."""


# Every name is resolved the way the proof's own statements resolve it (to_regclass under
# the pinned search path) and compared with the table of that name in the schema.
_RELATIONS = text(
    """
SELECT r.name,
       c.oid IS NOT NULL AS in_schema,
       c.relkind::text AS relkind,
       pg_catalog.to_regclass(pg_catalog.quote_ident(r.name))::oid AS resolved,
       c.oid AS oid,
       COALESCE(pg_catalog.row_security_active(c.oid), false) AS rls_active
FROM pg_catalog.unnest(CAST(:names AS text[])) AS r(name)
LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = :schema
LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = r.name
"""
)
_COLUMNS = text(
    """
SELECT c.relname, a.attname, a.atttypid::bigint AS typid,
       pg_catalog.format_type(a.atttypid, a.atttypmod) AS shown
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
WHERE a.attrelid = ANY(CAST(:oids AS oid[])) AND a.attnum > 0 AND NOT a.attisdropped
"""
)
# Policies that apply to the current role for SELECT.
_POLICIES = text(
    """
SELECT c.relname,
       COALESCE(bool_or(p.polpermissive
                        AND pg_catalog.pg_get_expr(p.polqual, p.polrelid) = 'true'), false)
           AS reads_all,
       COALESCE(bool_or(NOT p.polpermissive), false) AS restricted
FROM pg_catalog.pg_class c
LEFT JOIN pg_catalog.pg_policy p
  ON p.polrelid = c.oid AND p.polcmd IN ('r', '*')
 AND (0::oid = ANY(p.polroles) OR EXISTS (
        SELECT 1 FROM pg_catalog.unnest(p.polroles) AS role(oid)
        WHERE pg_catalog.pg_has_role(current_user, role.oid, 'MEMBER')))
WHERE c.oid = ANY(CAST(:oids AS oid[]))
GROUP BY c.relname
"""
)


async def check_proof_relations(
    conn: AsyncConnection, schema: str, relations: Mapping[str, Mapping[str, frozenset[int]]]
) -> None:
    """Raise UntrustedStore naming the first relation or column a proof may not read."""
    rows = (await conn.execute(_RELATIONS, {"names": list(relations), "schema": schema})).all()
    oids: list[int] = []
    rls: list[int] = []
    for row in rows:
        where = f"{schema}.{row.name}"
        if not row.in_schema:
            raise UntrustedStore(f"{where} does not exist (run `run-proof db upgrade`)")
        if row.relkind != "r":
            raise UntrustedStore(
                f"{where} is not a plain table (relkind {row.relkind!r}); "
                "a proof reads only the store's own tables"
            )
        if row.resolved != row.oid:
            raise UntrustedStore(
                f"the name {row.name} resolves to another relation than {where} "
                "under the pinned search path"
            )
        oids.append(int(row.oid))
        if row.rls_active:
            rls.append(int(row.oid))
    found: dict[tuple[str, str], tuple[int, str]] = {
        (r.relname, r.attname): (int(r.typid), r.shown)
        for r in (await conn.execute(_COLUMNS, {"oids": oids})).all()
    }
    for table, columns in relations.items():
        for column, allowed in columns.items():
            got = found.get((table, column))
            if got is None:
                raise UntrustedStore(f"{schema}.{table} has no column {column}")
            if got[0] not in allowed:
                names = " or ".join(sorted(_NAMES[oid] for oid in allowed))
                raise UntrustedStore(
                    f"{schema}.{table}.{column} has type {got[1]}, expected {names}: "
                    "its values would not read as the format defines them"
                )
    if rls:
        for row in (await conn.execute(_POLICIES, {"oids": rls})).all():
            if row.restricted or not row.reads_all:
                raise UntrustedStore(
                    f"row-level security on {schema}.{row.relname} may hide rows from "
                    "this role (a restrictive policy, or no permissive USING (true) "
                    "policy for it): a proof must see every row"
                )
