"""Run ids and trace ids are recorded once: a retired run's ids never go to a new trace.

Revision ID: 0004
Revises: 0003

Before this revision a run could be recorded, sealed, retired with a signed tombstone, deleted,
and then recorded again under the same tenant and run id: the ledger then held two seals of
one run id (`seal`, `tombstone`, `seal`) and every check after it was FAILED ("sealed more than
once") for good. The ledger cannot tell two lives of an id apart, and neither can a reader
given only the id, so the id is refused instead (docs/ledger-v1.md, "Ids are recorded once").

`run_proof_run_ids` keeps the tenant, run id and trace id of every trace that ever entered
format v1 (inserted with a genesis hash, or adopted), and is append-only. A trigger AFTER
INSERT on `aos_traces` refuses, whichever client writes:
- a format-v1 trace (or an adoption) whose tenant and run id, or whose trace id, is there;
- a legacy trace whose trace id is there: trace ids are unique over all rows of aos_traces
  (AOS's own rule), and this keeps them unique over time. Run ids stay AOS's: a legacy row may
  share one (AOS allowed that), but it can never be adopted as the retired run.
The refusal is SQLSTATE 23505 (unique_violation) with constraint name `run_proof_run_id_used`
or `run_proof_trace_id_used` (psycopg: `exc.diag.constraint_name`), so a client that maps
duplicate keys keeps working and one that wants the reason can tell it apart.

Concurrency: the ids are claimed by a plain INSERT into the table's unique constraints, so the
refusal does not depend on the writer's snapshot. A REPEATABLE READ writer whose snapshot is
older than the earlier run's whole life (insert, seal, retirement, deletion) does not see the
claim, but its INSERT still collides with it in the unique index (the message is then
PostgreSQL's own for that constraint, the SQLSTATE and constraint name the same). The triggers
run AFTER the row is inserted, so a duplicate of a trace that is still there keeps the error
it always had (aos_traces' own unique keys), and fire before the ledger's AFTER triggers
(trigger names sort before `aos_traces_ledger_*`).

The functions are SECURITY DEFINER (writers need no privilege on run_proof_run_ids) with
`search_path = pg_catalog, <schema>, pg_temp` and schema-qualified relations: a writer's
temporary table cannot stand in for the store's (pg_temp is searched first for relations
unless it is named, and last here). Both triggers are ENABLE ALWAYS; only the table owner can
disable them, and a reuse forced that way is FAILED by `checkpoint verify` (ledger/audit.py).

The trigger functions of 0001-0003 that read or write relations get the same search path.
Before, they resolved names under the caller's search path (0001) or with pg_temp searched
first (0002, 0003), so any client could make them use its own temporary objects: a temporary
sequence `aos_traces_seal_seq` chose the seal_seq of its seals (the sensors' cursor), a
temporary table `run_proof_retirements` holding a trace id let a DELETE of that unretired
format-v1 trace through, a temporary `run_proof_ledger` took the seal's ledger entry.
"""

from alembic import op
from psycopg import sql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

RUN_ID_CONSTRAINT = "run_proof_run_id_used"
TRACE_ID_CONSTRAINT = "run_proof_trace_id_used"

TABLE = """
CREATE TABLE IF NOT EXISTS {schema}.run_proof_run_ids (
    tenant_id text NOT NULL,
    run_id text NOT NULL,
    trace_id text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT run_proof_run_id_used UNIQUE (tenant_id, run_id),
    CONSTRAINT run_proof_trace_id_used UNIQUE (trace_id)
);
"""

# Every id the ledger ever recorded (a seal, an adoption or a tombstone: its trace may be gone)
# and every format-v1 trace still there (an unsealed one has no entry yet). A store reused
# before this revision holds an id twice: the first claim stands, the ledger keeps the alarm.
BACKFILL = """
INSERT INTO {schema}.run_proof_run_ids (tenant_id, run_id, trace_id)
SELECT ids.tenant_id, ids.run_id, ids.trace_id FROM (
    SELECT l.tenant_id, l.run_id, l.trace_id, l.seq AS position FROM {schema}.run_proof_ledger l
    UNION ALL
    SELECT t.tenant_id, t.run_id, t.trace_id, NULL FROM {schema}.aos_traces t
    WHERE t.genesis_hash IS NOT NULL
) ids
ORDER BY ids.position NULLS LAST
ON CONFLICT DO NOTHING;
"""

FUNCTIONS = """
CREATE OR REPLACE FUNCTION {schema}.run_proof_record_ids_once() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, {schema}, pg_temp AS $$
DECLARE
    v1 boolean := NEW.genesis_hash IS NOT NULL;
    earlier record;
    tombstone bigint;
    retired text := '';
    refused_by text;
    refusal text;
BEGIN
    SELECT u.tenant_id, u.run_id, u.trace_id,
           (v1 AND u.tenant_id = NEW.tenant_id AND u.run_id = NEW.run_id) AS same_run
    INTO earlier FROM {schema}.run_proof_run_ids u
    WHERE u.trace_id = NEW.trace_id
       OR (v1 AND u.tenant_id = NEW.tenant_id AND u.run_id = NEW.run_id)
    ORDER BY 4 DESC LIMIT 1;
    IF FOUND THEN
        SELECT r.ledger_seq INTO tombstone FROM {schema}.run_proof_retirements r
        WHERE r.trace_id = earlier.trace_id;
        IF earlier.same_run THEN
            IF tombstone IS NOT NULL THEN
                retired := format(' and retired (tombstone: ledger entry %s)', tombstone);
            END IF;
            refused_by := 'run_proof_run_id_used';
            refusal := format('run %L of tenant %L was recorded before (trace %L)%s: a run id '
                              'is recorded once, even after its run is retired or removed; '
                              'record this run under a new run id',
                              NEW.run_id, NEW.tenant_id, earlier.trace_id, retired);
        ELSE
            -- Of another run, maybe of another tenant: only the trace id is named, and whether
            -- and where it was retired only to a writer of the same tenant
            -- (docs/threat-model.md, "Tenant isolation": no writer learns of another tenant's
            -- runs).
            IF tombstone IS NOT NULL AND earlier.tenant_id = NEW.tenant_id THEN
                retired := format(' that was retired (tombstone: ledger entry %s)', tombstone);
            END IF;
            refused_by := 'run_proof_trace_id_used';
            refusal := format('trace id %L was used before by a format-v1 trace%s: a trace id '
                              'is used once, even after its trace is retired or removed; give '
                              'this trace a new trace id', NEW.trace_id, retired);
        END IF;
        RAISE EXCEPTION USING
            ERRCODE = 'unique_violation', CONSTRAINT = refused_by, TABLE = 'aos_traces',
            MESSAGE = refusal;
    END IF;
    IF v1 THEN
        -- Not seen in this snapshot; the unique constraints still refuse a claim made since.
        INSERT INTO {schema}.run_proof_run_ids (tenant_id, run_id, trace_id)
        VALUES (NEW.tenant_id, NEW.run_id, NEW.trace_id);
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION {schema}.run_proof_run_ids_reject_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, {schema}, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'run_proof_run_ids is append-only: % rejected', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
"""

# (table, trigger, timing and level, condition, function)
TRIGGERS = (
    (
        "aos_traces",
        "aos_traces_ids_once_on_insert",
        "AFTER INSERT",
        "FOR EACH ROW",
        "",
        "run_proof_record_ids_once",
    ),
    (
        "aos_traces",
        "aos_traces_ids_once_on_adoption",
        "AFTER UPDATE",
        "FOR EACH ROW",
        "WHEN (OLD.genesis_hash IS NULL AND NEW.genesis_hash IS NOT NULL)",
        "run_proof_record_ids_once",
    ),
    (
        "run_proof_run_ids",
        "run_proof_run_ids_append_only",
        "BEFORE UPDATE OR DELETE",
        "FOR EACH ROW",
        "",
        "run_proof_run_ids_reject_change",
    ),
    (
        "run_proof_run_ids",
        "run_proof_run_ids_no_truncate",
        "BEFORE TRUNCATE",
        "FOR EACH STATEMENT",
        "",
        "run_proof_run_ids_reject_change",
    ),
)


# (function, argument types, the search_path 0001-0003 gave it: None for the caller's).
PINNED_FUNCTIONS = (
    ("run_proof_fill_step_identity", "", None),
    ("run_proof_guard_trace_insert", "", None),
    ("run_proof_guard_step_change", "", None),
    ("run_proof_guard_trace_change", "", None),
    ("run_proof_ledger_assign", "", "{schema}, pg_catalog"),
    ("run_proof_ledger_record_seal", "", "{schema}, pg_catalog"),
    ("run_proof_reject_step_after_seal", "", "{schema}, pg_catalog"),
    ("run_proof_ledger_record_adoption", "", "{schema}, pg_catalog"),
    ("run_proof_record_retirement", "", "{schema}, pg_catalog"),
    ("run_proof_trace_retired", "text", "{schema}, pg_catalog"),
)
PINNED_PATH = "pg_catalog, {schema}, pg_temp"


def _run(statements: sql.Composable) -> None:
    # Straight to psycopg, as 0002: the SQL holds `%` and `::`, which SQLAlchemy's text() and
    # the DB-API paramstyle would read; identifiers are quoted by psycopg.
    driver = op.get_bind().connection.driver_connection
    if driver is None:  # SQLAlchemy's type: a proxy whose connection was already closed
        raise RuntimeError("the migration's connection is closed")
    driver.execute(statements)


def _schema() -> sql.Identifier:
    return sql.Identifier(op.get_bind().exec_driver_sql("SELECT current_schema()").scalar_one())


def _trigger_statements(schema: sql.Identifier) -> list[sql.Composable]:
    statements: list[sql.Composable] = []
    for table, name, timing, level, condition, function in TRIGGERS:
        names = {
            "schema": schema,
            "table": sql.Identifier(table),
            "name": sql.Identifier(name),
            "function": sql.Identifier(function),
        }
        statements += [
            sql.SQL("DROP TRIGGER IF EXISTS {name} ON {schema}.{table}").format(**names),
            sql.SQL(
                f"CREATE TRIGGER {{name}} {timing} ON {{schema}}.{{table}} {level} {condition}"
                " EXECUTE FUNCTION {schema}.{function}()"
            ).format(**names),
            # Fires under session_replication_role = replica too (as 0001-0003).
            sql.SQL("ALTER TABLE {schema}.{table} ENABLE ALWAYS TRIGGER {name}").format(**names),
        ]
    return statements


def _set_search_path(schema: sql.Identifier, function: str, args: str, path: str | None) -> None:
    setting = (
        sql.SQL("RESET search_path")
        if path is None
        else sql.SQL("SET search_path = ") + sql.SQL(path).format(schema=schema)
    )
    _run(
        sql.SQL("ALTER FUNCTION {schema}.{function}({args}) ").format(
            schema=schema, function=sql.Identifier(function), args=sql.SQL(args)
        )
        + setting
    )


def upgrade() -> None:
    schema = _schema()
    for statements in (TABLE, FUNCTIONS, BACKFILL):
        _run(sql.SQL(statements).format(schema=schema))
    for statement in _trigger_statements(schema):
        _run(statement)
    for function, args, _ in PINNED_FUNCTIONS:
        _set_search_path(schema, function, args, PINNED_PATH)


def downgrade() -> None:
    """Back to 0003: the functions of 0001-0003 get their old search paths back, the reuse
    guard goes, and with it the record of used ids (a new upgrade rebuilds it from the ledger
    and the format-v1 traces, which keep every id that matters)."""
    schema = _schema()
    for function, args, path in PINNED_FUNCTIONS:
        _set_search_path(schema, function, args, path)
    for table, name, *_ in TRIGGERS:
        _run(
            sql.SQL("DROP TRIGGER IF EXISTS {name} ON {schema}.{table}").format(
                name=sql.Identifier(name), schema=schema, table=sql.Identifier(table)
            )
        )
    _run(sql.SQL("DROP TABLE IF EXISTS {schema}.run_proof_run_ids").format(schema=schema))
    for function in ("run_proof_record_ids_once", "run_proof_run_ids_reject_change"):
        _run(
            sql.SQL("DROP FUNCTION IF EXISTS {schema}.{function}()").format(
                schema=schema, function=sql.Identifier(function)
            )
        )
