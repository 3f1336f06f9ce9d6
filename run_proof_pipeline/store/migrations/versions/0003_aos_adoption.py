"""Adoption and retirement in the ledger: adopted traces get an 'adoption' entry, retired runs
a 'tombstone' entry, and a format-v1 trace may be deleted only once it is retired.

Revision ID: 0003
Revises: 0002

Both appends happen in triggers, because the ledger takes entries from triggers only (its
assign trigger wants pg_trigger_depth() >= 2). Adoption: the UPDATE that gives a legacy trace
its genesis hash appends the entry. Retirement: a row in run_proof_retirements (the run as it
stands, the reason, and an Ed25519 signature made outside the database over both) appends
the tombstone before the trace rows may go; the checkpoint audit checks that signature, so a
tombstone written by someone without the signing key is still an alarm.
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

RETIREMENTS = """
CREATE TABLE IF NOT EXISTS {schema}.run_proof_retirements (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL,
    run_id text NOT NULL,
    trace_id text NOT NULL UNIQUE,
    chain_length bigint NOT NULL,
    root_hash text NOT NULL,
    reason text NOT NULL CHECK (length(btrim(reason)) > 0),
    signer text NOT NULL,
    signature text NOT NULL,
    retired_at timestamptz NOT NULL,
    ledger_seq bigint NOT NULL UNIQUE
);
"""

FUNCTIONS = """
CREATE OR REPLACE FUNCTION {schema}.run_proof_ledger_record_adoption() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_catalog AS $$
BEGIN
    INSERT INTO run_proof_ledger (kind, tenant_id, run_id, trace_id, chain_length, root_hash)
    VALUES ('adoption', NEW.tenant_id, NEW.run_id, NEW.trace_id, NEW.chain_length, NEW.root_hash);
    RETURN NULL;
END $$;

-- The tombstone names the trace exactly as it stands (sealed: root and length; unsealed, e.g.
-- a writer that died: head hash and step count), and the ledger gets it in the same statement.
CREATE OR REPLACE FUNCTION {schema}.run_proof_record_retirement() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_catalog AS $$
DECLARE
    t record;
    head text;
    steps bigint;
BEGIN
    SELECT trace_id, tenant_id, run_id, genesis_hash, root_hash, chain_length INTO t
    FROM aos_traces WHERE trace_id = NEW.trace_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no trace % to retire', NEW.trace_id USING ERRCODE = 'no_data_found';
    END IF;
    IF t.genesis_hash IS NULL THEN
        RAISE EXCEPTION 'trace % is a legacy trace: it needs no tombstone', NEW.trace_id
            USING ERRCODE = 'check_violation';
    END IF;
    IF t.tenant_id <> NEW.tenant_id OR t.run_id <> NEW.run_id THEN
        RAISE EXCEPTION 'trace % is not tenant %, run %', NEW.trace_id, NEW.tenant_id, NEW.run_id
            USING ERRCODE = 'check_violation';
    END IF;
    IF t.root_hash IS NOT NULL THEN
        head := t.root_hash;
        steps := t.chain_length;
    ELSE
        SELECT count(*) INTO steps FROM aos_trace_steps WHERE trace_id = NEW.trace_id;
        SELECT coalesce((SELECT step_hash FROM aos_trace_steps WHERE trace_id = NEW.trace_id
                         ORDER BY step_index DESC LIMIT 1), t.genesis_hash) INTO head;
    END IF;
    IF NEW.root_hash IS DISTINCT FROM head OR NEW.chain_length IS DISTINCT FROM steps THEN
        RAISE EXCEPTION 'the tombstone of trace % must name it as it stands (hash %, % steps)', NEW.trace_id, head, steps
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.retired_at := clock_timestamp();
    INSERT INTO run_proof_ledger (kind, tenant_id, run_id, trace_id, chain_length, root_hash)
    VALUES ('tombstone', NEW.tenant_id, NEW.run_id, NEW.trace_id, NEW.chain_length, NEW.root_hash)
    RETURNING seq INTO NEW.ledger_seq;
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION {schema}.run_proof_retirements_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'run_proof_retirements is append-only: % rejected', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE OR REPLACE FUNCTION {schema}.run_proof_trace_retired(p_trace_id text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = {schema}, pg_catalog AS $$
    SELECT EXISTS (SELECT 1 FROM run_proof_retirements r WHERE r.trace_id = p_trace_id)
$$;
"""

TRIGGERS = (
    (
        "aos_traces",
        "aos_traces_ledger_on_adoption",
        # A legacy row without AOS's root hash is recorded by 0002's seal trigger instead.
        "AFTER UPDATE",
        "WHEN (OLD.genesis_hash IS NULL AND NEW.genesis_hash IS NOT NULL"
        " AND NEW.root_hash IS NOT NULL AND OLD.root_hash IS NOT NULL)",
        "run_proof_ledger_record_adoption",
    ),
    (
        "run_proof_retirements",
        "run_proof_retirements_tombstone",
        "BEFORE INSERT",
        "",
        "run_proof_record_retirement",
    ),
    (
        "run_proof_retirements",
        "run_proof_retirements_append_only",
        "BEFORE UPDATE OR DELETE",
        "",
        "run_proof_retirements_reject_change",
    ),
)


def upgrade() -> None:
    bind = op.get_bind()
    schema = bind.dialect.identifier_preparer.quote(
        bind.exec_driver_sql("SELECT current_schema()").scalar_one()
    )
    op.execute(RETIREMENTS.format(schema=schema))
    op.execute(FUNCTIONS.format(schema=schema))
    for table, name, timing, condition, function in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {schema}.{table}")
        op.execute(
            f"CREATE TRIGGER {name} {timing} ON {schema}.{table} FOR EACH ROW {condition}"
            f" EXECUTE FUNCTION {schema}.{function}()"
        )
        op.execute(f"ALTER TABLE {schema}.{table} ENABLE ALWAYS TRIGGER {name}")
    op.execute(
        f"CREATE TRIGGER run_proof_retirements_no_truncate BEFORE TRUNCATE"
        f" ON {schema}.run_proof_retirements FOR EACH STATEMENT"
        f" EXECUTE FUNCTION {schema}.run_proof_retirements_reject_change()"
    )
    op.execute(
        f"ALTER TABLE {schema}.run_proof_retirements"
        " ENABLE ALWAYS TRIGGER run_proof_retirements_no_truncate"
    )


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only; it is never migrated down")
