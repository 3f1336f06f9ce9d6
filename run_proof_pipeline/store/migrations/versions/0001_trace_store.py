"""Trace store: aos_traces and aos_trace_steps in hash chain format v1, append-only.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Column names and types follow the AOS trace store, so the seed's SQL runs verbatim.
SCHEMA = """
CREATE TABLE IF NOT EXISTS aos_traces (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    trace_id text NOT NULL UNIQUE,
    run_id text NOT NULL,
    correlation_id text,
    tenant_id text NOT NULL,
    agent_id text,
    plan_id text,
    seed bigint,
    frozen_timestamp text,
    plan jsonb,
    plan_hash text,
    schema_version text DEFAULT 'hash-chain-v1',
    trace jsonb,
    metadata jsonb,
    status text NOT NULL DEFAULT 'running',
    started_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    stored_by text,
    genesis_hash text,
    root_hash text,
    chain_length integer,
    seal_seq bigint,
    adopted_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS aos_traces_run_id_key ON aos_traces (run_id);
CREATE INDEX IF NOT EXISTS aos_traces_started_at_idx ON aos_traces (started_at DESC);
CREATE INDEX IF NOT EXISTS aos_traces_tenant_started_idx ON aos_traces (tenant_id, started_at DESC);
CREATE UNIQUE INDEX IF NOT EXISTS aos_traces_seal_seq_idx ON aos_traces (seal_seq)
    WHERE seal_seq IS NOT NULL;
CREATE SEQUENCE IF NOT EXISTS aos_traces_seal_seq;

CREATE TABLE IF NOT EXISTS aos_trace_steps (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    trace_id text NOT NULL REFERENCES aos_traces (trace_id) ON DELETE CASCADE,
    run_id text NOT NULL,
    tenant_id text NOT NULL,
    step_index integer NOT NULL,
    skill_id text,
    skill_name text,
    params jsonb,
    status text,
    outcome_category text,
    outcome_code text,
    outcome_data jsonb,
    cost_cents double precision,
    duration_ms double precision,
    retry_count integer,
    input_hash text,
    output_hash text,
    rng_state_before text,
    idempotency_key text,
    replay_behavior text DEFAULT 'execute',
    "timestamp" timestamptz NOT NULL DEFAULT now(),
    prev_hash text,
    step_hash text,
    CONSTRAINT aos_trace_steps_trace_step_key UNIQUE (trace_id, step_index)
);
CREATE INDEX IF NOT EXISTS aos_trace_steps_run_idx ON aos_trace_steps (run_id, step_index);
"""

# Append-only in the database itself, whichever client writes. ENABLE ALWAYS keeps the
# triggers firing under session_replication_role = replica, which a table owner can set.
TRIGGERS = """
CREATE OR REPLACE FUNCTION run_proof_reject_step_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'aos_trace_steps is append-only: % rejected', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE OR REPLACE FUNCTION run_proof_guard_trace_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    seal_columns text[] := ARRAY['status', 'completed_at', 'root_hash', 'chain_length', 'seal_seq'];
BEGIN
    IF TG_OP <> 'UPDATE' THEN
        RAISE EXCEPTION 'aos_traces is append-only: % rejected', TG_OP
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

DROP TRIGGER IF EXISTS aos_trace_steps_append_only ON aos_trace_steps;
CREATE TRIGGER aos_trace_steps_append_only BEFORE UPDATE OR DELETE ON aos_trace_steps
    FOR EACH ROW EXECUTE FUNCTION run_proof_reject_step_change();
DROP TRIGGER IF EXISTS aos_trace_steps_no_truncate ON aos_trace_steps;
CREATE TRIGGER aos_trace_steps_no_truncate BEFORE TRUNCATE ON aos_trace_steps
    FOR EACH STATEMENT EXECUTE FUNCTION run_proof_reject_step_change();
DROP TRIGGER IF EXISTS aos_traces_seal_once ON aos_traces;
CREATE TRIGGER aos_traces_seal_once BEFORE UPDATE OR DELETE ON aos_traces
    FOR EACH ROW EXECUTE FUNCTION run_proof_guard_trace_change();
DROP TRIGGER IF EXISTS aos_traces_no_truncate ON aos_traces;
CREATE TRIGGER aos_traces_no_truncate BEFORE TRUNCATE ON aos_traces
    FOR EACH STATEMENT EXECUTE FUNCTION run_proof_guard_trace_change();

ALTER TABLE aos_trace_steps ENABLE ALWAYS TRIGGER aos_trace_steps_append_only;
ALTER TABLE aos_trace_steps ENABLE ALWAYS TRIGGER aos_trace_steps_no_truncate;
ALTER TABLE aos_traces ENABLE ALWAYS TRIGGER aos_traces_seal_once;
ALTER TABLE aos_traces ENABLE ALWAYS TRIGGER aos_traces_no_truncate;
"""


def upgrade() -> None:
    op.execute(SCHEMA)
    op.execute(TRIGGERS)


def downgrade() -> None:
    raise NotImplementedError("the trace store is append-only; it is never migrated down")
