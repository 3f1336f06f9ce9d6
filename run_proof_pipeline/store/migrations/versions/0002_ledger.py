"""Ledger of run roots (rule 5): every seal appends an entry, whichever writer made it.

Revision ID: 0002
Revises: 0001

The entry's leaf hash is computed here in SQL so the row is complete when written; readers
recompute it in Python from the fields and never trust this column (docs/ledger-v1.md).
Entry numbers (`seq`) are assigned under a transaction-level advisory lock as max + 1, so they
are gapless and follow commit order: a reader never sees entry n+1 without entry n, which a
sequence (bigserial) cannot promise and a signed checkpoint of the prefix needs.
"""

from alembic import op
from psycopg import sql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LEDGER_LOCK_KEY = 0x52_50_4C_45_44_47  # "RPLEDG"

TABLE = """
CREATE TABLE IF NOT EXISTS {schema}.run_proof_ledger (
    seq bigint PRIMARY KEY CHECK (seq >= 1),
    kind text NOT NULL CHECK (kind IN ('seal', 'adoption', 'tombstone')),
    tenant_id text NOT NULL,
    run_id text NOT NULL,
    trace_id text NOT NULL,
    chain_length bigint NOT NULL,
    root_hash text NOT NULL,
    recorded_at timestamptz NOT NULL,
    leaf_hash text NOT NULL
);
CREATE INDEX IF NOT EXISTS run_proof_ledger_run_idx
    ON {schema}.run_proof_ledger (tenant_id, run_id);
"""

# RFC 8785 of the entry, by hand: keys in sorted order, strings through to_json (whose
# escaping -- \\b \\f \\n \\r \\t \\" \\\\ and \\u00xx in lowercase for other controls -- is JCS's),
# the integer in plain decimal, the timestamp in hash-chain v1's form.
LEAF_FUNCTION = """
CREATE OR REPLACE FUNCTION {schema}.run_proof_ledger_leaf(
    p_kind text, p_tenant_id text, p_run_id text, p_trace_id text,
    p_chain_length bigint, p_root_hash text, p_recorded_at timestamptz
) RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog AS $$
SELECT encode(sha256('\\x00'::bytea || convert_to(
    '{{"chain_length":' || p_chain_length::text
    || ',"kind":' || to_json(p_kind)::text
    || ',"recorded_at":' || to_json(
        to_char(p_recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text
    || ',"root_hash":' || to_json(p_root_hash)::text
    || ',"run_id":' || to_json(p_run_id)::text
    || ',"tenant_id":' || to_json(p_tenant_id)::text
    || ',"trace_id":' || to_json(p_trace_id)::text
    || ',"v":1}}', 'UTF8')), 'hex')
$$;
"""

BACKFILL = """
INSERT INTO {schema}.run_proof_ledger
    (seq, kind, tenant_id, run_id, trace_id, chain_length, root_hash, recorded_at, leaf_hash)
SELECT n, 'seal', tenant_id, run_id, trace_id, chain_length, root_hash, now(),
       {schema}.run_proof_ledger_leaf('seal', tenant_id, run_id, trace_id, chain_length,
                                      root_hash, now())
FROM (
    SELECT row_number() OVER (ORDER BY seal_seq NULLS LAST, completed_at, trace_id) AS n, *
    FROM {schema}.aos_traces
    WHERE root_hash IS NOT NULL AND chain_length IS NOT NULL AND genesis_hash IS NOT NULL
) sealed
WHERE NOT EXISTS (SELECT 1 FROM {schema}.run_proof_ledger);
"""

TRIGGERS = """
CREATE OR REPLACE FUNCTION {schema}.run_proof_ledger_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'run_proof_ledger is append-only: % rejected', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

-- Fills in what no client may choose: the position, the time and the leaf hash. Only the
-- seal trigger appends (depth 2): a plain INSERT cannot forge an entry for an unsealed run.
CREATE OR REPLACE FUNCTION {schema}.run_proof_ledger_assign() RETURNS trigger
LANGUAGE plpgsql SET search_path = {schema}, pg_catalog AS $$
BEGIN
    IF pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'run_proof_ledger entries are appended by the seal trigger only'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM pg_advisory_xact_lock({lock_key});
    SELECT coalesce(max(seq), 0) + 1 INTO NEW.seq FROM run_proof_ledger;
    NEW.recorded_at := clock_timestamp();
    NEW.leaf_hash := run_proof_ledger_leaf(NEW.kind, NEW.tenant_id, NEW.run_id, NEW.trace_id,
                                           NEW.chain_length, NEW.root_hash, NEW.recorded_at);
    RETURN NEW;
END $$;

-- SECURITY DEFINER: producers seal without any privilege on the ledger itself.
CREATE OR REPLACE FUNCTION {schema}.run_proof_ledger_record_seal() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_catalog AS $$
BEGIN
    INSERT INTO run_proof_ledger (kind, tenant_id, run_id, trace_id, chain_length, root_hash)
    VALUES ('seal', NEW.tenant_id, NEW.run_id, NEW.trace_id, NEW.chain_length, NEW.root_hash);
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS run_proof_ledger_append_only ON {schema}.run_proof_ledger;
CREATE TRIGGER run_proof_ledger_append_only BEFORE UPDATE OR DELETE ON {schema}.run_proof_ledger
    FOR EACH ROW EXECUTE FUNCTION {schema}.run_proof_ledger_reject_change();
DROP TRIGGER IF EXISTS run_proof_ledger_no_truncate ON {schema}.run_proof_ledger;
CREATE TRIGGER run_proof_ledger_no_truncate BEFORE TRUNCATE ON {schema}.run_proof_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.run_proof_ledger_reject_change();
DROP TRIGGER IF EXISTS run_proof_ledger_assign ON {schema}.run_proof_ledger;
CREATE TRIGGER run_proof_ledger_assign BEFORE INSERT ON {schema}.run_proof_ledger
    FOR EACH ROW EXECUTE FUNCTION {schema}.run_proof_ledger_assign();

DROP TRIGGER IF EXISTS aos_traces_ledger_on_seal ON {schema}.aos_traces;
CREATE TRIGGER aos_traces_ledger_on_seal AFTER UPDATE ON {schema}.aos_traces FOR EACH ROW
    WHEN (OLD.root_hash IS NULL AND NEW.root_hash IS NOT NULL AND NEW.genesis_hash IS NOT NULL)
    EXECUTE FUNCTION {schema}.run_proof_ledger_record_seal();
-- A writer may also insert a trace that is sealed already (e.g. a bulk import).
DROP TRIGGER IF EXISTS aos_traces_ledger_on_insert ON {schema}.aos_traces;
CREATE TRIGGER aos_traces_ledger_on_insert AFTER INSERT ON {schema}.aos_traces FOR EACH ROW
    WHEN (NEW.root_hash IS NOT NULL AND NEW.genesis_hash IS NOT NULL)
    EXECUTE FUNCTION {schema}.run_proof_ledger_record_seal();

-- Whichever client writes: no step joins a sealed format-v1 trace (the recorder checks this
-- too, under its row lock; this covers every other writer).
CREATE OR REPLACE FUNCTION {schema}.run_proof_reject_step_after_seal() RETURNS trigger
LANGUAGE plpgsql SET search_path = {schema}, pg_catalog AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM aos_traces WHERE trace_id = NEW.trace_id
               AND root_hash IS NOT NULL AND genesis_hash IS NOT NULL) THEN
        RAISE EXCEPTION 'trace % is sealed: no step may be appended', NEW.trace_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS aos_trace_steps_not_after_seal ON {schema}.aos_trace_steps;
CREATE TRIGGER aos_trace_steps_not_after_seal BEFORE INSERT ON {schema}.aos_trace_steps
    FOR EACH ROW EXECUTE FUNCTION {schema}.run_proof_reject_step_after_seal();
ALTER TABLE {schema}.aos_trace_steps ENABLE ALWAYS TRIGGER aos_trace_steps_not_after_seal;

ALTER TABLE {schema}.run_proof_ledger ENABLE ALWAYS TRIGGER run_proof_ledger_append_only;
ALTER TABLE {schema}.run_proof_ledger ENABLE ALWAYS TRIGGER run_proof_ledger_no_truncate;
ALTER TABLE {schema}.run_proof_ledger ENABLE ALWAYS TRIGGER run_proof_ledger_assign;
ALTER TABLE {schema}.aos_traces ENABLE ALWAYS TRIGGER aos_traces_ledger_on_seal;
ALTER TABLE {schema}.aos_traces ENABLE ALWAYS TRIGGER aos_traces_ledger_on_insert;
"""


def _run(statements: str, schema: str) -> None:
    # Straight to psycopg: SQLAlchemy's text() would read `:MI` and `:1` in the SQL as
    # bind parameters. The schema is quoted as an identifier; nothing else is interpolated.
    rendered = sql.SQL(statements).format(
        schema=sql.Identifier(schema), lock_key=sql.Literal(LEDGER_LOCK_KEY)
    )
    driver = op.get_bind().connection.driver_connection
    if driver is None:  # SQLAlchemy's type: a proxy whose connection was already closed
        raise RuntimeError("the migration's connection is closed")
    driver.execute(rendered)


def upgrade() -> None:
    schema = op.get_bind().exec_driver_sql("SELECT current_schema()").scalar_one()
    _run(TABLE, schema)
    _run(LEAF_FUNCTION, schema)
    _run(BACKFILL, schema)
    _run(TRIGGERS, schema)


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only; it is never migrated down")
