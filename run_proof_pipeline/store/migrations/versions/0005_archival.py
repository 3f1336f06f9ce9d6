"""Archival of format-v1 traces and steps: `archived_at` from NULL to a timestamp passes.

Revision ID: 0005
Revises: 0004

AOS archives a run by `UPDATE aos_traces SET archived_at = now() WHERE trace_id = ...` and
the same on `aos_trace_steps` (its revision 080; issue 13, item 5). Until this revision the
guards of 0001 refused every UPDATE of a format-v1 step, and every UPDATE of a format-v1 trace
but its seal, so archiving a proved run failed. `archived_at` is a lifecycle column: format v1
hashes a fixed list of columns (integrity/records.py, docs/hash-chain-v1.md), archived_at is
not among them, so an archival leaves every proof as it was.

The guards `run_proof_guard_step_change` and `run_proof_guard_trace_change` now let exactly a
pure archival through, on a format-v1 step or trace, sealed or not:
- `archived_at` goes from NULL to a non-NULL value;
- every other column stays as it was, byte for byte: the new row with `archived_at` put back
  to NULL must be binary-equal to the old one (`*=`, record_image_eq). The comparison is
  generic, so a column added later is compared too; a value that is only equal as a number
  (0 and -0, jsonb 1.0 and 1.00) counts as a change; and no session setting enters it (a
  comparison of text forms would depend on `extra_float_digits`).
Un-archiving, archiving again (changing a set `archived_at`), and archiving together with any
other change stay refused, each with its own message (SQLSTATE 42501, as every refusal of the
guards). Any other UPDATE is refused exactly as before, with the same messages.

The rule applies where the table has an `archived_at` column (AOS as deployed has it on both
tables). run-proof adds none: its own schema (0001) has no archival, and adding the column to
AOS's tables where AOS has not (AOS's first migration) would change AOS's schema and its
archive table's `SELECT *` layout for nothing run-proof needs. If the column is added later,
the guard applies to it with no new revision: it looks the column up in the row itself.

Both functions keep what 0001 and 0004 gave them (no SECURITY DEFINER; search_path
`pg_catalog, <schema>, pg_temp`) and now name their relations with the schema. The downgrade
puts back the 0004 definitions exactly (0001's bodies, 0004's search path).
"""

from typing import NamedTuple

from alembic import op
from sqlalchemy.engine import Connection

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


class Change(NamedTuple):
    description: str
    sql: str | None = None


TABLES = ("aos_traces", "aos_trace_steps")
GUARDS = "run_proof_guard_step_change, run_proof_guard_trace_change"

# Both guards decide an UPDATE that changes archived_at the same way (plpgsql, inside the
# format-v1 branch, with old_row/new_row = to_jsonb(OLD)/to_jsonb(NEW)); `{what}` names the row.
ARCHIVAL = """
            IF old_row ? 'archived_at'
               AND (new_row -> 'archived_at') IS DISTINCT FROM (old_row -> 'archived_at') THEN
                IF old_row ->> 'archived_at' IS NOT NULL THEN
                    RAISE EXCEPTION '{what} was archived at %: archived_at is set once; un-archiving or archiving it again is rejected', {args}, old_row ->> 'archived_at'
                        USING ERRCODE = 'insufficient_privilege';
                END IF;
                -- Every other column, byte for byte (record_image_eq: 0 and -0, 1.0 and 1.00
                -- differ), whatever the session's settings.
                unarchived := NEW;
                unarchived.archived_at := NULL;
                IF NOT (unarchived *= OLD) THEN
                    RAISE EXCEPTION 'archiving {what} may set archived_at only: every other column must stay as it is (UPDATE rejected)', {args}
                        USING ERRCODE = 'insufficient_privilege';
                END IF;
                RETURN NEW;
            END IF;"""

STEP_GUARD = (
    """
CREATE OR REPLACE FUNCTION {schema}.run_proof_guard_step_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, {schema}, pg_temp AS $$
DECLARE
    parent_genesis text;
    old_row jsonb;
    new_row jsonb;
    unarchived record;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'aos_trace_steps is append-only: TRUNCATE rejected'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT t.genesis_hash INTO parent_genesis FROM {schema}.aos_traces t WHERE t.trace_id = OLD.trace_id;
    IF NOT FOUND THEN
        -- The trace row is gone already: the ON DELETE CASCADE of a deletion the trace guard
        -- allowed (or a legacy step that never had a trace).
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
    ELSIF parent_genesis IS NOT NULL THEN
        -- AOS's archival (migration 0005): archived_at is not hashed.
        IF TG_OP = 'UPDATE' THEN
            old_row := to_jsonb(OLD);
            new_row := to_jsonb(NEW);"""  # noqa: S608 (identifiers only, quoted by _render)
    + ARCHIVAL.replace("{what}", "step % of trace %").replace(
        "{args}", "OLD.step_index, OLD.trace_id"
    )
    + """
        END IF;
        RAISE EXCEPTION 'aos_trace_steps is append-only: % rejected (trace % is in format v1)', TG_OP, OLD.trace_id
            USING ERRCODE = 'insufficient_privilege';
    ELSIF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    -- A step of a legacy trace is AOS's and unproven, but it must not move into a v1 trace.
    IF EXISTS (SELECT 1 FROM {schema}.aos_traces t WHERE t.trace_id = NEW.trace_id AND t.genesis_hash IS NOT NULL) THEN
        RAISE EXCEPTION 'a step cannot move into trace %, which is in format v1', NEW.trace_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
"""
)

TRACE_GUARD = (
    """
CREATE OR REPLACE FUNCTION {schema}.run_proof_guard_trace_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, {schema}, pg_temp AS $$
DECLARE
    seal_columns text[] := ARRAY['status', 'completed_at', 'root_hash', 'chain_length', 'seal_seq'];
    adoption_columns text[] := ARRAY['genesis_hash', 'root_hash', 'chain_length', 'seal_seq', 'adopted_at', 'aos_root_hash'];
    old_row jsonb;
    new_row jsonb;
    unarchived record;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'aos_traces is append-only: TRUNCATE rejected'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.genesis_hash IS NULL THEN
        -- A legacy trace is AOS's own, unproven row: AOS keeps finishing (UPDATE) and
        -- archiving (DELETE) it. Adoption turns it into a format-v1 trace, adding hashes only.
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        IF NEW.genesis_hash IS NULL THEN
            NEW.seal_seq := NULL;
            NEW.adopted_at := NULL;
            RETURN NEW;
        END IF;
        IF (to_jsonb(NEW) - adoption_columns) IS DISTINCT FROM (to_jsonb(OLD) - adoption_columns) THEN
            RAISE EXCEPTION 'adopting trace % may only add its format-v1 hashes', OLD.trace_id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF NEW.aos_root_hash IS DISTINCT FROM OLD.root_hash THEN
            RAISE EXCEPTION 'adopting trace % must keep AOS''s root hash in aos_root_hash', OLD.trace_id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        -- The database's clock, not the caller's: a proof since adoption says since when.
        NEW.adopted_at := now();
        NEW.seal_seq := CASE WHEN NEW.root_hash IS NULL THEN NULL ELSE nextval({sequence}) END;
        RETURN NEW;
    END IF;
    IF TG_OP = 'DELETE' THEN
        IF {schema}.run_proof_trace_retired(OLD.trace_id) THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'aos_traces is append-only: DELETE rejected (trace % is in format v1; retire it first with run-proof retire)', OLD.trace_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- AOS's archival (migration 0005), sealed or not: archived_at is not hashed.
    old_row := to_jsonb(OLD);
    new_row := to_jsonb(NEW);"""
    + ARCHIVAL.replace("{what}", "trace %").replace("{args}", "OLD.trace_id")
    + """
    IF OLD.root_hash IS NOT NULL THEN
        RAISE EXCEPTION 'trace % is sealed: UPDATE rejected', OLD.trace_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (to_jsonb(NEW) - seal_columns) IS DISTINCT FROM (to_jsonb(OLD) - seal_columns) THEN
        RAISE EXCEPTION 'trace %: only the seal columns (status, completed_at, root_hash, chain_length) may change', OLD.trace_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- A value the database assigns at seal time, so sensors can keep a cursor that
    -- producer clocks (which arrive out of order) cannot move.
    IF NEW.root_hash IS NOT NULL THEN
        NEW.seal_seq := nextval({sequence});
    ELSE
        NEW.seal_seq := NULL;
    END IF;
    RETURN NEW;
END $$;
"""
)

# The definitions 0004 leaves, for the downgrade: 0001's bodies, character for character,
# with the search path 0004 pinned (its PINNED_PATH).
STEP_GUARD_0004 = """
CREATE OR REPLACE FUNCTION {schema}.run_proof_guard_step_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, {schema}, pg_temp AS $$
DECLARE
    parent_genesis text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'aos_trace_steps is append-only: TRUNCATE rejected'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT t.genesis_hash INTO parent_genesis FROM aos_traces t WHERE t.trace_id = OLD.trace_id;
    IF NOT FOUND THEN
        -- The trace row is gone already: the ON DELETE CASCADE of a deletion the trace guard
        -- allowed (or a legacy step that never had a trace).
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
    ELSIF parent_genesis IS NOT NULL THEN
        RAISE EXCEPTION 'aos_trace_steps is append-only: % rejected (trace % is in format v1)', TG_OP, OLD.trace_id
            USING ERRCODE = 'insufficient_privilege';
    ELSIF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    -- A step of a legacy trace is AOS's and unproven, but it must not move into a v1 trace.
    IF EXISTS (SELECT 1 FROM aos_traces t WHERE t.trace_id = NEW.trace_id AND t.genesis_hash IS NOT NULL) THEN
        RAISE EXCEPTION 'a step cannot move into trace %, which is in format v1', NEW.trace_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
"""

TRACE_GUARD_0004 = """
CREATE OR REPLACE FUNCTION {schema}.run_proof_guard_trace_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, {schema}, pg_temp AS $$
DECLARE
    seal_columns text[] := ARRAY['status', 'completed_at', 'root_hash', 'chain_length', 'seal_seq'];
    adoption_columns text[] := ARRAY['genesis_hash', 'root_hash', 'chain_length', 'seal_seq', 'adopted_at', 'aos_root_hash'];
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'aos_traces is append-only: TRUNCATE rejected'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.genesis_hash IS NULL THEN
        -- A legacy trace is AOS's own, unproven row: AOS keeps finishing (UPDATE) and
        -- archiving (DELETE) it. Adoption turns it into a format-v1 trace, adding hashes only.
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        IF NEW.genesis_hash IS NULL THEN
            NEW.seal_seq := NULL;
            NEW.adopted_at := NULL;
            RETURN NEW;
        END IF;
        IF (to_jsonb(NEW) - adoption_columns) IS DISTINCT FROM (to_jsonb(OLD) - adoption_columns) THEN
            RAISE EXCEPTION 'adopting trace % may only add its format-v1 hashes', OLD.trace_id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF NEW.aos_root_hash IS DISTINCT FROM OLD.root_hash THEN
            RAISE EXCEPTION 'adopting trace % must keep AOS''s root hash in aos_root_hash', OLD.trace_id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        -- The database's clock, not the caller's: a proof since adoption says since when.
        NEW.adopted_at := now();
        NEW.seal_seq := CASE WHEN NEW.root_hash IS NULL THEN NULL ELSE nextval('aos_traces_seal_seq') END;
        RETURN NEW;
    END IF;
    IF TG_OP = 'DELETE' THEN
        IF run_proof_trace_retired(OLD.trace_id) THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'aos_traces is append-only: DELETE rejected (trace % is in format v1; retire it first with run-proof retire)', OLD.trace_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.root_hash IS NOT NULL THEN
        RAISE EXCEPTION 'trace % is sealed: UPDATE rejected', OLD.trace_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (to_jsonb(NEW) - seal_columns) IS DISTINCT FROM (to_jsonb(OLD) - seal_columns) THEN
        RAISE EXCEPTION 'trace %: only the seal columns (status, completed_at, root_hash, chain_length) may change', OLD.trace_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- A value the database assigns at seal time, so sensors can keep a cursor that
    -- producer clocks (which arrive out of order) cannot move.
    IF NEW.root_hash IS NOT NULL THEN
        NEW.seal_seq := nextval('aos_traces_seal_seq');
    ELSE
        NEW.seal_seq := NULL;
    END IF;
    RETURN NEW;
END $$;
"""


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _render(template: str, schema_name: str) -> str:
    schema = _quoted(schema_name)
    # nextval() takes the sequence's name as a text literal: the quoted, qualified name.
    sequence = "'" + f"{schema}.aos_traces_seal_seq".replace("'", "''") + "'"
    return template.replace("{schema}", schema).replace("{sequence}", sequence)


def _schema(connection: Connection) -> str:
    """The store's schema: the first one searched but pg_catalog. `current_schema()` would be
    pg_catalog on the connection `--check` reads through (session_pins.proof_search_path)."""
    return str(
        connection.exec_driver_sql(
            "SELECT s FROM unnest(current_schemas(false)) WITH ORDINALITY AS p(s, n)"
            " WHERE s <> 'pg_catalog' ORDER BY n LIMIT 1"
        ).scalar_one()
    )


def _has_archived_at(connection: Connection, schema: str, table: str) -> bool:
    return bool(
        connection.exec_driver_sql(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%(t)s)"
            " AND attname = 'archived_at' AND attnum > 0 AND NOT attisdropped)",
            {"t": f"{_quoted(schema)}.{table}"},
        ).scalar_one()
    )


def planned_changes(connection: Connection) -> list[Change]:
    """Every change this revision makes (`run-proof db upgrade --check` prints them); reads only."""
    schema = _schema(connection)
    changes: list[Change] = []
    for table in TABLES:
        if _has_archived_at(connection, schema, table):
            changes.append(
                Change(
                    f"{table} has archived_at (AOS's archival): a format-v1 row of it may be"
                    " archived, archived_at from NULL to a timestamp with every other column"
                    " unchanged (archived_at is not hashed, proofs stay as they are);"
                    " un-archiving, archiving again, or archiving with any other change stays"
                    " rejected"
                )
            )
        else:
            changes.append(
                Change(
                    f"{table} has no archived_at column: nothing to archive, no column added;"
                    " the same rule applies if one is added later"
                )
            )
    changes.append(
        Change(
            f"replace functions {GUARDS}: the archival rule above; every other UPDATE, DELETE"
            " and TRUNCATE is decided as before, with the same messages (search_path as 0004"
            " pinned it)",
            _render(STEP_GUARD + TRACE_GUARD, schema),
        )
    )
    return changes


def _execute(statements: str) -> None:
    # Straight to psycopg, as 0002 and 0004: the SQL holds `%`, `?` and `::`, which
    # SQLAlchemy's text() and a paramstyle would read. No parameters are passed.
    driver = op.get_bind().connection.driver_connection
    if driver is None:  # SQLAlchemy's type: a proxy whose connection was already closed
        raise RuntimeError("the migration's connection is closed")
    driver.execute(statements)


def upgrade() -> None:
    for change in planned_changes(op.get_bind()):
        if change.sql is not None:
            _execute(change.sql)


def downgrade() -> None:
    """Back to 0004: both guards exactly as 0004 leaves them (no archival)."""
    schema = _schema(op.get_bind())
    _execute(_render(STEP_GUARD_0004 + TRACE_GUARD_0004, schema))
