"""An AOS trace store as AOS's WHOLE migration chain leaves it (issue 13, "Facts about AOS as
deployed"), legacy rows written by AOS's own statements, and those statements as functions.

`aos_fixtures.py` builds AOS's first migration only. This module adds what AOS's later
migrations did to the tables: the columns of its revisions 052 (`checksum`), 078/079 (the SDSR
columns, `source`, `level`), 080 (`archived_at`) and its four immutability triggers as revisions
052, 083 and 126 leave them. The SQL below is written for these tests from those facts; it
transcribes the triggers' logic because the fixture must refuse exactly what AOS's database
refuses. `aos_traces_archive` is created as AOS's first migration creates it
(`LIKE aos_traces INCLUDING ALL`) and no later AOS revision adds a column to it, so it lacks
the five columns added since: AOS's own retention (`INSERT INTO aos_traces_archive SELECT *`)
fails on such a database until `run-proof db upgrade` brings the archive to the same columns.

The writer functions perform AOS's `PostgresTraceStore` patterns with its statements, each in
its own autocommit transaction (AOS runs asyncpg with `statement_cache_size=0`; psycopg in
autocommit mode sends the same statements one transaction each).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from run_proof_pipeline.settings import DatabaseUrl

# AOS's revision 012: NOT NULL where AOS's model says nullable=False. Its `default=` values are
# client-side (SQLAlchemy), so only `server_default`s become DEFAULTs here.
FIRST_MIGRATION = """
CREATE TABLE aos_traces (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    trace_id varchar(64) NOT NULL,
    run_id varchar(64) NOT NULL,
    correlation_id varchar(64) NOT NULL,
    tenant_id varchar(64) NOT NULL,
    agent_id varchar(64),
    plan_id varchar(64),
    seed bigint,
    frozen_timestamp varchar(64),
    root_hash varchar(64) NOT NULL,
    plan_hash varchar(64),
    schema_version varchar(16) NOT NULL,
    plan jsonb NOT NULL,
    trace jsonb NOT NULL,
    metadata jsonb,
    status varchar(32) NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    stored_by varchar(64)
);
CREATE UNIQUE INDEX ix_aos_traces_trace_id ON aos_traces (trace_id);
CREATE INDEX ix_aos_traces_run_id ON aos_traces (run_id);
CREATE TABLE aos_trace_steps (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    trace_id varchar(64) NOT NULL REFERENCES aos_traces (trace_id) ON DELETE CASCADE,
    step_index integer NOT NULL,
    skill_id varchar(128) NOT NULL,
    skill_name varchar(128) NOT NULL,
    params jsonb NOT NULL,
    status varchar(32) NOT NULL,
    outcome_category varchar(64) NOT NULL,
    outcome_code varchar(64),
    outcome_data jsonb,
    cost_cents double precision NOT NULL,
    duration_ms double precision NOT NULL,
    retry_count integer NOT NULL,
    input_hash varchar(64),
    output_hash varchar(64),
    rng_state_before varchar(128),
    idempotency_key varchar(128),
    replay_behavior varchar(16) NOT NULL,
    "timestamp" timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_aos_traces_tenant ON aos_traces (tenant_id);
CREATE INDEX idx_aos_traces_root_hash ON aos_traces (root_hash);
CREATE INDEX idx_aos_traces_created_at ON aos_traces (created_at);
CREATE INDEX idx_aos_traces_run_id ON aos_traces (run_id);
CREATE INDEX idx_aos_trace_steps_trace ON aos_trace_steps (trace_id);
CREATE INDEX idx_aos_trace_steps_idempotency ON aos_trace_steps (idempotency_key);
CREATE UNIQUE INDEX idx_aos_trace_steps_composite ON aos_trace_steps (trace_id, step_index);
CREATE TABLE aos_traces_archive (LIKE aos_traces INCLUDING ALL);
CREATE INDEX idx_aos_traces_archive_created_at ON aos_traces_archive (created_at);
"""

# AOS's revisions 052 (checksum), 078 and 079 (SDSR), 080 (archival): aos_traces only, never
# the archive.
LATER_COLUMNS = """
ALTER TABLE aos_traces ADD COLUMN checksum varchar(64);
ALTER TABLE aos_traces ADD COLUMN incident_id varchar(100);
ALTER TABLE aos_traces ADD COLUMN is_synthetic boolean NOT NULL DEFAULT false;
ALTER TABLE aos_traces ADD COLUMN synthetic_scenario_id varchar(64);
ALTER TABLE aos_trace_steps ADD COLUMN source varchar(50) NOT NULL DEFAULT 'engine';
ALTER TABLE aos_trace_steps ADD COLUMN level varchar(16) NOT NULL DEFAULT 'INFO';
ALTER TABLE aos_trace_steps ADD COLUMN is_synthetic boolean NOT NULL DEFAULT false;
ALTER TABLE aos_trace_steps ADD COLUMN synthetic_scenario_id varchar;
ALTER TABLE aos_traces ADD COLUMN archived_at timestamptz;
ALTER TABLE aos_trace_steps ADD COLUMN archived_at timestamptz;
CREATE INDEX idx_aos_traces_incident ON aos_traces (incident_id) WHERE incident_id IS NOT NULL;
CREATE INDEX idx_aos_trace_steps_level ON aos_trace_steps (level);
CREATE INDEX ix_aos_traces_archived ON aos_traces (archived_at) WHERE archived_at IS NULL;
"""

# AOS's four immutability triggers, with the semantics of its revisions 052 (the two delete
# restrictions), 083 (the step trigger) and 126 (the trace trigger). Every comparison names an
# AOS column; a column added by someone else is not compared.
TRACE_COLUMNS_COMPARED = (
    "run_id correlation_id tenant_id agent_id plan_id seed frozen_timestamp root_hash plan_hash"
    " schema_version plan trace started_at created_at stored_by checksum incident_id"
    " is_synthetic synthetic_scenario_id"
).split()
STEP_COLUMNS_COMPARED = (
    "trace_id step_index skill_id skill_name params status outcome_category outcome_code"
    " outcome_data cost_cents duration_ms retry_count input_hash output_hash rng_state_before"
    " idempotency_key replay_behavior timestamp source level is_synthetic synthetic_scenario_id"
).split()


def _unchanged(columns: list[str]) -> str:
    return "\n".join(f"        AND NEW.{c} IS NOT DISTINCT FROM OLD.{c}" for c in columns)


# AOS's RAISE arguments, word for word (its revisions 052, 083 and 126).
TRACE_UPDATE_REFUSED = (
    "'S6_IMMUTABILITY_VIOLATION: aos_traces is immutable. UPDATE rejected for "
    "trace_id=%. Only archival (archived_at: NULL -> timestamp) or completion "
    "(status/completed_at/metadata only) is permitted.', OLD.trace_id"
)
STEP_UPDATE_REFUSED = (
    "'S6_IMMUTABILITY_VIOLATION: aos_trace_steps is immutable. UPDATE rejected for "
    "step_index=% trace_id=%. Only archival (archived_at: NULL -> timestamp) is "
    "permitted.', OLD.step_index, OLD.trace_id"
)
STEP_DELETE_REFUSED = (
    "'S6_IMMUTABILITY_VIOLATION: aos_trace_steps direct DELETE not allowed. Use "
    "archival. step_index=% trace_id=%', OLD.step_index, OLD.trace_id"
)
TRACE_DELETE_REFUSED = (
    "'S6_IMMUTABILITY_VIOLATION: aos_traces direct DELETE not allowed. Archive "
    "first using cleanup_old_traces(). trace_id=%', OLD.trace_id"
)

IMMUTABILITY = f"""
CREATE FUNCTION reject_trace_update_lifecycle() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Archival: archived_at NULL -> a timestamp, every AOS column as it was.
    IF NEW.archived_at IS DISTINCT FROM OLD.archived_at
        AND OLD.archived_at IS NULL AND NEW.archived_at IS NOT NULL
        AND NEW.id = OLD.id AND NEW.trace_id = OLD.trace_id
{_unchanged(TRACE_COLUMNS_COMPARED + ["metadata", "status", "completed_at"])}
    THEN
        RETURN NEW;
    END IF;
    -- Completion: only status, completed_at and metadata change.
    IF NEW.archived_at IS NOT DISTINCT FROM OLD.archived_at
        AND NEW.id = OLD.id AND NEW.trace_id = OLD.trace_id
{_unchanged(TRACE_COLUMNS_COMPARED)}
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION {TRACE_UPDATE_REFUSED};
END;
$$;
CREATE TRIGGER prevent_trace_update BEFORE UPDATE ON aos_traces
    FOR EACH ROW EXECUTE FUNCTION reject_trace_update_lifecycle();

CREATE FUNCTION reject_trace_step_update_lifecycle() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.archived_at IS DISTINCT FROM OLD.archived_at
        AND OLD.archived_at IS NULL AND NEW.archived_at IS NOT NULL
        AND NEW.id = OLD.id
{_unchanged(STEP_COLUMNS_COMPARED)}
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION {STEP_UPDATE_REFUSED};
END;
$$;
CREATE TRIGGER prevent_trace_step_update BEFORE UPDATE ON aos_trace_steps
    FOR EACH ROW EXECUTE FUNCTION reject_trace_step_update_lifecycle();

CREATE FUNCTION reject_trace_step_delete() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    parent_exists boolean;
BEGIN
    -- Only the cascade of the trace's own deletion (the parent is gone by then).
    SELECT EXISTS (SELECT 1 FROM aos_traces WHERE trace_id = OLD.trace_id) INTO parent_exists;
    IF parent_exists THEN
        RAISE EXCEPTION {STEP_DELETE_REFUSED};
    END IF;
    RETURN OLD;
END;
$$;
CREATE TRIGGER enforce_trace_step_delete_restriction BEFORE DELETE ON aos_trace_steps
    FOR EACH ROW EXECUTE FUNCTION reject_trace_step_delete();

CREATE FUNCTION reject_trace_delete() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    archived boolean;
BEGIN
    -- Only once a copy is in the archive (AOS's retention copies, then deletes).
    SELECT EXISTS (SELECT 1 FROM aos_traces_archive WHERE trace_id = OLD.trace_id) INTO archived;
    IF NOT archived THEN
        RAISE EXCEPTION {TRACE_DELETE_REFUSED};
    END IF;
    RETURN OLD;
END;
$$;
CREATE TRIGGER enforce_trace_delete_restriction BEFORE DELETE ON aos_traces
    FOR EACH ROW EXECUTE FUNCTION reject_trace_delete();
"""

# (table, trigger, function): AOS's triggers as its chain leaves them.
AOS_TRIGGERS = (
    ("aos_traces", "prevent_trace_update", "reject_trace_update_lifecycle"),
    ("aos_trace_steps", "prevent_trace_step_update", "reject_trace_step_update_lifecycle"),
    ("aos_trace_steps", "enforce_trace_step_delete_restriction", "reject_trace_step_delete"),
    ("aos_traces", "enforce_trace_delete_restriction", "reject_trace_delete"),
)
AOS_TABLES = ("aos_traces", "aos_trace_steps", "aos_traces_archive")

# Where the legacy rows' creation times start; retention tests cut below or above it.
LEGACY_CREATED = datetime(2025, 6, 1, 9, 15, 30, 123456, tzinfo=UTC)
# A legacy row older than every other: AOS's retention with a window ending after this date
# (and before LEGACY_CREATED) takes it, and only it.
ANCIENT_CREATED = datetime(2020, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)


def connect(url: DatabaseUrl) -> psycopg.Connection[Any]:
    """A connection as AOS's pool hands it out: every statement its own transaction."""
    return psycopg.connect(url.libpq(), autocommit=True)


def status_to_level(status: str) -> str:
    """AOS's fixed mapping of a step status to its log level."""
    lowered = status.lower()
    if lowered in ("failure", "error"):
        return "ERROR"
    if lowered in ("retry", "retrying"):
        return "WARN"
    return "INFO"


def _now() -> datetime:
    return datetime.now(UTC)


def start_trace(
    conn: psycopg.Connection[Any],
    run_id: str,
    correlation_id: str,
    tenant_id: str,
    agent_id: str | None,
    plan: list[dict[str, Any]],
    *,
    is_synthetic: bool = False,
    synthetic_scenario_id: str | None = None,
    incident_id: str | None = None,
) -> str:
    """AOS's `start_trace`: `trace_<run_id>`, root hash 'pending', ON CONFLICT DO NOTHING."""
    now = _now()
    trace_id = f"trace_{run_id}"
    conn.execute(
        "INSERT INTO aos_traces (trace_id, run_id, correlation_id, tenant_id, agent_id,"
        " root_hash, plan, trace, schema_version, status, started_at, created_at,"
        " is_synthetic, synthetic_scenario_id, incident_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (trace_id) DO NOTHING",
        (
            trace_id,
            run_id,
            correlation_id,
            tenant_id,
            agent_id,
            "pending",
            json.dumps(plan),
            json.dumps({"steps": []}),
            "1.0",
            "running",
            now,
            now,
            is_synthetic,
            synthetic_scenario_id,
            incident_id,
        ),
    )
    return trace_id


def record_step(
    conn: psycopg.Connection[Any],
    trace_id: str,
    step_index: int,
    skill_name: str,
    params: dict[str, Any],
    status: str,
    outcome_category: str,
    outcome_code: str | None,
    outcome_data: dict[str, Any] | None,
    cost_cents: float,
    duration_ms: float,
    retry_count: int,
    *,
    source: str = "engine",
    is_synthetic: bool = False,
    synthetic_scenario_id: str | None = None,
) -> None:
    """AOS's `record_step`: the parent check first, then the insert (no run_id, no tenant)."""
    exists = conn.execute(
        "SELECT EXISTS(SELECT 1 FROM aos_traces WHERE trace_id = %s)", (trace_id,)
    ).fetchone()
    if not (exists and exists[0]):
        raise ValueError(f"Parent trace {trace_id} does not exist - orphan steps forbidden")
    conn.execute(
        "INSERT INTO aos_trace_steps (trace_id, step_index, skill_id, skill_name, params,"
        " status, outcome_category, outcome_code, outcome_data, cost_cents, duration_ms,"
        " retry_count, replay_behavior, timestamp, source, level, is_synthetic,"
        " synthetic_scenario_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (trace_id, step_index) DO NOTHING",
        (
            trace_id,
            step_index,
            skill_name,
            skill_name,
            json.dumps(params),
            status,
            outcome_category,
            outcome_code,
            json.dumps(outcome_data) if outcome_data else None,
            cost_cents,
            duration_ms,
            retry_count,
            "execute",
            _now(),
            source,
            status_to_level(status),
            is_synthetic,
            synthetic_scenario_id,
        ),
    )


def complete_trace(
    conn: psycopg.Connection[Any], run_id: str, status: str, metadata: dict[str, Any] | None
) -> int:
    """AOS's `complete_trace`: every trace of the run id, by run id."""
    return conn.execute(
        "UPDATE aos_traces SET status = %s, completed_at = %s,"
        " metadata = COALESCE(%s, metadata) WHERE run_id = %s",
        (status, _now(), json.dumps(metadata) if metadata else None, run_id),
    ).rowcount


def mark_trace_aborted(conn: psycopg.Connection[Any], run_id: str, reason: str) -> int:
    """AOS's `mark_trace_aborted`: a running trace of the run becomes 'aborted'."""
    return conn.execute(
        "UPDATE aos_traces SET status = 'aborted', completed_at = %s,"
        " metadata = jsonb_set(COALESCE(metadata, '{}'::jsonb), '{abort_reason}', %s::jsonb)"
        " WHERE run_id = %s AND status = 'running'",
        (_now(), json.dumps(reason), run_id),
    ).rowcount


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def store_trace(
    conn: psycopg.Connection[Any],
    trace: dict[str, Any],
    tenant_id: str,
    stored_by: str | None = None,
    *,
    is_synthetic: bool = False,
    synthetic_scenario_id: str | None = None,
    incident_id: str | None = None,
) -> str:
    """AOS's `store_trace`: the whole trace row first, then each step in its own statement."""
    trace_id = trace.get("trace_id") or f"trace_{uuid.uuid4().hex[:16]}"
    run_id = trace.get("run_id") or trace.get("trace_id") or trace_id
    conn.execute(
        "INSERT INTO aos_traces (trace_id, run_id, correlation_id, tenant_id, agent_id,"
        " plan_id, seed, frozen_timestamp, root_hash, plan_hash, schema_version, plan, trace,"
        " metadata, status, started_at, completed_at, stored_by, is_synthetic,"
        " synthetic_scenario_id, incident_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
        " %s, %s) ON CONFLICT (trace_id) DO NOTHING",
        (
            trace_id,
            run_id,
            trace.get("correlation_id", run_id),
            tenant_id,
            trace.get("agent_id"),
            trace.get("plan_id"),
            trace.get("seed", 42),
            trace.get("frozen_timestamp") or trace.get("timestamp"),
            trace.get("root_hash"),
            trace.get("plan_hash"),
            trace.get("schema_version", "1.1"),
            json.dumps(trace.get("plan", [])),
            json.dumps(trace),
            json.dumps(trace.get("metadata", {})),
            trace.get("status", "completed"),
            _parse_time(trace.get("started_at")) or _now(),
            _parse_time(trace.get("completed_at")),
            stored_by,
            trace.get("is_synthetic", is_synthetic),
            trace.get("synthetic_scenario_id", synthetic_scenario_id),
            trace.get("incident_id", incident_id),
        ),
    )
    for step in trace.get("steps", []):
        status = step.get("status", "success")
        conn.execute(
            "INSERT INTO aos_trace_steps (trace_id, step_index, skill_id, skill_name, params,"
            " status, outcome_category, outcome_code, outcome_data, cost_cents, duration_ms,"
            " retry_count, input_hash, output_hash, rng_state_before, idempotency_key,"
            " replay_behavior, timestamp, source, level)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
            " %s, %s) ON CONFLICT (trace_id, step_index) DO NOTHING",
            (
                trace_id,
                step.get("step_index", 0),
                step.get("skill_id", step.get("skill_name", "unknown")),
                step.get("skill_name", "unknown"),
                json.dumps(step.get("params", {})),
                status,
                step.get("outcome_category", "SUCCESS"),
                step.get("outcome_code"),
                json.dumps(step.get("outcome_data")) if step.get("outcome_data") else None,
                step.get("cost_cents", 0.0),
                step.get("duration_ms", 0.0),
                step.get("retry_count", 0),
                step.get("input_hash"),
                step.get("output_hash"),
                step.get("rng_state_before") or step.get("rng_state"),
                step.get("idempotency_key"),
                step.get("replay_behavior", "execute"),
                _parse_time(step.get("timestamp")) or _now(),
                step.get("source", "engine"),
                status_to_level(status),
            ),
        )
    return trace_id


def cleanup_old_traces(conn: psycopg.Connection[Any], days: int) -> int:
    """AOS's retention: one set-based copy into the archive, then one set-based delete."""
    conn.execute(
        "INSERT INTO aos_traces_archive SELECT * FROM aos_traces"
        " WHERE created_at < now() - interval '1 day' * %s ON CONFLICT (trace_id) DO NOTHING",
        (days,),
    )
    return conn.execute(
        "DELETE FROM aos_traces WHERE created_at < now() - interval '1 day' * %s", (days,)
    ).rowcount


def archive_trace(conn: psycopg.Connection[Any], trace_id: str) -> tuple[int, int]:
    """AOS's SDSR archival (its revision 080): archived_at on the trace and on its steps."""
    trace = conn.execute(
        "UPDATE aos_traces SET archived_at = now() WHERE trace_id = %s AND archived_at IS NULL",
        (trace_id,),
    ).rowcount
    steps = conn.execute(
        "UPDATE aos_trace_steps SET archived_at = now()"
        " WHERE trace_id = %s AND archived_at IS NULL",
        (trace_id,),
    ).rowcount
    return trace, steps


def retention_days_before(cutoff: datetime) -> int:
    """The `days` of `cleanup_old_traces` whose window ends at about `cutoff` (a whole day
    later at most): it takes the rows created before then."""
    return (_now() - cutoff).days


@dataclass(frozen=True)
class LegacyRun:
    tenant_id: str
    run_id: str
    trace_id: str


def _step(conn: psycopg.Connection[Any], trace_id: str, index: int, status: str) -> None:
    record_step(
        conn,
        trace_id,
        index,
        "http_call",
        {"url": "https://example.invalid/ü", "attempt": index, "big": 1e16},
        status,
        "SUCCESS" if status == "success" else "FAILURE",
        "200" if status == "success" else "500",
        {"ratio": 0.1 * index, "note": "naïve ✓"} if index % 2 == 0 else None,
        0.3,
        227.6 + index,
        1 if status == "retry" else 0,
        source="replay" if index == 2 else "engine",
    )


def _old_trace(conn: psycopg.Connection[Any], trace_id: str, created_at: datetime) -> None:
    """A trace by an older AOS writer, every column set (checksum too), created long ago."""
    conn.execute(
        "INSERT INTO aos_traces (trace_id, run_id, correlation_id, tenant_id, agent_id,"
        " plan_id, seed, frozen_timestamp, root_hash, plan_hash, schema_version, plan, trace,"
        " metadata, status, started_at, completed_at, created_at, stored_by, checksum,"
        " incident_id, is_synthetic, synthetic_scenario_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
        " %s, %s, %s, %s)",
        (
            trace_id,
            f"run-{trace_id}",
            f"corr-{trace_id}",
            "acme",
            "agent-old",
            "plan-old",
            7,
            "2020-03-04T05:06:07Z",
            "a" * 64,
            "b" * 64,
            "1.1",
            json.dumps([{"skill": "http_call"}]),
            json.dumps({"steps": [{"step_index": 0}], "budget": 1e21}),
            json.dumps({"source": "aos"}),
            "completed",
            created_at,
            created_at + timedelta(minutes=5),
            created_at,
            "aos-backend",
            "c" * 64,
            "INC-0042",
            False,
            None,
        ),
    )
    conn.execute(
        "INSERT INTO aos_trace_steps (trace_id, step_index, skill_id, skill_name, params,"
        " status, outcome_category, cost_cents, duration_ms, retry_count, input_hash,"
        " output_hash, rng_state_before, idempotency_key, replay_behavior, timestamp)"
        " VALUES (%s, 0, 'skill.http_call', 'http_call', '{}', 'success', 'SUCCESS', 0, 1.5,"
        " 0, %s, %s, 'rng-0', %s, 'execute', %s)",
        (trace_id, "d" * 64, "e" * 64, f"idem-{trace_id}", created_at),
    )


def write_legacy_rows(conn: psycopg.Connection[Any]) -> list[LegacyRun]:
    """Legacy rows of every kind AOS's writer leaves: completed, aborted, running, synthetic,
    stored whole (a `trace_<uuid>` id, a step without index, no completion time), a run id
    shared by two traces, an archived trace, an ancient one, and a trace already moved to the
    archive table."""
    runs: list[LegacyRun] = []
    plan = [{"skill": "http_call", "params": {"url": "https://example.invalid"}}]

    done = start_trace(conn, "run-done", "corr-done", "acme", "agent-1", plan)
    for index, status in enumerate(("success", "retry", "failure")):
        _step(conn, done, index, status)
    complete_trace(conn, "run-done", "completed", {"cost_cents": 0.9, "note": "✓"})
    runs.append(LegacyRun("acme", "run-done", done))

    aborted = start_trace(conn, "run-aborted", "corr-ab", "globex", None, plan)
    _step(conn, aborted, 0, "success")
    mark_trace_aborted(conn, "run-aborted", "finalization failed: timeout")
    runs.append(LegacyRun("globex", "run-aborted", aborted))

    live = start_trace(conn, "run-live", "corr-live", "acme", "agent-1", plan)
    for index in range(2):
        _step(conn, live, index, "success")
    runs.append(LegacyRun("acme", "run-live", live))

    synthetic = start_trace(
        conn,
        "run-synth",
        "corr-synth",
        "initech",
        "agent-2",
        plan,
        is_synthetic=True,
        synthetic_scenario_id="ACTIVITY-RETRY-001",
        incident_id="INC-7",
    )
    record_step(
        conn,
        synthetic,
        0,
        "llm_call",
        {"prompt": "hi"},
        "success",
        "SUCCESS",
        None,
        None,
        1.25,
        10.0,
        0,
        is_synthetic=True,
        synthetic_scenario_id="ACTIVITY-RETRY-001",
    )
    complete_trace(conn, "run-synth", "completed", None)
    runs.append(LegacyRun("initech", "run-synth", synthetic))

    whole = {
        "run_id": "run-shared",
        "root_hash": "f" * 64,
        "plan": plan,
        "started_at": "2025-11-03T08:30:15.250000+00:00",
        "metadata": {"sdk": "py"},
        "steps": [
            {"skill_name": "http_call", "params": {"n": 1}, "timestamp": "2025-11-03T08:30:16"},
        ],
    }
    stored = store_trace(conn, whole, "acme", stored_by="user-1")
    runs.append(LegacyRun("acme", "run-shared", stored))
    second = dict(whole, trace_id="trace_shared_2", status="failed")
    second["steps"] = [
        {"step_index": 0, "skill_name": "a", "status": "success"},
        {"step_index": 1, "skill_name": "b", "status": "error", "outcome_data": {"e": 1}},
    ]
    runs.append(LegacyRun("acme", "run-shared", store_trace(conn, second, "acme")))

    archived = start_trace(conn, "run-archived", "corr-arch", "acme", "agent-1", plan)
    _step(conn, archived, 0, "success")
    complete_trace(conn, "run-archived", "completed", {"ok": True})
    archive_trace(conn, archived)
    runs.append(LegacyRun("acme", "run-archived", archived))

    _old_trace(conn, "trace_ancient", ANCIENT_CREATED)
    runs.append(LegacyRun("acme", "run-trace_ancient", "trace_ancient"))
    for offset in range(2):
        _old_trace(conn, f"trace_old_{offset}", LEGACY_CREATED + timedelta(days=10 * offset))
        runs.append(LegacyRun("acme", f"run-trace_old_{offset}", f"trace_old_{offset}"))

    # Moved to the archive by hand (the archive has AOS's first 20 columns only, so its
    # retention statement cannot), then deleted: AOS's delete trigger lets it go.
    _old_trace(conn, "trace_gone", LEGACY_CREATED - timedelta(days=30))
    first_columns = ", ".join(
        row[0]
        for row in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'aos_traces_archive'::regclass"
            " AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        ).fetchall()
    )
    conn.execute(
        f"INSERT INTO aos_traces_archive ({first_columns})"
        f" SELECT {first_columns} FROM aos_traces WHERE trace_id = 'trace_gone'"
    )
    conn.execute("DELETE FROM aos_traces WHERE trace_id = 'trace_gone'")
    return runs


def create_aos_deployed_store(url: DatabaseUrl) -> list[LegacyRun]:
    """AOS's tables and triggers as its whole chain leaves them, with legacy rows written by
    AOS's statements; run-proof has not touched the database. Returns the legacy runs still in
    aos_traces."""
    with psycopg.connect(url.libpq()) as conn:
        conn.execute(FIRST_MIGRATION)
        conn.execute(LATER_COLUMNS)
        conn.execute(IMMUTABILITY)
    with connect(url) as conn:
        return write_legacy_rows(conn)


def row_dumps(url: DatabaseUrl) -> dict[str, dict[str, dict[str, Any]]]:
    """Every row of AOS's three tables as JSON, by id."""
    with psycopg.connect(url.libpq()) as conn:
        return {
            table: {
                str(row[0]["id"]): row[0]
                for row in conn.execute(f"SELECT to_jsonb(t) FROM {table} t").fetchall()
            }
            for table in AOS_TABLES
        }


TRIGGER_SQL = """
SELECT t.tgrelid::regclass::text, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled::text,
       pg_get_functiondef(t.tgfoid)
FROM pg_trigger t
WHERE NOT t.tgisinternal AND t.tgname = ANY(%s)
ORDER BY 1, 2
"""


def aos_trigger_definitions(url: DatabaseUrl) -> list[tuple[str, str, str, str, str]]:
    """AOS's triggers: table, name, definition, enabled state, function definition."""
    with psycopg.connect(url.libpq()) as conn:
        return conn.execute(TRIGGER_SQL, ([name for _, name, _ in AOS_TRIGGERS],)).fetchall()


# --- Format v2 as the database chains it (migration 0006), recomputed from the rows ---------

V2_TRACE_SQL = """
SELECT tenant_id, run_id, trace_id, agent_id, plan_id, plan::text AS plan, started_at,
       created_at, correlation_id, seed, frozen_timestamp, plan_hash, schema_version,
       trace::text AS trace, stored_by, checksum, incident_id, is_synthetic,
       synthetic_scenario_id, root_hash, status, completed_at, metadata::text AS metadata,
       chain_format, genesis_hash, seal_hash, chain_length, seal_seq, chain_problem
FROM aos_traces WHERE trace_id = %s
"""
V2_STEP_SQL = """
SELECT trace_id, step_index, skill_id, skill_name, params::text AS params, status,
       outcome_category, outcome_code, outcome_data::text AS outcome_data, cost_cents,
       duration_ms, retry_count, "timestamp", input_hash, output_hash, rng_state_before,
       idempotency_key, replay_behavior, source, level, is_synthetic, synthetic_scenario_id,
       chain_position, prev_hash, step_hash, chain_problem
FROM aos_trace_steps WHERE trace_id = %s ORDER BY chain_position NULLS LAST, step_index
"""


@dataclass(frozen=True)
class ChainedStep:
    step_index: int
    chain_position: int | None
    prev_hash: str | None
    step_hash: str | None
    expected_hash: str
    chain_problem: str | None


@dataclass(frozen=True)
class ChainedRun:
    """A format-v2 trace's stored hashes beside the Python reference's (records_v2),
    recomputed from the rows as stored; steps in chain order."""

    trace: dict[str, Any]
    expected_genesis: str
    steps: list[ChainedStep]
    # The seal over the head after chain_length steps (None when not sealed).
    expected_seal: str | None

    def assert_matches(self) -> None:
        assert self.trace["chain_format"] == 2, self.trace
        assert self.trace["genesis_hash"] == self.expected_genesis, self.trace
        prev = self.expected_genesis
        for position, step in enumerate(self.steps):
            assert step.chain_position == position, step
            assert step.prev_hash == prev, step
            assert step.step_hash == step.expected_hash, step
            prev = step.expected_hash
        assert self.trace["seal_hash"] == self.expected_seal, self.trace


def _parsed(text: str | None) -> Any:
    from run_proof_pipeline.integrity.canonical_v2 import parse_stored_json_v2

    return None if text is None else parse_stored_json_v2(text)


def chained_run(conn: psycopg.Connection[Any], trace_id: str) -> ChainedRun:
    """The trace's rows and what records_v2 says their hashes must be."""
    import hashlib

    from psycopg.rows import dict_row

    from run_proof_pipeline.integrity.records_v2 import (
        header_canonical_v2,
        seal_canonical_v2,
        step_canonical_v2,
    )

    with conn.cursor(row_factory=dict_row) as cur:
        trace = cur.execute(V2_TRACE_SQL, (trace_id,)).fetchone()
        assert trace is not None, trace_id
        steps = cur.execute(V2_STEP_SQL, (trace_id,)).fetchall()
    header = {
        k: trace[k]
        for k in (
            "tenant_id run_id trace_id agent_id plan_id started_at created_at correlation_id"
            " seed frozen_timestamp plan_hash schema_version stored_by checksum incident_id"
            " is_synthetic synthetic_scenario_id"
        ).split()
    }
    header.update(plan=_parsed(trace["plan"]), trace=_parsed(trace["trace"]))
    genesis = hashlib.sha256(header_canonical_v2(**header, aos_root_hash=trace["root_hash"]))
    prev = genesis.digest()
    chained: list[ChainedStep] = []
    for step in steps:
        fields = {
            k: step[k]
            for k in (
                "trace_id step_index skill_id skill_name status outcome_category outcome_code"
                " cost_cents duration_ms retry_count timestamp input_hash output_hash"
                " rng_state_before idempotency_key replay_behavior source level is_synthetic"
                " synthetic_scenario_id"
            ).split()
        }
        canonical = step_canonical_v2(
            **fields,
            tenant_id=trace["tenant_id"],
            run_id=trace["run_id"],
            params=_parsed(step["params"]),
            outcome_data=_parsed(step["outcome_data"]),
        )
        digest = hashlib.sha256(prev + canonical).digest()
        chained.append(
            ChainedStep(
                step["step_index"],
                step["chain_position"],
                step["prev_hash"],
                step["step_hash"],
                digest.hex(),
                step["chain_problem"],
            )
        )
        prev = digest
    seal = None
    if trace["chain_length"] is not None and trace["seal_hash"] is not None:
        n = trace["chain_length"]
        head = bytes.fromhex(chained[n - 1].expected_hash) if n else genesis.digest()
        record = seal_canonical_v2(
            tenant_id=trace["tenant_id"],
            run_id=trace["run_id"],
            trace_id=trace["trace_id"],
            status=trace["status"],
            completed_at=trace["completed_at"],
            chain_length=n,
            metadata=_parsed(trace["metadata"]),
        )
        seal = hashlib.sha256(head + record).hexdigest()
    return ChainedRun(trace, genesis.hexdigest(), chained, seal)


def ledger_entries(conn: psycopg.Connection[Any], trace_id: str) -> list[tuple[str, int, str]]:
    """(kind, chain_length, root_hash) of the trace's ledger entries, in order."""
    return [
        (str(r[0]), int(r[1]), str(r[2]))
        for r in conn.execute(
            "SELECT kind, chain_length, root_hash FROM run_proof_ledger WHERE trace_id = %s"
            " ORDER BY seq",
            (trace_id,),
        ).fetchall()
    ]
