"""Chaining in the database (format v2): every trace and step any client inserts is hashed by
PostgreSQL at insert, and the format's seal lives in columns of ours.

Revision ID: 0006
Revises: 0005

docs/hash-chain-v2.md is the format; this revision is "Where every value is stored" and "When
a trace is sealed" of it, in triggers (issue 13, items 1, 2 and 5):

- Columns of ours: `aos_traces.chain_format` (1, 2, or NULL for a legacy trace), `seal_hash`
  (the format's seal, v1 and v2), `chain_problem`; `aos_trace_steps.chain_position`,
  `chain_problem`. AOS's later columns are added where the store lacks them (a store made by
  run-proof's 0001 or by AOS's first migration), so that every store has what the v2 records
  cover. `aos_traces_archive` gets the new trace columns in the order of `aos_traces`, so AOS's
  retention (`INSERT INTO aos_traces_archive SELECT *`) keeps working.
- Backfill of columns of ours only: `chain_format = 1` where a genesis hash exists (native or
  adopted format-v1 traces), `seal_hash = root_hash` for those that are sealed. AOS's trace
  trigger compares only AOS's columns, so it lets this UPDATE through; it is never lifted. Steps
  get no backfill (AOS's step trigger refuses every UPDATE but an archival).
- A trace inserted without a genesis hash is format v2: the insert trigger computes its genesis
  (run_proof_v2_genesis_hash, store/sql/chain_v2.sql) and replaces a client's values for every
  column of ours. The format-v1 recorder, which inserts a genesis hash, keeps its path.
- `run_proof_chain_heads` holds each v2 trace's chain lock and where its chain starts (0 and
  the genesis; an adoption's length and head), when a store_trace-style run is due to be sealed
  and whether it is: the step insert trigger locks it, so concurrent writers of one trace are
  serialized, and assigns the step its chain position, prev_hash and step_hash from the last
  step chained (an index on (trace_id, chain_position); one row updated per step made a
  1,000-step transaction quadratic). A step out of order, with a gap or after the seal is stored and chained as it comes
  (the verifier names it); a duplicate (trace_id, step_index) changes nothing, so that AOS's
  `ON CONFLICT DO NOTHING` skips it.
- The seal is computed by the database only, under the chain lock: in the trace guard when
  `status` leaves 'running' (AOS's complete_trace, mark_trace_aborted), or when a trace
  inserted finished (AOS's store_trace) has had the steps its `trace` column lists chained. The
  guard re-derives from the chain row whether a seal is due and never takes seal values from a
  client, so no writer can make it seal a prefix.
- The ledger's seal and adoption entries (0002, 0003) follow `seal_hash` (NULL -> value); the
  tombstone (0003) names the seal_hash; the id claims (0004) treat v2 like v1.
- `run_proof_adopted_steps` keeps the step hashes of an adopted legacy trace (a legacy step row
  cannot be updated under AOS's trigger); it is append-only.

Every function this revision defines has `search_path = pg_catalog, <schema>, pg_temp` and
names its relations with the schema (as 0004). The trigger functions that write tables of
ours are SECURITY DEFINER, and refuse to run as a trigger of any table but the store's own
(else a writer could attach them to a temporary table of its own and feed them rows).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, NamedTuple

from alembic import op
from sqlalchemy.engine import Connection

from run_proof_pipeline.store.sql import canonical_json_sql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# `run-proof db upgrade --check` may ask this revision for its plan while earlier revisions
# are still pending (legacy/upgrade_check.py): planned_changes(connection, ahead=True).
DESCRIBES_AHEAD = True


class Change(NamedTuple):
    description: str
    sql: str | None = None


class Column(NamedTuple):
    name: str
    type: str
    # The clause when added to aos_traces / aos_trace_steps (the archive takes the type only).
    clause: str = ""


# AOS's later columns (its revisions 052, 078, 079, 080), in AOS's order, then ours. Types are
# text where AOS has varchar(n): a length limit would make an insert raise, and the proof reads
# text and varchar alike (store/relations.py).
TRACE_COLUMNS = (
    Column("checksum", "text"),
    Column("incident_id", "text"),
    Column("is_synthetic", "boolean", "NOT NULL DEFAULT false"),
    Column("synthetic_scenario_id", "text"),
    Column("archived_at", "timestamptz"),
    Column("chain_format", "smallint"),
    Column("seal_hash", "text"),
    Column("chain_problem", "text"),
)
STEP_COLUMNS = (
    Column("source", "text", "NOT NULL DEFAULT 'engine'"),
    Column("level", "text", "NOT NULL DEFAULT 'INFO'"),
    Column("is_synthetic", "boolean", "NOT NULL DEFAULT false"),
    Column("synthetic_scenario_id", "text"),
    Column("archived_at", "timestamptz"),
    Column("chain_position", "integer"),
    Column("chain_problem", "text"),
)
OUR_TRACE_COLUMNS = ("chain_format", "seal_hash", "chain_problem")
OUR_STEP_COLUMNS = ("chain_position", "chain_problem")
# What 0001 gives a table it creates (run-proof's own store), for a plan made before it ran.
_COLUMNS_0001 = {
    "aos_traces": (
        "id trace_id run_id correlation_id tenant_id agent_id plan_id seed frozen_timestamp plan"
        " plan_hash schema_version trace metadata status started_at completed_at created_at"
        " stored_by genesis_hash root_hash chain_length seal_seq adopted_at aos_root_hash"
    ).split(),
    "aos_trace_steps": (
        "id trace_id run_id tenant_id step_index skill_id skill_name params status"
        " outcome_category outcome_code outcome_data cost_cents duration_ms retry_count"
        " input_hash output_hash rng_state_before idempotency_key replay_behavior timestamp"
        " prev_hash step_hash"
    ).split(),
}

TABLES = """
CREATE TABLE IF NOT EXISTS {schema}.run_proof_chain_heads (
    trace_id text PRIMARY KEY REFERENCES {schema}.aos_traces (trace_id) ON DELETE CASCADE,
    next_position integer NOT NULL,
    head_hash text,
    seal_at integer,
    sealed boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE {schema}.run_proof_chain_heads IS
    'run-proof: the chain lock of each format-v2 trace and where its chain starts (next_position, head_hash: 0 and the genesis at insert, the adopted head after an adoption; the steps chained since carry their positions), when a trace inserted finished is due to be sealed (seal_at) and whether it is (docs/hash-chain-v2.md); written by the triggers and the adoption only, never read by verification';
CREATE TABLE IF NOT EXISTS {schema}.run_proof_adopted_steps (
    trace_id text NOT NULL REFERENCES {schema}.aos_traces (trace_id) ON DELETE CASCADE,
    step_index integer NOT NULL,
    chain_position integer NOT NULL,
    prev_hash text NOT NULL,
    step_hash text NOT NULL,
    PRIMARY KEY (trace_id, step_index)
);
COMMENT ON TABLE {schema}.run_proof_adopted_steps IS
    'run-proof: the format-v2 hashes of the steps of an adopted legacy trace (docs/hash-chain-v2.md); append-only';
REVOKE ALL ON {schema}.run_proof_chain_heads FROM PUBLIC;
REVOKE ALL ON {schema}.run_proof_adopted_steps FROM PUBLIC;
"""

# The archival rule of 0005 (a pure `archived_at` NULL -> timestamp), for the v2 branches.
ARCHIVAL = """
            IF old_row ? 'archived_at'
               AND (new_row -> 'archived_at') IS DISTINCT FROM (old_row -> 'archived_at') THEN
                IF old_row ->> 'archived_at' IS NOT NULL THEN
                    RAISE EXCEPTION '{what} was archived at %: archived_at is set once; un-archiving or archiving it again is rejected', {args}, old_row ->> 'archived_at'
                        USING ERRCODE = 'insufficient_privilege';
                END IF;
                unarchived := NEW;
                unarchived.archived_at := NULL;
                IF NOT (unarchived *= OLD) THEN
                    RAISE EXCEPTION 'archiving {what} may set archived_at only: every other column must stay as it is (UPDATE rejected)', {args}
                        USING ERRCODE = 'insufficient_privilege';
                END IF;
                RETURN NEW;
            END IF;"""

# Refuses to run as a trigger of any relation but `{table}` of the store (a SECURITY DEFINER
# trigger function attached by a writer to its own temporary table would run as the owner).
_OWN_TABLE = """
    IF TG_TABLE_SCHEMA <> {schema_literal} OR TG_TABLE_NAME <> '{table}' THEN
        RAISE EXCEPTION 'run-proof trigger % runs on {table} of the store only', TG_NAME
            USING ERRCODE = 'insufficient_privilege';
    END IF;"""


def _own(table: str) -> str:
    return _OWN_TABLE.replace("{table}", table)


PATH = "SET search_path = pg_catalog, {schema}, pg_temp"

# The chain's head of trace `{tid}` (plpgsql; `chain` holds its run_proof_chain_heads row):
# `pos` := the next chain position, `prev` := the head hash. The last step chained (by
# position) is the head, else the chain's start (genesis at insert, the adopted head after an
# adoption). A step that could not be hashed leaves the head where it was. Read from the steps
# under the chain row's lock, not kept in the chain row: updating one row per step made every
# step of a 1,000-step transaction walk the row's versions made before it (quadratic).
HEAD = """
    SELECT s.chain_position, s.step_hash INTO tail
    FROM {schema}.aos_trace_steps s
    WHERE s.trace_id = {tid} AND s.chain_position IS NOT NULL
    ORDER BY s.chain_position DESC LIMIT 1;
    IF FOUND THEN
        pos := tail.chain_position + 1;
        prev := tail.step_hash;
        IF prev IS NULL THEN
            prev := COALESCE((SELECT s.step_hash FROM {schema}.aos_trace_steps s
                              WHERE s.trace_id = {tid} AND s.chain_position IS NOT NULL
                                AND s.step_hash IS NOT NULL
                              ORDER BY s.chain_position DESC LIMIT 1), chain.head_hash);
        END IF;
    ELSE
        pos := chain.next_position;
        prev := chain.head_hash;
    END IF;"""

HEADER_ARGS = (
    "NEW.tenant_id, NEW.run_id, NEW.trace_id, NEW.agent_id, NEW.plan_id, NEW.plan,"
    " NEW.started_at, NEW.created_at, NEW.correlation_id, NEW.seed::numeric,"
    " NEW.frozen_timestamp, NEW.plan_hash, NEW.schema_version, NEW.trace, NEW.stored_by,"
    " NEW.checksum, NEW.incident_id, NEW.is_synthetic, NEW.synthetic_scenario_id,"
    " NEW.root_hash"
)
STEP_ARGS = (
    "parent.tenant_id, parent.run_id, NEW.trace_id, NEW.step_index, NEW.skill_id,"
    " NEW.skill_name, NEW.params, NEW.status, NEW.outcome_category, NEW.outcome_code,"
    ' NEW.outcome_data, NEW.cost_cents, NEW.duration_ms, NEW.retry_count, NEW."timestamp",'
    " NEW.input_hash, NEW.output_hash, NEW.rng_state_before, NEW.idempotency_key,"
    " NEW.replay_behavior, NEW.source, NEW.level, NEW.is_synthetic, NEW.synthetic_scenario_id"
)
# The seal of a trace row `r` whose chain head is `h` after `n` steps.
SEAL_ARGS = "r.tenant_id, r.run_id, r.trace_id, r.status, r.completed_at, n, r.metadata"

FUNCTIONS = (
    """
-- aos_traces BEFORE INSERT: 0001's rules for a format-v1 insert (the recorder), and format v2
-- for every other insert. SECURITY DEFINER (as db harden made it): the legacy-run check must
-- see every tenant's rows.
CREATE OR REPLACE FUNCTION {schema}.run_proof_guard_trace_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER """  # noqa: S608 (identifiers only, quoted by _render)
    + PATH
    + """ AS $$
DECLARE
    listed integer;
BEGIN"""
    + _own("aos_traces")
    + """
    -- AOS requires a correlation id; the recorder has none of its own.
    NEW.correlation_id := COALESCE(NEW.correlation_id, NEW.run_id);
    IF NEW.genesis_hash IS NOT NULL THEN
        IF NEW.adopted_at IS NOT NULL OR NEW.aos_root_hash IS NOT NULL THEN
            RAISE EXCEPTION 'a new trace is native: adopted_at and aos_root_hash are set by adoption only'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        -- The partial unique index covers format-v1 traces; this covers legacy ones.
        IF EXISTS (SELECT 1 FROM {schema}.aos_traces t WHERE t.run_id = NEW.run_id AND t.genesis_hash IS NULL) THEN
            RAISE EXCEPTION 'run % already has a legacy trace', NEW.run_id
                USING ERRCODE = 'unique_violation';
        END IF;
        -- Format v1: the recorder's own hashes; the seal (if inserted sealed) is root_hash.
        NEW.chain_format := 1;
        NEW.seal_hash := NEW.root_hash;
        NEW.chain_problem := NULL;
        RETURN NEW;
    END IF;
    -- Format v2. A row whose trace_id is taken will conflict (AOS's start_trace and
    -- store_trace retry with ON CONFLICT (trace_id) DO NOTHING): this trigger fires for it
    -- all the same, so it changes nothing and raises nothing for it.
    IF EXISTS (SELECT 1 FROM {schema}.aos_traces t WHERE t.trace_id = NEW.trace_id) THEN
        NEW.chain_format := NULL;
        NEW.seal_hash := NULL;
        NEW.chain_problem := NULL;
        RETURN NEW;
    END IF;
    IF EXISTS (SELECT 1 FROM {schema}.aos_traces t WHERE t.run_id = NEW.run_id AND t.chain_format IS NULL
               AND t.genesis_hash IS NULL) THEN
        RAISE EXCEPTION 'run % already has a legacy trace', NEW.run_id
            USING ERRCODE = 'unique_violation';
    END IF;
    NEW.chain_format := 2;
    NEW.seal_hash := NULL;
    NEW.chain_length := NULL;
    NEW.seal_seq := NULL;
    NEW.adopted_at := NULL;
    NEW.aos_root_hash := NULL;
    NEW.genesis_hash := {schema}.run_proof_v2_genesis_hash("""
    + HEADER_ARGS
    + """);
    NEW.chain_problem := NULL;
    IF NEW.genesis_hash IS NULL THEN
        NEW.chain_problem := 'header: ' || COALESCE({schema}.run_proof_v2_header_problem("""
    + HEADER_ARGS
    + """), 'cannot be hashed');
    END IF;
    -- A trace inserted finished (store_trace) with no step listed is sealed right away; one
    -- with steps listed is sealed once they are chained (the step trigger).
    IF NEW.status IS DISTINCT FROM 'running' THEN
        listed := CASE WHEN jsonb_typeof(NEW.trace -> 'steps') = 'array'
                       THEN jsonb_array_length(NEW.trace -> 'steps') ELSE 0 END;
        IF listed = 0 THEN
            NEW.chain_length := 0;
            IF NEW.genesis_hash IS NOT NULL THEN
                NEW.seal_hash := {schema}.run_proof_v2_seal_hash(NEW.genesis_hash,
                    NEW.tenant_id, NEW.run_id, NEW.trace_id, NEW.status, NEW.completed_at, 0,
                    NEW.metadata);
                IF NEW.seal_hash IS NULL THEN
                    NEW.chain_problem := 'seal: ' || COALESCE({schema}.run_proof_v2_seal_problem(
                        NEW.tenant_id, NEW.run_id, NEW.trace_id, NEW.status, NEW.completed_at, 0,
                        NEW.metadata), 'cannot be hashed');
                ELSE
                    NEW.seal_seq := nextval({sequence});
                END IF;
            END IF;
        END IF;
    END IF;
    RETURN NEW;
END $$;

-- aos_traces AFTER INSERT of a format-v2 trace: its chain row (state is created here, never
-- BEFORE INSERT, since a row skipped by ON CONFLICT fires BEFORE triggers too).
CREATE OR REPLACE FUNCTION {schema}.run_proof_v2_open_chain() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER """
    + PATH
    + """ AS $$
DECLARE
    listed integer;
BEGIN"""
    + _own("aos_traces")
    + """
    IF NEW.status IS DISTINCT FROM 'running' THEN
        listed := CASE WHEN jsonb_typeof(NEW.trace -> 'steps') = 'array'
                       THEN jsonb_array_length(NEW.trace -> 'steps') ELSE 0 END;
    END IF;
    INSERT INTO {schema}.run_proof_chain_heads (trace_id, next_position, head_hash, seal_at, sealed)
    VALUES (NEW.trace_id, 0, NEW.genesis_hash, listed, COALESCE(listed = 0, false));
    RETURN NULL;
END $$;

-- aos_trace_steps BEFORE INSERT (first): AOS inserts steps without run_id/tenant_id; the seed's
-- Step 2 counts steps by run_id. As the writer (not SECURITY DEFINER): a trace the writer may
-- not see lends it nothing. Our columns of a step are ours: a client's values go.
CREATE OR REPLACE FUNCTION {schema}.run_proof_fill_step_identity() RETURNS trigger
LANGUAGE plpgsql """
    + PATH
    + """ AS $$
DECLARE
    parent record;
BEGIN
    NEW.chain_position := NULL;
    NEW.chain_problem := NULL;
    IF NEW.run_id IS NULL OR NEW.tenant_id IS NULL THEN
        SELECT t.run_id, t.tenant_id INTO parent FROM {schema}.aos_traces t WHERE t.trace_id = NEW.trace_id;
        IF FOUND THEN
            NEW.run_id := COALESCE(NEW.run_id, parent.run_id);
            NEW.tenant_id := COALESCE(NEW.tenant_id, parent.tenant_id);
        END IF;
    END IF;
    RETURN NEW;
END $$;

-- aos_trace_steps BEFORE INSERT: no step joins a sealed format-v1 trace (0002). A format-v2
-- trace takes every step (chained on, named by the verifier).
CREATE OR REPLACE FUNCTION {schema}.run_proof_reject_step_after_seal() RETURNS trigger
LANGUAGE plpgsql """
    + PATH
    + """ AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM {schema}.aos_traces WHERE trace_id = NEW.trace_id
               AND root_hash IS NOT NULL AND genesis_hash IS NOT NULL
               AND chain_format IS DISTINCT FROM 2) THEN
        RAISE EXCEPTION 'trace % is sealed: no step may be appended', NEW.trace_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;

-- aos_trace_steps BEFORE INSERT: the chain of a format-v2 trace. Under the chain row's lock:
-- position, prev_hash and step_hash of the step, and the head moves on. SECURITY DEFINER
-- (writers have no privilege on run_proof_chain_heads). It chains only a step whose run and
-- tenant are its trace's (filled by the trigger before, as the writer): one that names
-- another tenant's trace is refused by row-level security anyway, and gets no chaining here.
CREATE OR REPLACE FUNCTION {schema}.run_proof_v2_chain_step() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER """
    + PATH
    + """ AS $$
DECLARE
    chain record;
    parent record;
    tail record;
    pos integer;
    prev text;
    hash text;
BEGIN"""
    + _own("aos_trace_steps")
    + """
    NEW.chain_position := NULL;
    NEW.chain_problem := NULL;
    -- `touched`: this transaction has made the row's current version already.
    SELECT h.next_position, h.head_hash, h.seal_at, h.sealed,
           h.xmin = pg_current_xact_id()::xid AS touched INTO chain
    FROM {schema}.run_proof_chain_heads h WHERE h.trace_id = NEW.trace_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NEW;  -- format v1 (the recorder's hashes) or legacy: as before 0006
    END IF;
    SELECT t.tenant_id, t.run_id, t.chain_format INTO parent
    FROM {schema}.aos_traces t WHERE t.trace_id = NEW.trace_id;
    IF NOT FOUND OR parent.chain_format IS DISTINCT FROM 2 THEN
        RETURN NEW;
    END IF;
    NEW.prev_hash := NULL;
    NEW.step_hash := NULL;
    IF NEW.tenant_id IS DISTINCT FROM parent.tenant_id OR NEW.run_id IS DISTINCT FROM parent.run_id THEN
        NEW.chain_problem := 'the step names another run or tenant than its trace: not chained';
        RETURN NEW;
    END IF;
    -- A duplicate (trace_id, step_index) will conflict: AOS's ON CONFLICT DO NOTHING skips it.
    IF EXISTS (SELECT 1 FROM {schema}.aos_trace_steps s
               WHERE s.trace_id = NEW.trace_id AND s.step_index = NEW.step_index) THEN
        RETURN NEW;
    END IF;
"""
    + HEAD.replace("{tid}", "NEW.trace_id")
    + """
    hash := {schema}.run_proof_v2_step_hash(prev, """
    + STEP_ARGS
    + """);
    NEW.chain_position := pos;
    NEW.prev_hash := prev;
    NEW.step_hash := hash;
    IF hash IS NULL THEN
        -- Stored as written, named by the verifier; the head stays where it was.
        NEW.chain_problem := CASE WHEN prev IS NULL
            THEN 'no previous hash (the trace header or an earlier step could not be hashed)'
            ELSE 'step: ' || COALESCE({schema}.run_proof_v2_step_problem("""
    + STEP_ARGS
    + """), 'cannot be hashed') END;
    END IF;
    IF NOT chain.touched THEN
        -- A new version of the chain row once per transaction: a REPEATABLE READ or
        -- SERIALIZABLE writer whose snapshot misses this transaction's steps then fails to
        -- lock the row (a serialization failure) instead of chaining a second step at a
        -- position taken. READ COMMITTED writers wait for the lock and then see the steps.
        UPDATE {schema}.run_proof_chain_heads SET sealed = sealed WHERE trace_id = NEW.trace_id;
    END IF;
    IF chain.seal_at IS NOT NULL AND NOT chain.sealed AND pos + 1 >= chain.seal_at THEN
        -- The trace guard seals it when the AFTER INSERT trigger (as the writer) touches the
        -- trace row, once this step is in; the guard re-derives that a seal is due, this is
        -- only the cue (trace ids, each between two U+001F: one statement may insert several,
        -- and whatever else a client put there does not hide an entry).
        PERFORM set_config('run_proof.seal_due',
            COALESCE(current_setting('run_proof.seal_due', true), '') || chr(31) || NEW.trace_id || chr(31),
            false);
    END IF;
    RETURN NEW;
END $$;

-- aos_trace_steps AFTER INSERT: a store_trace-style run whose listed steps are all chained
-- now is sealed by an UPDATE of its trace row that the guard recognises (after the insert: the
-- guard finds the head among the stored steps). As the writer: the UPDATE is held to the
-- writer's own row-level security.
CREATE OR REPLACE FUNCTION {schema}.run_proof_v2_seal_due() RETURNS trigger
LANGUAGE plpgsql """
    + PATH
    + """ AS $$
DECLARE
    cue text := current_setting('run_proof.seal_due', true);
    mark text := chr(31) || NEW.trace_id || chr(31);
BEGIN
    IF cue IS NULL OR cue = '' OR strpos(cue, mark) = 0 THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('run_proof.seal_due', replace(cue, mark, ''), false);
    BEGIN
        UPDATE {schema}.aos_traces SET status = status WHERE trace_id = NEW.trace_id;
    EXCEPTION WHEN insufficient_privilege THEN
        -- A writer without UPDATE on aos_traces (db harden grants it): the step is stored,
        -- the trace stays unsealed (UNSEALED), the insert never fails for it.
        NULL;
    END;
    RETURN NULL;
END $$;

-- aos_trace_steps BEFORE UPDATE OR DELETE / TRUNCATE: 0005's guard; a step of a format-v2
-- trace is append-only too (only a pure archival), even when its header could not be hashed.
CREATE OR REPLACE FUNCTION {schema}.run_proof_guard_step_change() RETURNS trigger
LANGUAGE plpgsql """
    + PATH
    + """ AS $$
DECLARE
    parent record;
    old_row jsonb;
    new_row jsonb;
    unarchived record;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'aos_trace_steps is append-only: TRUNCATE rejected'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT t.genesis_hash, t.chain_format INTO parent FROM {schema}.aos_traces t WHERE t.trace_id = OLD.trace_id;
    IF NOT FOUND THEN
        -- The trace row is gone already: the ON DELETE CASCADE of a deletion the trace guard
        -- allowed (or a legacy step that never had a trace).
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
    ELSIF parent.genesis_hash IS NOT NULL OR parent.chain_format IS NOT NULL THEN
        -- AOS's archival (migration 0005): archived_at is not hashed.
        IF TG_OP = 'UPDATE' THEN
            old_row := to_jsonb(OLD);
            new_row := to_jsonb(NEW);"""
    + ARCHIVAL.replace("{what}", "step % of trace %").replace(
        "{args}", "OLD.step_index, OLD.trace_id"
    )
    + """
        END IF;
        RAISE EXCEPTION 'aos_trace_steps is append-only: % rejected (trace % is in format v%)', TG_OP, OLD.trace_id, COALESCE(parent.chain_format, 1)
            USING ERRCODE = 'insufficient_privilege';
    ELSIF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    -- A step of a legacy trace is AOS's and unproven, but it must not move into a format trace.
    IF EXISTS (SELECT 1 FROM {schema}.aos_traces t WHERE t.trace_id = NEW.trace_id
               AND (t.genesis_hash IS NOT NULL OR t.chain_format IS NOT NULL)) THEN
        RAISE EXCEPTION 'a step cannot move into trace %, which is in format v%', NEW.trace_id,
            (SELECT COALESCE(t.chain_format, 1) FROM {schema}.aos_traces t WHERE t.trace_id = NEW.trace_id)
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;

-- aos_traces BEFORE UPDATE OR DELETE / TRUNCATE: 0005's guard for legacy and format-v1 traces
-- (v1: seal_hash follows root_hash in the same row), a branch for format v2, and adoption into
-- format v2 (columns of ours only). SECURITY DEFINER: it seals under the chain row's lock.
CREATE OR REPLACE FUNCTION {schema}.run_proof_guard_trace_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER """
    + PATH
    + """ AS $$
DECLARE
    seal_columns text[] := ARRAY['status', 'completed_at', 'root_hash', 'chain_length', 'seal_seq', 'seal_hash'];
    adoption_columns text[] := ARRAY['genesis_hash', 'root_hash', 'chain_length', 'seal_seq', 'adopted_at', 'aos_root_hash', 'chain_format', 'seal_hash'];
    v2_adoption_columns text[] := ARRAY['genesis_hash', 'chain_length', 'seal_seq', 'adopted_at', 'chain_format', 'seal_hash', 'chain_problem'];
    old_row jsonb;
    new_row jsonb;
    unarchived record;
    kept record;
    chain record;
    have_chain boolean;
    tail record;
    pos integer;
    prev text;
    n integer;
    r record;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'aos_traces is append-only: TRUNCATE rejected'
            USING ERRCODE = 'insufficient_privilege';
    END IF;"""
    + _own("aos_traces")
    + """
    IF OLD.chain_format = 2 THEN
        IF TG_OP = 'DELETE' THEN
            IF {schema}.run_proof_trace_retired(OLD.trace_id) THEN
                RETURN OLD;
            END IF;
            RAISE EXCEPTION 'aos_traces is append-only: DELETE rejected (trace % is in format v2; retire it first with run-proof retire)', OLD.trace_id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        old_row := to_jsonb(OLD);
        new_row := to_jsonb(NEW);"""
    + ARCHIVAL.replace("{what}", "trace %").replace("{args}", "OLD.trace_id")
    + """
        SELECT h.next_position, h.head_hash, h.seal_at, h.sealed INTO chain
        FROM {schema}.run_proof_chain_heads h WHERE h.trace_id = OLD.trace_id FOR UPDATE;
        have_chain := FOUND;
        IF OLD.seal_hash IS NOT NULL OR (have_chain AND chain.sealed) THEN
            RAISE EXCEPTION 'trace % is sealed: UPDATE rejected', OLD.trace_id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        -- Unsealed: only AOS's completion columns change. Columns of ours are the database's:
        -- a client's values are replaced by OLD's before anything is compared or sealed.
        NEW.genesis_hash := OLD.genesis_hash;
        NEW.seal_hash := OLD.seal_hash;
        NEW.chain_length := OLD.chain_length;
        NEW.seal_seq := OLD.seal_seq;
        NEW.chain_problem := OLD.chain_problem;
        NEW.chain_format := OLD.chain_format;
        NEW.adopted_at := OLD.adopted_at;
        NEW.aos_root_hash := OLD.aos_root_hash;
        kept := NEW;
        kept.status := OLD.status;
        kept.completed_at := OLD.completed_at;
        kept.metadata := OLD.metadata;
        IF NOT (kept *= OLD) THEN
            RAISE EXCEPTION 'trace % (format v2): only status, completed_at and metadata may change before the seal', OLD.trace_id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        -- Due: the run ends now (status leaves running), or a trace inserted finished has had
        -- the steps it lists chained. Decided from the chain row, whoever issued the UPDATE.
        IF have_chain AND ((OLD.status = 'running' AND NEW.status IS DISTINCT FROM 'running')
                           OR chain.seal_at IS NOT NULL) THEN"""
    + HEAD.replace("{tid}", "OLD.trace_id").replace("\n    ", "\n        ")
    + """
        END IF;
        IF have_chain AND ((OLD.status = 'running' AND NEW.status IS DISTINCT FROM 'running')
                           OR (chain.seal_at IS NOT NULL AND pos >= chain.seal_at)) THEN
            n := pos;
            r := NEW;
            NEW.chain_length := n;
            NEW.seal_hash := {schema}.run_proof_v2_seal_hash(prev, """
    + SEAL_ARGS
    + """);
            IF NEW.seal_hash IS NULL THEN
                NEW.chain_problem := COALESCE(OLD.chain_problem || '; ', '') || 'seal: ' || COALESCE(
                    {schema}.run_proof_v2_seal_problem("""
    + SEAL_ARGS
    + """),
                    'no chain head (the header or a step could not be hashed)');
            ELSE
                NEW.seal_seq := nextval({sequence});
            END IF;
            UPDATE {schema}.run_proof_chain_heads SET sealed = true WHERE trace_id = OLD.trace_id;
        END IF;
        RETURN NEW;
    END IF;
    IF OLD.genesis_hash IS NULL THEN
        -- A legacy trace is AOS's own, unproven row: AOS keeps finishing (UPDATE) and
        -- archiving (DELETE) it. Adoption turns it into a format trace, adding hashes only.
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        IF NEW.genesis_hash IS NULL THEN
            NEW.seal_seq := NULL;
            NEW.adopted_at := NULL;
            NEW.chain_format := OLD.chain_format;
            NEW.seal_hash := OLD.seal_hash;
            NEW.chain_problem := OLD.chain_problem;
            RETURN NEW;
        END IF;
        IF NEW.chain_format = 2 THEN
            -- Adoption into format v2 (legacy/adoption.py): AOS's columns, root_hash included,
            -- stay as they are (AOS's own trigger insists too); columns of ours only.
            IF (to_jsonb(NEW) - v2_adoption_columns) IS DISTINCT FROM (to_jsonb(OLD) - v2_adoption_columns) THEN
                RAISE EXCEPTION 'adopting trace % may only add its format-v2 hashes (genesis_hash, seal_hash, chain_length, chain_format)', OLD.trace_id
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            NEW.adopted_at := now();
            NEW.seal_seq := CASE WHEN NEW.seal_hash IS NULL THEN NULL ELSE nextval({sequence}) END;
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
        NEW.chain_format := 1;
        NEW.seal_hash := NEW.root_hash;
        NEW.chain_problem := NULL;
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
    -- Format v1: the seal is the recorder's root_hash, and seal_hash its copy in the same row
    -- (a client's seal_hash is replaced). seal_seq: the database's seal order.
    NEW.seal_hash := NEW.root_hash;
    IF NEW.root_hash IS NOT NULL THEN
        NEW.seal_seq := nextval({sequence});
    ELSE
        NEW.seal_seq := NULL;
    END IF;
    RETURN NEW;
END $$;

-- The ledger's seal and adoption entries name the format's seal (seal_hash; 0002, 0003).
CREATE OR REPLACE FUNCTION {schema}.run_proof_ledger_record_seal() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER """
    + PATH
    + """ AS $$
BEGIN"""
    + _own("aos_traces")
    + """
    -- Format v1's seal is root_hash (seal_hash its copy, made by the guard in the same row).
    INSERT INTO {schema}.run_proof_ledger (kind, tenant_id, run_id, trace_id, chain_length, root_hash)
    VALUES ('seal', NEW.tenant_id, NEW.run_id, NEW.trace_id, NEW.chain_length,
            CASE WHEN NEW.chain_format = 1 THEN NEW.root_hash ELSE NEW.seal_hash END);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION {schema}.run_proof_ledger_record_adoption() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER """
    + PATH
    + """ AS $$
BEGIN"""
    + _own("aos_traces")
    + """
    INSERT INTO {schema}.run_proof_ledger (kind, tenant_id, run_id, trace_id, chain_length, root_hash)
    VALUES ('adoption', NEW.tenant_id, NEW.run_id, NEW.trace_id, NEW.chain_length,
            CASE WHEN NEW.chain_format = 1 THEN NEW.root_hash ELSE NEW.seal_hash END);
    RETURN NULL;
END $$;

-- The tombstone names the trace as it stands (0003): sealed, its seal_hash and length;
-- unsealed, its head (the last chained step: chain position for v2, step_index for v1) and
-- step count, as legacy/retirement.py reads them.
CREATE OR REPLACE FUNCTION {schema}.run_proof_record_retirement() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER """
    + PATH
    + """ AS $$
DECLARE
    t record;
    head text;
    steps bigint;
BEGIN"""
    + _own("run_proof_retirements")
    + """
    SELECT trace_id, tenant_id, run_id, genesis_hash, chain_format, seal_hash, chain_length INTO t
    FROM {schema}.aos_traces WHERE trace_id = NEW.trace_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no trace % to retire', NEW.trace_id USING ERRCODE = 'no_data_found';
    END IF;
    IF t.chain_format IS NULL OR (t.chain_format = 1 AND t.genesis_hash IS NULL) THEN
        RAISE EXCEPTION 'trace % is a legacy trace: it needs no tombstone', NEW.trace_id
            USING ERRCODE = 'check_violation';
    END IF;
    IF t.tenant_id <> NEW.tenant_id OR t.run_id <> NEW.run_id THEN
        RAISE EXCEPTION 'trace % is not tenant %, run %', NEW.trace_id, NEW.tenant_id, NEW.run_id
            USING ERRCODE = 'check_violation';
    END IF;
    IF t.seal_hash IS NOT NULL THEN
        head := t.seal_hash;
        steps := t.chain_length;
    ELSE
        SELECT count(*) INTO steps FROM {schema}.aos_trace_steps WHERE trace_id = NEW.trace_id;
        SELECT coalesce((SELECT step_hash FROM {schema}.aos_trace_steps WHERE trace_id = NEW.trace_id
                         ORDER BY chain_position DESC NULLS LAST, step_index DESC LIMIT 1),
                        t.genesis_hash) INTO head;
    END IF;
    IF NEW.root_hash IS DISTINCT FROM head OR NEW.chain_length IS DISTINCT FROM steps THEN
        RAISE EXCEPTION 'the tombstone of trace % must name it as it stands (hash %, % steps)', NEW.trace_id, head, steps
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.retired_at := clock_timestamp();
    INSERT INTO {schema}.run_proof_ledger (kind, tenant_id, run_id, trace_id, chain_length, root_hash)
    VALUES ('tombstone', NEW.tenant_id, NEW.run_id, NEW.trace_id, NEW.chain_length, NEW.root_hash)
    RETURNING seq INTO NEW.ledger_seq;
    RETURN NEW;
END $$;

-- run_proof_adopted_steps is append-only; a row goes only with its trace (the FK cascade of a
-- deletion the trace guard allowed: a retired run).
CREATE OR REPLACE FUNCTION {schema}.run_proof_adopted_steps_reject_change() RETURNS trigger
LANGUAGE plpgsql """
    + PATH
    + """ AS $$
BEGIN
    IF TG_OP = 'DELETE' AND NOT EXISTS (SELECT 1 FROM {schema}.aos_traces t WHERE t.trace_id = OLD.trace_id) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'run_proof_adopted_steps is append-only: % rejected', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
"""
)

# The id claims of 0004: a format-v2 trace is claimed at insert like a format-v1 one (item 9),
# even when its header could not be hashed.
IDS_ONCE_FROM = "v1 boolean := NEW.genesis_hash IS NOT NULL;"
IDS_ONCE_TO = "v1 boolean := NEW.genesis_hash IS NOT NULL OR NEW.chain_format = 2;"

# An UPDATE that seals: seal_hash NULL -> value, or (format v1) root_hash NULL -> value.
SEALED_NOW = (
    "((OLD.seal_hash IS NULL AND NEW.seal_hash IS NOT NULL) OR (NEW.chain_format = 1"
    " AND OLD.root_hash IS NULL AND NEW.root_hash IS NOT NULL))"
)
# An UPDATE that adopts a legacy trace whose adoption gets an `adoption` entry (0003: a v1
# adoption of a row with AOS's root hash; every v2 adoption).
ADOPTED_NOW = (
    "OLD.genesis_hash IS NULL AND NEW.genesis_hash IS NOT NULL"
    " AND (OLD.root_hash IS NOT NULL OR NEW.chain_format = 2)"
)
# (table, trigger, timing, level, condition, function). Trigger names decide the order in which
# triggers of one event fire: the BEFORE INSERT step triggers fire fill_identity,
# not_after_seal, v2_chain.
TRIGGERS = (
    ("aos_traces", "aos_traces_v2_chain_open", "AFTER INSERT", "FOR EACH ROW",
     "WHEN (NEW.chain_format = 2)", "run_proof_v2_open_chain"),
    ("aos_trace_steps", "aos_trace_steps_v2_chain", "BEFORE INSERT", "FOR EACH ROW", "",
     "run_proof_v2_chain_step"),
    ("aos_trace_steps", "aos_trace_steps_v2_seal_due", "AFTER INSERT", "FOR EACH ROW",
     "WHEN (NEW.chain_position IS NOT NULL)", "run_proof_v2_seal_due"),
    # 0002's and 0003's ledger triggers, keyed on seal_hash (NULL -> value) instead of root_hash.
    # A format-v1 seal is also keyed on root_hash as before (a seal the owner cleared and made
    # again is a second entry, whatever the owner did to seal_hash).
    ("aos_traces", "aos_traces_ledger_on_seal", "AFTER UPDATE", "FOR EACH ROW",
     f"WHEN ({SEALED_NOW} AND NEW.genesis_hash IS NOT NULL AND NOT ({ADOPTED_NOW}))",
     "run_proof_ledger_record_seal"),
    ("aos_traces", "aos_traces_ledger_on_insert", "AFTER INSERT", "FOR EACH ROW",
     "WHEN (NEW.seal_hash IS NOT NULL AND NEW.genesis_hash IS NOT NULL)",
     "run_proof_ledger_record_seal"),
    ("aos_traces", "aos_traces_ledger_on_adoption", "AFTER UPDATE", "FOR EACH ROW",
     f"WHEN ({SEALED_NOW} AND {ADOPTED_NOW})",
     "run_proof_ledger_record_adoption"),
    ("run_proof_adopted_steps", "run_proof_adopted_steps_append_only", "BEFORE UPDATE OR DELETE",
     "FOR EACH ROW", "", "run_proof_adopted_steps_reject_change"),
    ("run_proof_adopted_steps", "run_proof_adopted_steps_no_truncate", "BEFORE TRUNCATE",
     "FOR EACH STATEMENT", "", "run_proof_adopted_steps_reject_change"),
)  # fmt: skip
NEW_TRIGGERS = (
    "aos_traces_v2_chain_open",
    "aos_trace_steps_v2_chain",
    "aos_trace_steps_v2_seal_due",
    "run_proof_adopted_steps_append_only",
    "run_proof_adopted_steps_no_truncate",
)
# Functions new in this revision (regprocedure form), for harden and the downgrade.
NEW_FUNCTIONS = (
    "run_proof_v2_open_chain()",
    "run_proof_v2_chain_step()",
    "run_proof_v2_seal_due()",
    "run_proof_adopted_steps_reject_change()",
)

BACKFILL = """
ALTER TABLE {schema}.aos_traces DISABLE TRIGGER aos_traces_seal_once;
UPDATE {schema}.aos_traces SET chain_format = 1 WHERE genesis_hash IS NOT NULL AND chain_format IS NULL;
UPDATE {schema}.aos_traces SET seal_hash = root_hash
WHERE chain_format = 1 AND root_hash IS NOT NULL AND seal_hash IS NULL;
ALTER TABLE {schema}.aos_traces ENABLE ALWAYS TRIGGER aos_traces_seal_once;
"""


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _render(template: str, schema_name: str) -> str:
    schema = _quoted(schema_name)
    # nextval() takes the sequence's name as a text literal: the quoted, qualified name.
    sequence = "'" + f"{schema}.aos_traces_seal_seq".replace("'", "''") + "'"
    literal = "'" + schema_name.replace("'", "''") + "'"
    return (
        template.replace("{schema_literal}", literal)
        .replace("{schema}", schema)
        .replace("{sequence}", sequence)
    )


def _schema(connection: Connection) -> str:
    """The store's schema: the first one searched but pg_catalog (as 0005)."""
    return str(
        connection.exec_driver_sql(
            "SELECT s FROM unnest(current_schemas(false)) WITH ORDINALITY AS p(s, n)"
            " WHERE s <> 'pg_catalog' ORDER BY n LIMIT 1"
        ).scalar_one()
    )


def _columns(connection: Connection, schema: str, table: str) -> list[tuple[str, str]] | None:
    """(name, type) of the table's columns in order; None when it does not exist."""
    regclass = f"{_quoted(schema)}.{_quoted(table)}"
    exists = connection.exec_driver_sql(
        "SELECT to_regclass(%(t)s) IS NOT NULL", {"t": regclass}
    ).scalar_one()
    if not exists:
        return None
    rows = connection.exec_driver_sql(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = to_regclass(%(t)s) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        {"t": regclass},
    ).all()
    return [(str(r[0]), str(r[1])) for r in rows]


def _add_columns(
    table: str, present: list[str], wanted: tuple[Column, ...]
) -> tuple[list[Change], list[Column]]:
    changes: list[Change] = []
    added: list[Column] = []
    for column in wanted:
        if column.name in present:
            continue
        ours = column.name in OUR_TRACE_COLUMNS + OUR_STEP_COLUMNS
        why = "run-proof's format-v2 column" if ours else "AOS's column, covered by format v2"
        changes.append(
            Change(
                f"{table}: add column {column.name} {column.type} {column.clause}".rstrip()
                + f" ({why})",
                f"ALTER TABLE {{schema}}.{table} ADD COLUMN {_quoted(column.name)}"
                f" {column.type} {column.clause}".rstrip(),
            )
        )
        added.append(column)
    return changes, added


CHAIN_INDEX = "aos_trace_steps_chain_position_idx"
LEGACY_RUN_INDEX = "aos_traces_legacy_run_id_idx"


def _has_index(connection: Connection, schema: str, name: str) -> bool:
    return bool(
        connection.exec_driver_sql(
            "SELECT to_regclass(%(i)s) IS NOT NULL", {"i": f"{_quoted(schema)}.{_quoted(name)}"}
        ).scalar_one()
    )


def _aos_triggers(connection: Connection, schema: str) -> list[tuple[str, str]]:
    rows = connection.exec_driver_sql(
        "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " WHERE NOT t.tgisinternal AND c.relnamespace = to_regnamespace(%(s)s)"
        " AND c.relname IN ('aos_traces', 'aos_trace_steps', 'aos_traces_archive')"
        " AND t.tgname NOT LIKE 'aos\\_trace%%' ORDER BY 1, 2",
        {"s": _quoted(schema)},
    ).all()
    return [(str(r[0]), str(r[1])) for r in rows]


def planned_changes(connection: Connection, *, ahead: bool = False) -> list[Change]:
    """Every change this revision makes (`run-proof db upgrade --check` prints them); reads
    only. `ahead`: earlier revisions are still pending, so a table they create is taken as
    0001 creates it."""
    schema = _schema(connection)
    changes: list[Change] = []
    traces = _columns(connection, schema, "aos_traces")
    steps = _columns(connection, schema, "aos_trace_steps")
    trace_names = [c for c, _ in traces] if traces is not None else _COLUMNS_0001["aos_traces"]
    step_names = [c for c, _ in steps] if steps is not None else _COLUMNS_0001["aos_trace_steps"]
    for table, names, wanted in (
        ("aos_traces", trace_names, TRACE_COLUMNS),
        ("aos_trace_steps", step_names, STEP_COLUMNS),
    ):
        added, columns = _add_columns(table, names, wanted)
        changes += added
        if table == "aos_traces":
            trace_added = columns
    archive = _columns(connection, schema, "aos_traces_archive")
    if archive is not None:
        present = {c for c, _ in archive}
        for column in trace_added:
            if column.name not in present:
                changes.append(
                    Change(
                        f"aos_traces_archive: add column {column.name} {column.type} (as in"
                        " aos_traces, in its order: AOS's retention INSERT ... SELECT * keeps"
                        " working)",
                        f"ALTER TABLE {{schema}}.aos_traces_archive ADD COLUMN"
                        f" {_quoted(column.name)} {column.type}",
                    )
                )
    changes.append(
        Change(
            "aos_traces: backfill columns of ours only: chain_format = 1 where a genesis hash"
            " exists (format-v1 traces), seal_hash = root_hash where such a trace is sealed;"
            " no AOS column of any row changes, no step row is updated. run-proof's own guard"
            " aos_traces_seal_once (which refuses every UPDATE of a sealed format-v1 trace) is"
            " lifted for this UPDATE only and restored before this revision commits; no trigger"
            " of AOS's is lifted (AOS's trace trigger compares AOS's columns only: it passes)",
            BACKFILL,
        )
    )
    changes.append(
        Change(
            "create tables run_proof_chain_heads (the running chain of each format-v2 trace,"
            " written by the triggers only) and run_proof_adopted_steps (step hashes of adopted"
            " legacy traces, append-only)",
            TABLES,
        )
    )
    if steps is None or not _has_index(connection, schema, CHAIN_INDEX):
        changes.append(
            Change(
                f"create index {CHAIN_INDEX} on aos_trace_steps (trace_id, chain_position),"
                " partial (chain_position IS NOT NULL: format-v2 steps only; no existing row"
                " is in it): the step trigger finds a trace's head by it",
                f"CREATE INDEX IF NOT EXISTS {CHAIN_INDEX} ON {{schema}}.aos_trace_steps"
                " (trace_id, chain_position) WHERE chain_position IS NOT NULL",
            )
        )
    if traces is None or not _has_index(connection, schema, LEGACY_RUN_INDEX):
        changes.append(
            Change(
                f"create index {LEGACY_RUN_INDEX} on aos_traces (run_id), partial (legacy rows"
                " only): every insert checks that no legacy trace holds its run id",
                f"CREATE INDEX IF NOT EXISTS {LEGACY_RUN_INDEX} ON {{schema}}.aos_traces (run_id)"
                " WHERE genesis_hash IS NULL",
            )
        )
    changes.append(
        Change(
            "install the SQL canonicalizer and the format-v2 hash functions"
            " (store/sql/canonical_json.sql, store/sql/chain_v2.sql; stock PostgreSQL, pinned"
            " settings)",
            "@canonical@",
        )
    )
    changes.append(
        Change(
            "replace trigger functions run_proof_guard_trace_insert (format v2 for every insert"
            " without a genesis hash: the database computes it), run_proof_fill_step_identity,"
            " run_proof_reject_step_after_seal (format v1 only), run_proof_guard_step_change,"
            " run_proof_guard_trace_change (format v2: completion columns only until the seal,"
            " sealed by the database; archival as 0005), the ledger's seal and adoption"
            " entries (on seal_hash), run_proof_record_retirement (names seal_hash),"
            " run_proof_record_ids_once (claims format-v2 ids); create run_proof_v2_open_chain,"
            " run_proof_v2_chain_step, run_proof_v2_seal_due, run_proof_adopted_steps_reject_change",
            FUNCTIONS + "\n@ids_once@",
        )
    )
    for table, name, timing, _, condition, function in TRIGGERS:
        condition_text = f" {condition}" if condition else ""
        changes.append(
            Change(
                f"create trigger {name} ({timing} ON {table}{condition_text}, ENABLE ALWAYS)"
                f" -> {function}",
                f"@trigger@{name}",
            )
        )
    aos = _aos_triggers(connection, schema)
    if aos:
        aos_names = ", ".join(f"{n} on {t}" for t, n in aos)
        changes.append(
            Change(
                f"found triggers that are not run-proof's ({aos_names}): none is lifted by this"
                " revision, every one stays in force with the same definition. Its backfill"
                " updates columns of ours on aos_traces only (AOS's trace trigger compares AOS's"
                " columns, so it passes) and no step row; afterwards AOS's statements pass both:"
                " inserts are chained by run-proof's BEFORE/AFTER INSERT triggers, completion"
                " changes AOS's completion columns while run-proof's guard (which fires first,"
                " by name order) adds the seal to columns of ours"
            )
        )
    elif ahead:
        changes.append(Change("lifts no trigger of anyone's; backfill of columns of ours only"))
    return changes


def _execute(statements: str) -> None:
    # Straight to psycopg, as 0002, 0004 and 0005: the SQL holds `%`, `?` and `::`.
    driver = op.get_bind().connection.driver_connection
    if driver is None:  # SQLAlchemy's type: a proxy whose connection was already closed
        raise RuntimeError("the migration's connection is closed")
    driver.execute(statements)


def _ids_once(connection: Connection, schema: str, *, down: bool = False) -> str:
    """0004's run_proof_record_ids_once with format v2 claimed like v1 (or, `down`, back)."""
    before, after = (IDS_ONCE_TO, IDS_ONCE_FROM) if down else (IDS_ONCE_FROM, IDS_ONCE_TO)
    definition = str(
        connection.exec_driver_sql(
            "SELECT pg_get_functiondef(%(f)s::regprocedure)",
            {"f": f"{_quoted(schema)}.run_proof_record_ids_once()"},
        ).scalar_one()
    )
    if before not in definition:
        raise RuntimeError("run_proof_record_ids_once is not as migrations 0004/0006 left it")
    return definition.replace(before, after) + ";"


def _trigger_sql(name: str, schema: str) -> str:
    for table, trigger, timing, level, condition, function in TRIGGERS:
        if trigger == name:
            target = f"{{schema}}.{table}"
            return _render(
                f"DROP TRIGGER IF EXISTS {trigger} ON {target};"
                f" CREATE TRIGGER {trigger} {timing} ON {target} {level} {condition}"
                f" EXECUTE FUNCTION {{schema}}.{function}();"
                f" ALTER TABLE {target} ENABLE ALWAYS TRIGGER {trigger}",
                schema,
            )
    raise KeyError(name)


def upgrade() -> None:
    connection = op.get_bind()
    schema = _schema(connection)
    for change in planned_changes(connection):
        if change.sql is None:
            continue
        if change.sql == "@canonical@":
            # Imported here: alembic imports every revision for any command, and the loader
            # refuses a chain_v2.sql that is not as written.
            from run_proof_pipeline.store.sql import chain_v2_sql

            _execute(canonical_json_sql(schema))
            _execute(chain_v2_sql(schema))
        elif change.sql.startswith("@trigger@"):
            _execute(_trigger_sql(change.sql.removeprefix("@trigger@"), schema))
        elif change.sql.endswith("@ids_once@"):
            _execute(_render(change.sql.removesuffix("@ids_once@"), schema))
            _execute(_ids_once(connection, schema))
        else:
            _execute(_render(change.sql, schema))


def _sibling(filename: str) -> Any:
    """An earlier revision's module (alembic loads revisions without registering them)."""
    path = Path(__file__).with_name(filename)
    spec = importlib.util.spec_from_file_location(f"run_proof_revision_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _function_text(blob: str, name: str) -> str:
    """The CREATE OR REPLACE FUNCTION statement of `name` in an earlier revision's SQL."""
    at = blob.index(f"{name}()")
    start = blob.rindex("CREATE OR REPLACE FUNCTION", 0, at)
    end = blob.index("$$;", blob.index("AS $$", at) + 5) + 3
    return blob[start:end] + "\n"


# (revision file, attribute holding its SQL, functions of it that 0006 replaces).
_PRIOR_FUNCTIONS = (
    ("0001_trace_store.py", "FUNCTIONS", ("run_proof_fill_step_identity", "run_proof_guard_trace_insert")),
    ("0002_ledger.py", "TRIGGERS", ("run_proof_ledger_record_seal", "run_proof_reject_step_after_seal")),
    ("0003_aos_adoption.py", "FUNCTIONS", ("run_proof_ledger_record_adoption", "run_proof_record_retirement")),
)  # fmt: skip
# 0002's and 0003's ledger triggers as they created them.
_PRIOR_LEDGER_TRIGGERS = (
    ("aos_traces_ledger_on_seal", "AFTER UPDATE",
     "WHEN (OLD.root_hash IS NULL AND NEW.root_hash IS NOT NULL AND NEW.genesis_hash IS NOT NULL)",
     "run_proof_ledger_record_seal"),
    ("aos_traces_ledger_on_insert", "AFTER INSERT",
     "WHEN (NEW.root_hash IS NOT NULL AND NEW.genesis_hash IS NOT NULL)",
     "run_proof_ledger_record_seal"),
    ("aos_traces_ledger_on_adoption", "AFTER UPDATE",
     "WHEN (OLD.genesis_hash IS NULL AND NEW.genesis_hash IS NOT NULL"
     " AND NEW.root_hash IS NOT NULL AND OLD.root_hash IS NOT NULL)",
     "run_proof_ledger_record_adoption"),
)  # fmt: skip


def downgrade() -> None:
    """Back to 0005: the triggers and functions of 0001-0005 as they were (0004's search
    path), and without what this revision added: its tables, functions and columns of ours
    (format-v2 traces written since lose their hashes and become legacy rows; a format-v1
    trace keeps its root_hash). AOS's later columns stay: this revision cannot tell whether
    AOS or it added them, and they are AOS's schema."""
    connection = op.get_bind()
    schema = _schema(connection)
    quoted = _quoted(schema)
    statements: list[str] = []
    for table, name, *_ in TRIGGERS:
        if name in NEW_TRIGGERS:
            statements.append(f"DROP TRIGGER IF EXISTS {name} ON {{schema}}.{table}")
    for name, timing, condition, function in _PRIOR_LEDGER_TRIGGERS:
        statements.append(
            f"DROP TRIGGER IF EXISTS {name} ON {{schema}}.aos_traces;"
            f" CREATE TRIGGER {name} {timing} ON {{schema}}.aos_traces FOR EACH ROW {condition}"
            f" EXECUTE FUNCTION {{schema}}.{function}();"
            f" ALTER TABLE {{schema}}.aos_traces ENABLE ALWAYS TRIGGER {name}"
        )
    archival = _sibling("0005_archival.py")
    replaced: list[str] = ["run_proof_guard_step_change", "run_proof_guard_trace_change"]
    statements.append(archival.STEP_GUARD + archival.TRACE_GUARD)
    for filename, attribute, names in _PRIOR_FUNCTIONS:
        blob = getattr(_sibling(filename), attribute)
        for name in names:
            statements.append(_function_text(blob, name))
            replaced.append(name)
    rendered = [_render(statement, schema) for statement in statements]
    rendered.append(_ids_once(connection, schema, down=True))
    for name in replaced:
        # 0004's pinned path; SECURITY DEFINER only where 0001-0005 had it.
        rendered.append(
            f"ALTER FUNCTION {quoted}.{name}() SET search_path = pg_catalog, {quoted}, pg_temp"
        )
    for signature in NEW_FUNCTIONS:
        rendered.append(f"DROP FUNCTION IF EXISTS {quoted}.{signature}")
    rendered.append(f"DROP INDEX IF EXISTS {quoted}.{LEGACY_RUN_INDEX}")
    rendered.append(
        f"DROP TABLE IF EXISTS {quoted}.run_proof_adopted_steps;"
        f" DROP TABLE IF EXISTS {quoted}.run_proof_chain_heads"
    )
    for table, columns in (
        ("aos_traces", OUR_TRACE_COLUMNS),
        ("aos_traces_archive", OUR_TRACE_COLUMNS),
        ("aos_trace_steps", OUR_STEP_COLUMNS),
    ):
        if _columns(connection, schema, table) is not None:
            drops = ", ".join(f"DROP COLUMN IF EXISTS {c}" for c in columns)
            rendered.append(f"ALTER TABLE {quoted}.{table} {drops}")
    from run_proof_pipeline.store.sql import CANONICAL_JSON_FUNCTIONS, CHAIN_V2_FUNCTIONS

    for signature in (*CHAIN_V2_FUNCTIONS, *reversed(CANONICAL_JSON_FUNCTIONS)):
        rendered.append(f"DROP FUNCTION IF EXISTS {quoted}.{signature}")
    for statement in rendered:
        _execute(statement)
