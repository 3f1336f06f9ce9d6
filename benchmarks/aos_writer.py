"""AOS's writer statements, sent the way AOS sends them: asyncpg, `statement_cache_size=0`,
every statement its own autocommit transaction (issue 13, "Facts about AOS as deployed").

The statement texts are those of `run_proof_pipeline_tests/support/aos_deployed.py` (the
fixture of AOS as deployed), with psycopg's `%s` placeholders numbered for asyncpg (`$1`,
`$2`, ...);
`test_write_path_bench.py` checks that they are exactly the texts that fixture sends.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

# aos_deployed.start_trace, record_step and complete_trace, word for word (psycopg form).
START_TRACE_PSYCOPG = (
    "INSERT INTO aos_traces (trace_id, run_id, correlation_id, tenant_id, agent_id,"
    " root_hash, plan, trace, schema_version, status, started_at, created_at,"
    " is_synthetic, synthetic_scenario_id, incident_id)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (trace_id) DO NOTHING"
)
STEP_EXISTS_PSYCOPG = "SELECT EXISTS(SELECT 1 FROM aos_traces WHERE trace_id = %s)"
RECORD_STEP_PSYCOPG = (
    "INSERT INTO aos_trace_steps (trace_id, step_index, skill_id, skill_name, params,"
    " status, outcome_category, outcome_code, outcome_data, cost_cents, duration_ms,"
    " retry_count, replay_behavior, timestamp, source, level, is_synthetic,"
    " synthetic_scenario_id)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (trace_id, step_index) DO NOTHING"
)
COMPLETE_TRACE_PSYCOPG = (
    "UPDATE aos_traces SET status = %s, completed_at = %s,"
    " metadata = COALESCE(%s, metadata) WHERE run_id = %s"
)


def numbered(statement: str) -> str:
    """psycopg's positional `%s` as asyncpg's `$1`, `$2`, ... (the texts hold no other `%`)."""
    counter = iter(range(1, 1000))
    return re.sub(r"%s", lambda _: f"${next(counter)}", statement)


START_TRACE = numbered(START_TRACE_PSYCOPG)
STEP_EXISTS = numbered(STEP_EXISTS_PSYCOPG)
RECORD_STEP = numbered(RECORD_STEP_PSYCOPG)
COMPLETE_TRACE = numbered(COMPLETE_TRACE_PSYCOPG)

_SKILLS = ("http_call", "llm_complete", "sql_query", "vector_search", "file_read")
PLAN = [{"skill": "http_call", "params": {"url": "https://api.example.com/v2/items"}}]


def step_params(i: int) -> dict[str, Any]:
    """The `params` of step i: a URL, a method, nested query arguments (~150 bytes)."""
    return {
        "url": f"https://api.example.com/v2/items/{i * 7919 % 100003}",
        "method": "GET" if i % 3 else "POST",
        "attempt": i % 4,
        "query": {"limit": 50, "offset": i % 1000, "sort": "-updated_at"},
    }


def step_outcome(i: int) -> dict[str, Any]:
    """The `outcome_data` of step i: ints, doubles, a list, a bool, non-ASCII (~190 bytes).
    Every step has one (AOS writes NULL for an empty outcome: the heavier case is measured)."""
    return {
        "status_code": 200,
        "bytes": 1000 + i % 50_000,
        "latency_ms": 12.5 + (i % 977) / 8,
        "score": (i % 1013) / 1013,
        "items": [f"item-{(i + k) % 1000}" for k in range(3)],
        "cached": i % 5 == 0,
        "summary": "résumé ✓ fetched and ranked",
    }


@dataclass(frozen=True)
class StepShape:
    """What one step carries, as stated in the output and docs/benchmarks.md."""

    params_bytes: float
    outcome_data_bytes: float
    columns: int

    @classmethod
    def measure(cls, steps: int = 1000) -> StepShape:
        params = [len(json.dumps(step_params(i)).encode()) for i in range(steps)]
        outcomes = [len(json.dumps(step_outcome(i)).encode()) for i in range(steps)]
        return cls(
            params_bytes=round(sum(params) / steps, 1),
            outcome_data_bytes=round(sum(outcomes) / steps, 1),
            columns=RECORD_STEP_PSYCOPG.count("%s"),
        )


def _now() -> datetime:
    return datetime.now(UTC)


def step_args(trace_id: str, i: int) -> tuple[Any, ...]:
    """record_step's 18 arguments for step i, as AOS's writer binds them (skill_id =
    skill_name, outcome_data as JSON text, the writer's clock, level from the status)."""
    skill = _SKILLS[i % len(_SKILLS)]
    status = "success" if i % 17 else "retry"
    return (
        trace_id,
        i,
        skill,
        skill,
        json.dumps(step_params(i)),
        status,
        "SUCCESS",
        "200",
        json.dumps(step_outcome(i)),
        0.25 + (i % 40) / 8,
        100.0 + (i % 3000) / 4,
        1 if status == "retry" else 0,
        "execute",
        _now(),
        "engine",
        "WARN" if status == "retry" else "INFO",
        False,
        None,
    )


async def connect(dsn: str) -> asyncpg.Connection:
    """A connection as AOS's pool opens it (PgBouncer-safe: no prepared statement cache)."""
    return await asyncpg.connect(dsn, statement_cache_size=0)


async def start_trace(conn: asyncpg.Connection, run_id: str, tenant_id: str) -> str:
    trace_id = f"trace_{run_id}"
    now = _now()
    await conn.execute(
        START_TRACE,
        trace_id,
        run_id,
        f"corr-{run_id}",
        tenant_id,
        "agent-7",
        "pending",
        json.dumps(PLAN),
        json.dumps({"steps": []}),
        "1.0",
        "running",
        now,
        now,
        False,
        None,
        None,
    )
    return trace_id


async def record_step(conn: asyncpg.Connection, trace_id: str, i: int) -> None:
    """AOS's record_step: the parent check, then the insert; two autocommit statements."""
    if not await conn.fetchval(STEP_EXISTS, trace_id):
        raise ValueError(f"Parent trace {trace_id} does not exist - orphan steps forbidden")
    await conn.execute(RECORD_STEP, *step_args(trace_id, i))


async def complete_trace(conn: asyncpg.Connection, run_id: str) -> None:
    await conn.execute(COMPLETE_TRACE, "completed", _now(), json.dumps({"cost_cents": 1.5}), run_id)
