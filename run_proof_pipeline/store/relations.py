"""Which relations a proof reads, checked before it reads them (fail closed).

The owner of the store can swap a table for a view, move a shadow copy into a schema the
search path prefers, change a column's type so that `'0_0'` reads as 0, or add a row-level
security policy that hides rows from the verifier. Under the pinned search path
(store/session_pins.py) a proof checks, in its own snapshot transaction, that:

- each name resolves to a plain table (`relkind = 'r'`) of the configured schema;
- every column the proof reads exists with one of the types `db upgrade` creates or finds
  on an AOS store (text or varchar(n) for text; smallint, integer or bigint for integers;
  double precision; jsonb; timestamptz; boolean), compared by the built-in type's OID, so neither a
  domain nor a look-alike type of another schema passes;
- each key the format identifies rows by (`aos_traces (trace_id)`, `aos_trace_steps
  (trace_id, step_index)`, `run_proof_ledger (seq)`, and for adopted traces
  `run_proof_adopted_steps (trace_id, step_index)`) is enforced by a valid, plain,
  non-partial unique index, and its text columns compare in a deterministic collation: with
  the UNIQUE constraint dropped, a forged row could share a sealed run's trace_id and read
  (or lend) its steps and verdict. AOS creates both trace-table keys (its writer's
  `ON CONFLICT (trace_id)` and `ON CONFLICT (trace_id, step_index)` need them), and so does
  `run-proof db upgrade`;
- where row-level security applies to the current role, a permissive policy lets it read
  every row (`USING (true)`, as `db harden` installs) and no restrictive policy narrows it.

A relation or column that is missing on a store whose migrations are not at head is
`StoreNotMigrated` (a ConfigError: exit 2, "run `run-proof db upgrade`"); anything else that
fails, including a relation missing although the store is migrated, is `UntrustedStore`.

docs/threat-model.md ("What a proof trusts") lists what this covers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.errors import ExitCode, RunProofError
from run_proof_pipeline.settings import ConfigError

__all__ = [
    "ADOPTED_STEPS_RELATION",
    "PROOF_KEYS",
    "PROOF_RELATIONS",
    "StoreNotMigrated",
    "UntrustedStore",
    "check_proof_relations",
]

# Built-in type OIDs (fixed in PostgreSQL's catalog, pg_type.dat).
_TEXT = frozenset({25, 1043})  # text, varchar(n)
_INT = frozenset({21, 23, 20})  # smallint, integer, bigint
_FLOAT8 = frozenset({701})
_JSONB = frozenset({3802})
_TSTZ = frozenset({1184})
_BOOL = frozenset({16})
_NAMES = {25: "text", 1043: "varchar", 21: "smallint", 23: "integer", 20: "bigint"}
_NAMES |= {701: "double precision", 3802: "jsonb", 1184: "timestamptz", 16: "boolean"}


PROOF_RELATIONS: Mapping[str, Mapping[str, frozenset[int]]] = {
    "aos_traces": {
        **dict.fromkeys(
            ("trace_id", "run_id", "tenant_id", "agent_id", "plan_id", "status"), _TEXT
        ),
        **dict.fromkeys(("genesis_hash", "root_hash"), _TEXT),
        "plan": _JSONB,
        **dict.fromkeys(("started_at", "completed_at", "adopted_at"), _TSTZ),
        **dict.fromkeys(("chain_length", "seal_seq"), _INT),
        # Format v2 (migration 0006, docs/hash-chain-v2.md): the columns of ours and AOS's
        # content columns the header and seal cover.
        **dict.fromkeys(("chain_format", "seed"), _INT),
        **dict.fromkeys(
            (
                "seal_hash",
                "chain_problem",
                "correlation_id",
                "frozen_timestamp",
                "plan_hash",
                "schema_version",
                "stored_by",
                "checksum",
                "incident_id",
                "synthetic_scenario_id",
            ),
            _TEXT,
        ),
        **dict.fromkeys(("trace", "metadata"), _JSONB),
        "created_at": _TSTZ,
        "is_synthetic": _BOOL,
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
        # Format v2 (migration 0006): position and problem of ours, AOS's covered columns.
        "chain_position": _INT,
        **dict.fromkeys(
            (
                "chain_problem",
                "input_hash",
                "output_hash",
                "rng_state_before",
                "idempotency_key",
                "replay_behavior",
                "source",
                "level",
                "synthetic_scenario_id",
            ),
            _TEXT,
        ),
        "is_synthetic": _BOOL,
    },
    "run_proof_ledger": {
        **dict.fromkeys(("seq", "chain_length"), _INT),
        **dict.fromkeys(("kind", "tenant_id", "run_id", "trace_id", "root_hash"), _TEXT),
        "leaf_hash": _TEXT,
        "recorded_at": _TSTZ,
    },
}


# The keys the format identifies rows by: a proof reads "the" trace of a trace_id and "the"
# step at an index, so each must be unique in the store, not only by convention.
PROOF_KEYS: Mapping[str, tuple[str, ...]] = {
    "aos_traces": ("trace_id",),
    "aos_trace_steps": ("trace_id", "step_index"),
    "run_proof_ledger": ("seq",),
    "run_proof_adopted_steps": ("trace_id", "step_index"),
}

# The step hashes of adopted format-v2 traces (migration 0006): checked, with its key in
# PROOF_KEYS, by a proof that reads an adopted trace's steps
# (`check_proof_relations(conn, schema, ADOPTED_STEPS_RELATION)`); kept out of PROOF_RELATIONS
# so that an unmigrated store's message names what every proof reads.
ADOPTED_STEPS_RELATION: Mapping[str, Mapping[str, frozenset[int]]] = {
    "run_proof_adopted_steps": {
        **dict.fromkeys(("trace_id", "prev_hash", "step_hash"), _TEXT),
        **dict.fromkeys(("step_index", "chain_position"), _INT),
    },
}


class UntrustedStore(RunProofError, RuntimeError):
    """The store's relations are not what a proof may read; nothing was proved (fail
    closed: exit 1)."""

    exit_code = ExitCode.FAILED
    prefix = "refusing to prove: "


class StoreNotMigrated(ConfigError):
    """The store lacks relations or columns because `run-proof db upgrade` has not run (to
    head) on it; nothing was proved and nothing written."""


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
       pg_catalog.format_type(a.atttypid, a.atttypmod) AS shown,
       COALESCE(coll.collisdeterministic, true) AS deterministic,
       coll.collname::text AS collation
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
LEFT JOIN pg_catalog.pg_collation coll ON coll.oid = a.attcollation
WHERE a.attrelid = ANY(CAST(:oids AS oid[])) AND a.attnum > 0 AND NOT a.attisdropped
"""
)
# Every valid, plain-column, non-partial unique index of the relations, with its key columns
# (INCLUDE columns are not part of the key).
_UNIQUE_KEYS = text(
    """
SELECT c.relname,
       ARRAY(SELECT a.attname
             FROM pg_catalog.unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE k.n <= i.indnkeyatts) AS keys
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
WHERE i.indrelid = ANY(CAST(:oids AS oid[]))
  AND i.indisunique AND i.indisvalid AND i.indisready AND i.indislive
  AND i.indpred IS NULL AND i.indexprs IS NULL
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
    conn: AsyncConnection,
    schema: str,
    relations: Mapping[str, Mapping[str, frozenset[int]]],
    keys: Mapping[str, tuple[str, ...]] = PROOF_KEYS,
) -> None:
    """Raise StoreNotMigrated or UntrustedStore naming the first relation, column or key a
    proof may not read; `keys` are checked for the relations among `relations`."""
    rows = (await conn.execute(_RELATIONS, {"names": list(relations), "schema": schema})).all()
    by_name = {row.name: row for row in rows}
    # In the order of `relations`, all of them: an unmigrated store lacks several at once.
    missing = [f"{schema}.{name}" for name in relations if not by_name[name].in_schema]
    if missing:
        await _raise_missing(conn, schema, f"{', '.join(missing)} {_do(missing)} not exist")
    oids: list[int] = []
    rls: list[int] = []
    for name in relations:
        row = by_name[name]
        where = f"{schema}.{row.name}"
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
    found = {
        (r.relname, r.attname): r for r in (await conn.execute(_COLUMNS, {"oids": oids})).all()
    }
    absent = [
        f"{schema}.{table}.{column}"
        for table, columns in relations.items()
        for column in columns
        if (table, column) not in found
    ]
    if absent:
        await _raise_missing(conn, schema, f"column {', '.join(absent)} {_do(absent)} not exist")
    for table, columns in relations.items():
        for column, allowed in columns.items():
            got = found[(table, column)]
            if int(got.typid) not in allowed:
                names = " or ".join(sorted(_NAMES[oid] for oid in allowed))
                raise UntrustedStore(
                    f"{schema}.{table}.{column} has type {got.shown}, expected {names}: "
                    "its values would not read as the format defines them"
                )
    await _check_keys(conn, schema, {t: k for t, k in keys.items() if t in relations}, found, oids)
    if rls:
        for row in (await conn.execute(_POLICIES, {"oids": rls})).all():
            if row.restricted or not row.reads_all:
                raise UntrustedStore(
                    f"row-level security on {schema}.{row.relname} may hide rows from "
                    "this role (a restrictive policy, or no permissive USING (true) "
                    "policy for it): a proof must see every row"
                )


def _do(names: list[str]) -> str:
    return "does" if len(names) == 1 else "do"


async def _check_keys(
    conn: AsyncConnection,
    schema: str,
    keys: Mapping[str, tuple[str, ...]],
    columns: Mapping[tuple[str, str], Any],
    oids: list[int],
) -> None:
    """Each key is unique by a unique index on (a subset of) its columns, and its text
    columns compare bytes: a nondeterministic collation makes `trace_id = x` match other
    ids, whatever the index."""
    for table, key in keys.items():
        for column in key:
            got = columns[(table, column)]
            if not got.deterministic:
                raise UntrustedStore(
                    f"{schema}.{table}.{column} has the nondeterministic collation "
                    f"{got.collation}: ids that differ would compare equal"
                )
    indexes: dict[str, list[set[str]]] = {}
    for row in (await conn.execute(_UNIQUE_KEYS, {"oids": oids})).all():
        indexes.setdefault(row.relname, []).append(set(row.keys))
    for table, key in keys.items():
        # A unique index on fewer of the key's columns is stricter, and as good.
        if not any(cols and cols <= set(key) for cols in indexes.get(table, [])):
            shared = await _shared_key(conn, schema, table, key)
            raise UntrustedStore(
                f"{schema}.{table} has no unique index on ({', '.join(key)}) "
                "(the format's key, which AOS and `run-proof db upgrade` create): "
                f"rows sharing a key could take each other's steps and verdict; {shared}"
            )


# Who holds a shared key, for the refusal's message: the rows' own identity where it has one.
_WHO = {"aos_traces": "tenant_id, run_id", "aos_trace_steps": "tenant_id, run_id"}


async def _shared_key(conn: AsyncConnection, schema: str, table: str, key: tuple[str, ...]) -> str:
    """The first key value that several rows hold, and which rows (a scan, but only on the
    way to a refusal); values shown as repr so that the message stays one line."""
    columns = ", ".join(f"k.{c}" for c in key)
    who = _WHO.get(table)
    rows = f"pg_catalog.array_agg(ARRAY[{who}] ORDER BY {who})" if who else "NULL"
    statement = (
        f"SELECT {columns}, pg_catalog.count(*) AS n, {rows} AS who"  # noqa: S608 - constants
        f" FROM {schema}.{table} k WHERE {' AND '.join(f'k.{c} IS NOT NULL' for c in key)}"
        f" GROUP BY {columns} HAVING pg_catalog.count(*) > 1 ORDER BY {columns} LIMIT 1"
    )
    row = (await conn.execute(text(statement))).first()
    if row is None:
        return "no two rows share one now"
    value = " ".join(f"{c} {getattr(row, c)!r}" for c in key)
    held = f"{value} is held by {row.n} rows"
    if row.who is None:
        return held
    shown = ", ".join(f"tenant {tenant!r} run {run!r}" for tenant, run in row.who[:3])
    return f"{held} ({shown}{', ...' if row.n > 3 else ''})"


async def _raise_missing(conn: AsyncConnection, schema: str, what: str) -> None:
    """StoreNotMigrated when the store's migrations are not at head (db upgrade creates what
    is missing); UntrustedStore when they are, since then something was dropped."""
    # Imported here: alembic is needed only on this path.
    from run_proof_pipeline.store.migrate import VERSION_TABLE, head_revision

    table = f"{schema}.{VERSION_TABLE}"
    current: str | None = None
    present = (
        await conn.execute(text("SELECT pg_catalog.to_regclass(:t) IS NOT NULL"), {"t": table})
    ).scalar_one()
    if present:
        current = (
            await conn.execute(text(f"SELECT max(version_num) FROM {table}"))  # noqa: S608
        ).scalar_one()
    head = head_revision()
    if current != head:
        raise StoreNotMigrated(
            f"the trace store is not migrated: {what} (database at "
            f"{current or 'no run-proof revision'}, code at {head}); run `run-proof db upgrade`"
        )
    raise UntrustedStore(
        f"{what}, although the store is migrated to revision {head}: it was dropped or "
        "renamed; a proof reads only the store's own tables"
    )
