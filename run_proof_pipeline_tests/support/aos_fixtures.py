"""An AOS trace store as AOS's own migration creates it, with legacy data, and the SQL AOS
itself runs against it (inserts without run_id/tenant_id, completing a running trace,
retention into aos_traces_archive).

Everything here is plain SQL through psycopg with bound parameters: these helpers stand in
for AOS's code, not for run-proof's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg.types.json import Jsonb
from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import run_on_connection

# Exactly the tables of issue 7 ("Facts about the AOS tables"). Lengths the issue leaves open
# are AOS-like guesses; nothing in run-proof depends on them.
AOS_SCHEMA = """
CREATE TABLE aos_traces (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    trace_id varchar(64) NOT NULL UNIQUE,
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
CREATE INDEX ix_aos_traces_run_id ON aos_traces (run_id);
CREATE INDEX ix_aos_traces_tenant_id ON aos_traces (tenant_id);

CREATE TABLE aos_trace_steps (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    trace_id varchar(64) REFERENCES aos_traces (trace_id) ON DELETE CASCADE,
    step_index integer,
    skill_id varchar(128),
    skill_name varchar(128),
    params jsonb NOT NULL,
    status varchar(32),
    outcome_category varchar(32) NOT NULL,
    outcome_code varchar(64),
    outcome_data jsonb,
    cost_cents double precision,
    duration_ms double precision,
    retry_count integer,
    input_hash varchar(64),
    output_hash varchar(64),
    rng_state_before varchar(128),
    idempotency_key varchar(128),
    replay_behavior varchar(16) NOT NULL DEFAULT 'execute',
    "timestamp" timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT uq_aos_trace_steps_trace_step UNIQUE (trace_id, step_index)
);
CREATE INDEX ix_aos_trace_steps_trace_id ON aos_trace_steps (trace_id);

CREATE TABLE aos_traces_archive (LIKE aos_traces INCLUDING ALL);
"""

AOS_TRACE_COLUMNS = (
    "id",
    "trace_id",
    "run_id",
    "correlation_id",
    "tenant_id",
    "agent_id",
    "plan_id",
    "seed",
    "frozen_timestamp",
    "root_hash",
    "plan_hash",
    "schema_version",
    "plan",
    "trace",
    "metadata",
    "status",
    "started_at",
    "completed_at",
    "created_at",
    "stored_by",
)
AOS_STEP_COLUMNS = (
    "id",
    "trace_id",
    "step_index",
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
    "input_hash",
    "output_hash",
    "rng_state_before",
    "idempotency_key",
    "replay_behavior",
    "timestamp",
)
AOS_TABLE_COLUMNS = {
    "aos_traces": AOS_TRACE_COLUMNS,
    "aos_traces_archive": AOS_TRACE_COLUMNS,
    "aos_trace_steps": AOS_STEP_COLUMNS,
}

LEGACY_BASE = datetime(2025, 11, 3, 8, 30, 15, 250000, tzinfo=UTC)


def aos_hash(*parts: object) -> str:
    """A stand-in for AOS's own trace hash: 64 hex characters, not format v1."""
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


@dataclass(frozen=True)
class LegacyTrace:
    tenant_id: str
    run_id: str
    trace_id: str
    status: str
    steps: int
    started_at: datetime
    completed: bool


# Legacy data: duplicate run ids (within a tenant and across tenants), a running trace, a
# trace with no steps, unicode and awkward numbers.
LEGACY_TRACES = (
    LegacyTrace("acme", "run-a", "tr-a", "completed", 3, LEGACY_BASE, True),
    LegacyTrace(
        "acme", "run-dup", "tr-dup-1", "completed", 2, LEGACY_BASE + timedelta(hours=1), True
    ),
    LegacyTrace("acme", "run-dup", "tr-dup-2", "failed", 1, LEGACY_BASE + timedelta(hours=2), True),
    LegacyTrace(
        "globex", "run-x", "tr-x-globex", "completed", 2, LEGACY_BASE + timedelta(hours=3), True
    ),
    LegacyTrace(
        "initech", "run-x", "tr-x-initech", "completed", 1, LEGACY_BASE + timedelta(hours=4), True
    ),
    LegacyTrace(
        "acme", "run-empty", "tr-empty", "completed", 0, LEGACY_BASE + timedelta(hours=5), True
    ),
    LegacyTrace(
        "globex", "run-ü", "tr-unicode", "failed", 2, LEGACY_BASE + timedelta(hours=6), True
    ),
    LegacyTrace(
        "acme", "run-live", "tr-live", "running", 2, LEGACY_BASE + timedelta(hours=7), False
    ),
)
LEGACY_STEP_COUNT = sum(t.steps for t in LEGACY_TRACES)


def aos_insert_trace(
    conn: psycopg.Connection[Any],
    *,
    trace_id: str,
    run_id: str,
    tenant_id: str,
    started_at: datetime,
    status: str = "running",
    completed_at: datetime | None = None,
) -> None:
    """INSERT as AOS's pg_store writes a trace: its own hash, plan and trace documents."""
    conn.execute(
        "INSERT INTO aos_traces (trace_id, run_id, correlation_id, tenant_id, agent_id,"
        " plan_id, seed, frozen_timestamp, root_hash, plan_hash, schema_version, plan, trace,"
        " metadata, status, started_at, completed_at, stored_by)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            trace_id,
            run_id,
            f"corr-{trace_id}",
            tenant_id,
            "agent-legacy",
            "plan-legacy",
            42,
            started_at.isoformat(),
            aos_hash(trace_id, status),
            aos_hash("plan", trace_id),
            "1.1",
            Jsonb({"goal": "summarise ✓", "budget": 1e21, "steps": [1, 2.5, None]}),
            Jsonb({"trace_id": trace_id, "steps": []}),
            Jsonb({"source": "aos"}),
            status,
            started_at,
            completed_at,
            "aos-backend",
        ),
    )


def aos_insert_step(
    conn: psycopg.Connection[Any], *, trace_id: str, step_index: int, at: datetime
) -> None:
    """INSERT as AOS writes a step: no run_id, no tenant_id, no hashes of format v1."""
    conn.execute(
        "INSERT INTO aos_trace_steps (trace_id, step_index, skill_id, skill_name, params,"
        " status, outcome_category, outcome_code, outcome_data, cost_cents, duration_ms,"
        " retry_count, input_hash, output_hash, rng_state_before, idempotency_key,"
        ' replay_behavior, "timestamp")'
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            trace_id,
            step_index,
            "skill.http_call",
            "http_call",
            Jsonb({"url": "https://example.invalid/ü", "attempt": step_index, "big": 1e16}),
            "succeeded",
            "SUCCESS",
            "200",
            Jsonb({"ratio": 0.1 * step_index, "note": "naïve ✓", "empty": {}}),
            0.3,
            227.6 + step_index,
            0,
            aos_hash("in", trace_id, step_index),
            aos_hash("out", trace_id, step_index),
            "rng-0",
            f"idem-{trace_id}-{step_index}",
            "execute",
            at,
        ),
    )


def aos_complete_trace(conn: psycopg.Connection[Any], trace_id: str, at: datetime) -> int:
    """AOS finishing a running trace: status, completed_at and its own root hash change."""
    cursor = conn.execute(
        "UPDATE aos_traces SET status = %s, completed_at = %s, root_hash = %s WHERE trace_id = %s",
        ("completed", at, aos_hash(trace_id, "completed"), trace_id),
    )
    return cursor.rowcount


def aos_archive_trace(conn: psycopg.Connection[Any], trace_id: str) -> int:
    """AOS's retention: copy the trace row to the archive, delete it (steps cascade)."""
    conn.execute(
        "INSERT INTO aos_traces_archive SELECT * FROM aos_traces WHERE trace_id = %s",
        (trace_id,),
    )
    return conn.execute("DELETE FROM aos_traces WHERE trace_id = %s", (trace_id,)).rowcount


def create_aos_store(url: DatabaseUrl) -> None:
    """AOS's tables and legacy data, as they are before run-proof ever touches them."""
    with psycopg.connect(url.libpq()) as conn:
        conn.execute(AOS_SCHEMA)
        for trace in LEGACY_TRACES:
            aos_insert_trace(
                conn,
                trace_id=trace.trace_id,
                run_id=trace.run_id,
                tenant_id=trace.tenant_id,
                started_at=trace.started_at,
                status=trace.status,
                completed_at=trace.started_at + timedelta(minutes=5) if trace.completed else None,
            )
            for index in range(trace.steps):
                aos_insert_step(
                    conn,
                    trace_id=trace.trace_id,
                    step_index=index,
                    at=trace.started_at + timedelta(seconds=index, microseconds=7),
                )


def table_contents(url: DatabaseUrl, table: str, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every row of `table`, as JSON, restricted to `columns`, in id order."""
    with psycopg.connect(url.libpq()) as conn:
        rows = conn.execute(f"SELECT to_jsonb(t) FROM {table} t ORDER BY t.id").fetchall()
    return [{c: row[0][c] for c in columns} for row in rows]


def all_aos_contents(url: DatabaseUrl) -> dict[str, list[dict[str, Any]]]:
    return {table: table_contents(url, table, cols) for table, cols in AOS_TABLE_COLUMNS.items()}


def sql(url: DatabaseUrl, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """One statement in its own committed transaction; its rows, if it returns any."""
    with psycopg.connect(url.libpq()) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


# Readers (count_trace_kinds, the audits) run in a read-only snapshot, as the CLI runs them.
T = TypeVar("T")


def on(url: DatabaseUrl, task: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    return run_on_connection(url, task, snapshot=True)


@pytest.fixture
def aos_store(new_database: Any) -> Iterator[DatabaseUrl]:
    """A database holding AOS's tables with legacy data; run-proof has not migrated it."""
    url = DatabaseUrl.parse(new_database("aos"))
    create_aos_store(url)
    yield url
