"""Trace store: aos_traces and aos_trace_steps in hash chain format v1, append-only.

On an empty database the tables are created. On a database whose tables AOS's own
migrations created (and AOS's code still writes), they are upgraded in place: no existing
value changes; the columns format v1 needs are added (steps get run_id/tenant_id from their
trace); NOT NULL constraints that would reject a format-v1 row are relaxed, and no others.

A row with `genesis_hash IS NULL` is a legacy trace (AOS's own `root_hash` is not a v1
seal): AOS may go on updating and deleting it, and no v1 rule applies to it. A row with a
genesis hash (native, or adopted by `run-proof adopt`) is append-only.

`planned_changes()` is the whole migration: `upgrade()` executes exactly the changes it
lists, and `run-proof db upgrade --check` prints them and executes none.

AOS as deployed has triggers of its own on these tables (its revisions 052, 083, 126): they
stay in force, with the same definitions; the check names each and says how the upgrade
coexists with it. The one UPDATE of existing rows here, the backfill of run_id/tenant_id of
existing steps, would be refused by AOS's step trigger (it refuses every UPDATE of a step but
an archival): the trigger is lifted for that statement only and restored, in the state it was
in, right after it, inside this revision's transaction (issue 13, item 1). Nobody else sees
it lifted: the change is not committed until it is undone, and the ADD COLUMN before it (or the
DISABLE TRIGGER itself) keeps writers of the table waiting until this revision commits.

Revision ID: 0001
Revises:
"""

from typing import NamedTuple

from alembic import op
from sqlalchemy import text
from sqlalchemy.engine import Connection

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


# NamedTuple, not a dataclass: alembic loads this file without registering it as a module.
class Change(NamedTuple):
    description: str
    # None for a finding the check reports that needs no statement.
    sql: str | None = None


class Column(NamedTuple):
    name: str
    type: str
    # Only when run-proof creates the table; a column added to an existing table is nullable.
    create: str = ""


class ColumnState(NamedTuple):
    name: str
    type: str
    not_null: bool
    has_default: bool


# Column names follow the AOS trace store, so the seed's SQL runs verbatim.
TRACE_COLUMNS = (
    Column("id", "uuid", "PRIMARY KEY DEFAULT gen_random_uuid()"),
    Column("trace_id", "text", "NOT NULL UNIQUE"),
    Column("run_id", "text", "NOT NULL"),
    Column("correlation_id", "text"),
    Column("tenant_id", "text", "NOT NULL"),
    Column("agent_id", "text"),
    Column("plan_id", "text"),
    Column("seed", "bigint"),
    Column("frozen_timestamp", "text"),
    Column("plan", "jsonb"),
    Column("plan_hash", "text"),
    Column("schema_version", "text", "DEFAULT 'hash-chain-v1'"),
    Column("trace", "jsonb"),
    Column("metadata", "jsonb"),
    Column("status", "text", "NOT NULL DEFAULT 'running'"),
    Column("started_at", "timestamptz", "NOT NULL DEFAULT now()"),
    Column("completed_at", "timestamptz"),
    Column("created_at", "timestamptz", "NOT NULL DEFAULT now()"),
    Column("stored_by", "text"),
    Column("genesis_hash", "text"),
    Column("root_hash", "text"),
    Column("chain_length", "integer"),
    Column("seal_seq", "bigint"),
    Column("adopted_at", "timestamptz"),
    # AOS's own root hash of an adopted trace: adoption moves it here, so nothing is lost.
    Column("aos_root_hash", "text"),
)
STEP_COLUMNS = (
    Column("id", "uuid", "PRIMARY KEY DEFAULT gen_random_uuid()"),
    Column("trace_id", "text", "NOT NULL REFERENCES aos_traces (trace_id) ON DELETE CASCADE"),
    Column("run_id", "text", "NOT NULL"),
    Column("tenant_id", "text", "NOT NULL"),
    Column("step_index", "integer", "NOT NULL"),
    Column("skill_id", "text"),
    Column("skill_name", "text"),
    Column("params", "jsonb"),
    Column("status", "text"),
    Column("outcome_category", "text"),
    Column("outcome_code", "text"),
    Column("outcome_data", "jsonb"),
    Column("cost_cents", "double precision"),
    Column("duration_ms", "double precision"),
    Column("retry_count", "integer"),
    Column("input_hash", "text"),
    Column("output_hash", "text"),
    Column("rng_state_before", "text"),
    Column("idempotency_key", "text"),
    Column("replay_behavior", "text", "DEFAULT 'execute'"),
    Column("timestamp", "timestamptz", "NOT NULL DEFAULT now()"),
    Column("prev_hash", "text"),
    Column("step_hash", "text"),
)
STEP_TABLE_CONSTRAINTS = (
    "CONSTRAINT aos_trace_steps_trace_step_key UNIQUE (trace_id, step_index)",
)

# Which NOT NULL columns of an existing table may stay NOT NULL: those every format-v1
# insert fills (the recorder, or the insert triggers below).
ALWAYS_FILLED = {
    "aos_traces": {"trace_id", "run_id", "tenant_id", "status", "started_at", "correlation_id"},
    "aos_trace_steps": {"trace_id", "run_id", "tenant_id", "step_index", "timestamp"},
}
# Columns the recorder writes explicitly, NULL when the producer has no value: a default
# cannot help, so NOT NULL must go (the hash of SQL NULL and JSON null is the same).
WRITTEN_AS_NULL = {
    "aos_traces": {"agent_id", "plan_id", "plan"},
    "aos_trace_steps": {
        "skill_id",
        "skill_name",
        "params",
        "status",
        "outcome_category",
        "outcome_code",
        "outcome_data",
        "cost_cents",
        "duration_ms",
        "retry_count",
    },
}
# Columns the recorder never writes that AOS readers expect non-null: a default keeps them.
DEFAULTS = {
    "aos_traces": {"schema_version": "'hash-chain-v1'", "trace": "'{}'::jsonb"},
    "aos_trace_steps": {},
}

INDEXES = (
    # One format-v1 trace per run; legacy AOS traces may share a run id (AOS allowed it).
    (
        "aos_traces_v1_run_id_key",
        "CREATE UNIQUE INDEX IF NOT EXISTS aos_traces_v1_run_id_key ON aos_traces (run_id)"
        " WHERE genesis_hash IS NOT NULL",
    ),
    (
        "aos_traces_started_at_idx",
        "CREATE INDEX IF NOT EXISTS aos_traces_started_at_idx ON aos_traces (started_at DESC)",
    ),
    (
        "aos_traces_tenant_started_idx",
        "CREATE INDEX IF NOT EXISTS aos_traces_tenant_started_idx"
        " ON aos_traces (tenant_id, started_at DESC)",
    ),
    (
        "aos_traces_seal_seq_idx",
        "CREATE UNIQUE INDEX IF NOT EXISTS aos_traces_seal_seq_idx ON aos_traces (seal_seq)"
        " WHERE seal_seq IS NOT NULL",
    ),
    (
        "aos_trace_steps_run_idx",
        "CREATE INDEX IF NOT EXISTS aos_trace_steps_run_idx ON aos_trace_steps (run_id, step_index)",
    ),
)

FUNCTIONS = """
CREATE SEQUENCE IF NOT EXISTS aos_traces_seal_seq;

-- Whether a format-v1 trace may be deleted (or moved to an archive): never, until the
-- retirement revision (0003) replaces this with "its signed tombstone is in the ledger".
CREATE OR REPLACE FUNCTION run_proof_trace_retired(p_trace_id text) RETURNS boolean
LANGUAGE sql STABLE AS $$ SELECT false $$;

-- AOS inserts steps without run_id/tenant_id; the seed's Step 2 counts steps by run_id.
CREATE OR REPLACE FUNCTION run_proof_fill_step_identity() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    parent record;
BEGIN
    IF NEW.run_id IS NULL OR NEW.tenant_id IS NULL THEN
        SELECT t.run_id, t.tenant_id INTO parent FROM aos_traces t WHERE t.trace_id = NEW.trace_id;
        IF FOUND THEN
            NEW.run_id := COALESCE(NEW.run_id, parent.run_id);
            NEW.tenant_id := COALESCE(NEW.tenant_id, parent.tenant_id);
        END IF;
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION run_proof_guard_trace_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- AOS requires a correlation id; the recorder has none of its own.
    NEW.correlation_id := COALESCE(NEW.correlation_id, NEW.run_id);
    IF NEW.genesis_hash IS NOT NULL THEN
        IF NEW.adopted_at IS NOT NULL OR NEW.aos_root_hash IS NOT NULL THEN
            RAISE EXCEPTION 'a new trace is native: adopted_at and aos_root_hash are set by adoption only'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        -- The partial unique index covers format-v1 traces; this covers legacy ones.
        IF EXISTS (SELECT 1 FROM aos_traces t WHERE t.run_id = NEW.run_id AND t.genesis_hash IS NULL) THEN
            RAISE EXCEPTION 'run % already has a legacy trace', NEW.run_id
                USING ERRCODE = 'unique_violation';
        END IF;
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION run_proof_guard_step_change() RETURNS trigger
LANGUAGE plpgsql AS $$
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

CREATE OR REPLACE FUNCTION run_proof_guard_trace_change() RETURNS trigger
LANGUAGE plpgsql AS $$
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

# ENABLE ALWAYS keeps the triggers firing under session_replication_role = replica, which a
# table owner can set.
TRIGGERS = (
    (
        "aos_trace_steps",
        "aos_trace_steps_fill_identity",
        "BEFORE INSERT",
        "ROW",
        "run_proof_fill_step_identity",
    ),
    (
        "aos_trace_steps",
        "aos_trace_steps_append_only",
        "BEFORE UPDATE OR DELETE",
        "ROW",
        "run_proof_guard_step_change",
    ),
    (
        "aos_trace_steps",
        "aos_trace_steps_no_truncate",
        "BEFORE TRUNCATE",
        "STATEMENT",
        "run_proof_guard_step_change",
    ),
    (
        "aos_traces",
        "aos_traces_guard_insert",
        "BEFORE INSERT",
        "ROW",
        "run_proof_guard_trace_insert",
    ),
    (
        "aos_traces",
        "aos_traces_seal_once",
        "BEFORE UPDATE OR DELETE",
        "ROW",
        "run_proof_guard_trace_change",
    ),
    (
        "aos_traces",
        "aos_traces_no_truncate",
        "BEFORE TRUNCATE",
        "STATEMENT",
        "run_proof_guard_trace_change",
    ),
)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _create_table(table: str, columns: tuple[Column, ...], extra: tuple[str, ...] = ()) -> str:
    lines = [f"{_quoted(c.name)} {c.type} {c.create}".rstrip() for c in columns] + list(extra)
    return f"CREATE TABLE {table} (\n    " + ",\n    ".join(lines) + "\n)"


def _columns(connection: Connection, table: str) -> list[ColumnState] | None:
    exists = connection.execute(
        text("SELECT to_regclass(:t) IS NOT NULL"), {"t": table}
    ).scalar_one()
    if not exists:
        return None
    rows = connection.execute(
        text(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atthasdef"
            " FROM pg_attribute a WHERE a.attrelid = to_regclass(:t)"
            " AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
        ),
        {"t": table},
    ).all()
    return [ColumnState(r[0], r[1], r[2], r[3]) for r in rows]


def _count(connection: Connection, sql: str) -> int:
    return int(connection.execute(text(sql)).scalar_one())


def _adapt_table(
    table: str, existing: list[ColumnState], wanted: tuple[Column, ...]
) -> tuple[list[Change], list[ColumnState]]:
    """Changes that make an existing table take format-v1 rows; and its columns after them."""
    changes: list[Change] = []
    after: list[ColumnState] = []
    for col in existing:
        if col.not_null and col.name not in ALWAYS_FILLED[table]:
            if col.name in WRITTEN_AS_NULL[table] or (
                not col.has_default and col.name not in DEFAULTS[table]
            ):
                changes.append(
                    Change(
                        f"{table}.{col.name}: drop NOT NULL (format-v1 rows may leave it empty)",
                        f"ALTER TABLE {table} ALTER COLUMN {_quoted(col.name)} DROP NOT NULL",
                    )
                )
                col = ColumnState(col.name, col.type, False, col.has_default)
            elif not col.has_default:
                default = DEFAULTS[table][col.name]
                changes.append(
                    Change(
                        f"{table}.{col.name}: default {default} (for format-v1 rows)",
                        f"ALTER TABLE {table} ALTER COLUMN {_quoted(col.name)} SET DEFAULT {default}",
                    )
                )
                col = ColumnState(col.name, col.type, True, True)
        after.append(col)
    present = {c.name for c in existing}
    for column in wanted:
        if column.name not in present:
            changes.append(
                Change(
                    f"{table}: add column {column.name} {column.type}",
                    f"ALTER TABLE {table} ADD COLUMN {_quoted(column.name)} {column.type}",
                )
            )
            after.append(ColumnState(column.name, column.type, False, False))
    return changes, after


def _adapt_archive(existing: list[ColumnState], traces_after: list[ColumnState]) -> list[Change]:
    """aos_traces_archive must keep taking `INSERT ... SELECT * FROM aos_traces` (AOS's
    retention): the same columns in the same order, and nullable where aos_traces is."""
    changes: list[Change] = []
    nullable = {c.name for c in traces_after if not c.not_null}
    for col in existing:
        if col.not_null and col.name in nullable:
            changes.append(
                Change(
                    f"aos_traces_archive.{col.name}: drop NOT NULL (as in aos_traces)",
                    f"ALTER TABLE aos_traces_archive ALTER COLUMN {_quoted(col.name)} DROP NOT NULL",
                )
            )
    present = {c.name for c in existing}
    for col in traces_after:
        if col.name not in present:
            changes.append(
                Change(
                    f"aos_traces_archive: add column {col.name} {col.type} (as in aos_traces)",
                    f"ALTER TABLE aos_traces_archive ADD COLUMN {_quoted(col.name)} {col.type}",
                )
            )
    return changes


class Trigger(NamedTuple):
    table: str
    name: str
    definition: str
    # pg_trigger.tgenabled: O (origin), A (always), R (replica), D (disabled).
    enabled: str
    fires_on_update: bool


# Triggers run-proof creates on AOS's tables (here and in later revisions); any other is
# someone else's, AOS's own in an AOS database.
RUN_PROOF_TRIGGERS = {name for _, name, *_ in TRIGGERS} | {
    "aos_trace_steps_not_after_seal",
    "aos_traces_ledger_on_seal",
    "aos_traces_ledger_on_insert",
    "aos_traces_ledger_on_adoption",
    "aos_traces_ids_once_on_insert",
    "aos_traces_ids_once_on_adoption",
}
# How the upgrade coexists with each trigger of AOS's migrations (docs/existing-aos-database.md).
LIFTED_FOR_BACKFILL = (
    " kept in force; the upgrade lifts it for its run_id/tenant_id backfill only (below) and"
    " restores it before this revision commits; AOS's inserts never fire it"
)
# AOS's step triggers that refuse the backfill (its revision 083's, and 052's before it): the
# only triggers the upgrade ever lifts (issue 13, item 1).
AOS_STEP_UPDATE_TRIGGERS = {
    "prevent_trace_step_update": (
        "AOS's step immutability, refuses every UPDATE of a step but an archival:"
        + LIFTED_FOR_BACKFILL
    ),
    "enforce_trace_step_immutability": (
        "AOS's step immutability (its revision 052), refuses every UPDATE of a step:"
        + LIFTED_FOR_BACKFILL
    ),
}
AOS_TRIGGER_ROLES = {
    **AOS_STEP_UPDATE_TRIGGERS,
    "prevent_trace_update": (
        "AOS's trace immutability, passes an archival or a completion (status, completed_at,"
        " metadata) and refuses a change to any other AOS column, root_hash included: kept in"
        " force; the upgrade updates no trace row, and run-proof's BEFORE UPDATE trigger"
        " aos_traces_seal_once, which fires before it (name order), changes only run-proof's"
        " columns of a legacy trace. It also refuses run-proof's own writes of root_hash"
        " (sealing a native run, run-proof adopt) on this database"
    ),
    "enforce_trace_immutability": (
        "AOS's trace immutability (its revision 052): kept in force; the upgrade updates no"
        " trace row"
    ),
    "enforce_trace_step_delete_restriction": (
        "AOS's rule that a step goes only by its trace's cascade: kept in force; run-proof's"
        " step guard allows the same cascade"
    ),
    "enforce_trace_delete_restriction": (
        "AOS's rule that a trace is deleted only once a copy is in aos_traces_archive: kept in"
        " force; the upgrade gives aos_traces_archive the columns of aos_traces, in order, so"
        " AOS's retention (INSERT INTO aos_traces_archive SELECT *, then DELETE) can copy first"
    ),
}
_ENABLE = {"O": "ENABLE", "A": "ENABLE ALWAYS", "R": "ENABLE REPLICA"}


def _foreign_triggers(connection: Connection) -> list[Trigger]:
    rows = connection.execute(
        text(
            "SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled::text,"
            " (t.tgtype & 16) <> 0"
            " FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " WHERE NOT t.tgisinternal AND t.tgrelid = ANY(ARRAY["
            "to_regclass('aos_traces'), to_regclass('aos_trace_steps'),"
            " to_regclass('aos_traces_archive')])"
            " ORDER BY c.relname, t.tgname"
        )
    ).all()
    return [Trigger(*row) for row in rows if row[1] not in RUN_PROOF_TRIGGERS]


def _trigger_findings(triggers: list[Trigger], steps_to_fill: int) -> list[Change]:
    changes = []
    for trigger in triggers:
        role = AOS_TRIGGER_ROLES.get(
            trigger.name, "not run-proof's: kept in force, with the same definition"
        )
        if (
            trigger.name not in AOS_STEP_UPDATE_TRIGGERS
            and trigger.table == "aos_trace_steps"
            and trigger.fires_on_update
            and trigger.enabled != "D"
            and steps_to_fill
        ):
            role += (
                f"; it fires on the backfill's UPDATE of {steps_to_fill} steps, and if it"
                " refuses it the upgrade stops and changes nothing"
            )
        state = "disabled" if trigger.enabled == "D" else _ENABLE[trigger.enabled]
        changes.append(Change(f"found trigger {trigger.name} on {trigger.table} ({state}): {role}"))
    return changes


def _lifted_for_backfill(triggers: list[Trigger]) -> list[Trigger]:
    """AOS's step triggers, where enabled: they would refuse the backfill's UPDATE."""
    return [
        t
        for t in triggers
        if t.table == "aos_trace_steps" and t.name in AOS_STEP_UPDATE_TRIGGERS and t.enabled != "D"
    ]


def _steps_to_fill(connection: Connection, existing: list[ColumnState] | None) -> int:
    """Existing steps the backfill gives a run_id/tenant_id."""
    if existing is None:
        return 0
    names = {c.name for c in existing}
    missing_filter = (
        "TRUE" if not {"run_id", "tenant_id"} <= names else "(run_id IS NULL OR tenant_id IS NULL)"
    )
    return _count(
        connection,
        f"SELECT count(*) FROM aos_trace_steps WHERE trace_id IS NOT NULL AND {missing_filter}",  # noqa: S608
    )


def _step_identity(
    connection: Connection, existing: list[ColumnState], triggers: list[Trigger]
) -> list[Change]:
    """Backfill run_id/tenant_id of existing steps from their trace, then require them."""
    to_fill = _steps_to_fill(connection, existing)
    changes: list[Change] = []
    lifted = _lifted_for_backfill(triggers) if to_fill else []
    for trigger in lifted:
        changes.append(
            Change(
                f"aos_trace_steps: lift trigger {trigger.name} for the backfill below only,"
                " inside this revision's transaction (no other session sees it lifted: the"
                " change is not committed, and the table stays locked against writers)",
                f"ALTER TABLE aos_trace_steps DISABLE TRIGGER {_quoted(trigger.name)}",
            )
        )
    if to_fill:
        changes.append(
            Change(
                f"aos_trace_steps: fill run_id and tenant_id of {to_fill} existing steps from their trace"
                " (no other value changes)",
                "UPDATE aos_trace_steps s SET run_id = COALESCE(s.run_id, t.run_id),"
                " tenant_id = COALESCE(s.tenant_id, t.tenant_id)"
                " FROM aos_traces t WHERE s.trace_id = t.trace_id"
                " AND (s.run_id IS NULL OR s.tenant_id IS NULL)",
            )
        )
    for trigger in lifted:
        changes.append(
            Change(
                f"aos_trace_steps: restore trigger {trigger.name} as it was"
                f" ({_ENABLE[trigger.enabled]}), before this revision commits",
                f"ALTER TABLE aos_trace_steps {_ENABLE[trigger.enabled]} TRIGGER"
                f" {_quoted(trigger.name)}",
            )
        )
    orphans = _count(connection, "SELECT count(*) FROM aos_trace_steps WHERE trace_id IS NULL")
    for name in ("run_id", "tenant_id"):
        if orphans:
            changes.append(
                Change(f"aos_trace_steps.{name}: stays nullable ({orphans} steps have no trace_id)")
            )
        else:
            changes.append(
                Change(
                    f"aos_trace_steps.{name}: set NOT NULL (filled on insert by a trigger)",
                    f"ALTER TABLE aos_trace_steps ALTER COLUMN {name} SET NOT NULL",
                )
            )
    return changes


def _existing_tables(connection: Connection) -> list[Change]:
    counts = []
    for table in ("aos_traces", "aos_trace_steps", "aos_traces_archive"):
        if _columns(connection, table) is not None:
            counts.append(f"{table} ({_count(connection, f'SELECT count(*) FROM {table}')} rows)")  # noqa: S608
    return [
        Change(
            "found existing AOS tables " + ", ".join(counts) + ": upgrading them in place;"
            " every existing row keeps its values, its traces stay legacy"
            " (UNSUPPORTED until `run-proof adopt`)"
        )
    ]


def planned_changes(connection: Connection) -> list[Change]:
    """Every change this revision makes to the database `connection` is on; reads only."""
    traces = _columns(connection, "aos_traces")
    steps = _columns(connection, "aos_trace_steps")
    changes: list[Change] = []
    triggers: list[Trigger] = []
    if traces is not None or steps is not None:
        changes += _existing_tables(connection)
        triggers = _foreign_triggers(connection)
        changes += _trigger_findings(triggers, _steps_to_fill(connection, steps))
    if traces is None:
        changes.append(
            Change("create table aos_traces", _create_table("aos_traces", TRACE_COLUMNS))
        )
        traces_after = [
            ColumnState(c.name, c.type, "NOT NULL" in c.create, False) for c in TRACE_COLUMNS
        ]
    else:
        adapted, traces_after = _adapt_table("aos_traces", traces, TRACE_COLUMNS)
        changes += adapted
    archive = _columns(connection, "aos_traces_archive")
    if archive is not None:
        changes += _adapt_archive(archive, traces_after)
    if steps is None:
        changes.append(
            Change(
                "create table aos_trace_steps",
                _create_table("aos_trace_steps", STEP_COLUMNS, STEP_TABLE_CONSTRAINTS),
            )
        )
    else:
        adapted, _ = _adapt_table("aos_trace_steps", steps, STEP_COLUMNS)
        changes += adapted
        changes += _step_identity(connection, steps, triggers)
    for name, sql in INDEXES:
        if connection.execute(text("SELECT to_regclass(:n) IS NULL"), {"n": name}).scalar_one():
            changes.append(Change(f"create index {name}", sql))
    changes.append(
        Change(
            "create functions run_proof_trace_retired, run_proof_fill_step_identity,"
            " run_proof_guard_trace_insert, run_proof_guard_step_change,"
            " run_proof_guard_trace_change, sequence aos_traces_seal_seq",
            FUNCTIONS,
        )
    )
    for table, name, timing, level, function in TRIGGERS:
        changes.append(
            Change(
                f"create trigger {name} ({timing} ON {table}, ENABLE ALWAYS)",
                f"DROP TRIGGER IF EXISTS {name} ON {table};"
                f" CREATE TRIGGER {name} {timing} ON {table} FOR EACH {level}"
                f" EXECUTE FUNCTION {function}();"
                f" ALTER TABLE {table} ENABLE ALWAYS TRIGGER {name}",
            )
        )
    return changes


def upgrade() -> None:
    for change in planned_changes(op.get_bind()):
        if change.sql is not None:
            op.execute(change.sql)


def downgrade() -> None:
    raise NotImplementedError("the trace store is append-only; it is never migrated down")
