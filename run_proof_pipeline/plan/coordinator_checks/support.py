"""What the shipped coordinator tests need to write and prove runs: recorded through the
project's own TraceRecorder (chain format v2, chained by the database), proven by the
coordinator, tampered with as a table owner could. No test-suite module is imported: an
installed package has none. The checkout's suite uses these same helpers
(run_proof_pipeline_tests/support/stores.py adds its format-v1 writer)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import psycopg
from sqlalchemy.ext.asyncio import AsyncEngine

from run_proof_pipeline.coordinator import (
    RunProofCoordinator,
    RunProofResult,
    get_run_proof_coordinator,
)
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.bridge import run_sync
from run_proof_pipeline.store.engine import async_engine, session_scope
from run_proof_pipeline.store.recorder import StepAppend, TraceRecorder, TraceStart

T = TypeVar("T")
BASE = datetime(2026, 2, 9, 10, 0, tzinfo=UTC)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return run_sync(lambda: coro)


class TraceWriter(Protocol):
    """What record_run writes through: TraceRecorder, or another writer of the same calls
    (the suite's format-v1 writer)."""

    async def start_trace(self, trace: TraceStart, /) -> str: ...

    async def append_step(self, tenant_id: str, run_id: str, step: StepAppend, /) -> Any: ...

    async def seal(
        self, tenant_id: str, run_id: str, /, *, status: str, completed_at: datetime
    ) -> Any: ...


def make_step(index: int, *, at: datetime | None = None, **overrides: Any) -> StepAppend:
    """Step `index` of a recorded run; `overrides` replace fields."""
    fields: dict[str, Any] = {
        "skill_id": "skill.http_call",
        "skill_name": "http_call",
        "params": {"url": "https://example.invalid/api", "attempt": index, "note": "café ✓"},
        "status": "succeeded",
        "outcome_category": "success",
        "outcome_code": "200",
        "outcome_data": {"bytes": 1000 + index, "ok": True, "ratio": 0.1 * index},
        "cost_cents": 0.5,
        "duration_ms": 227.6,
        "retry_count": 0,
        "timestamp": at or BASE + timedelta(seconds=index, microseconds=123456),
    }
    fields.update(overrides)
    return StepAppend(**fields)


async def record_run_async(
    url: DatabaseUrl,
    tenant_id: str,
    run_id: str,
    *,
    steps: int = 3,
    seal: bool = True,
    started_at: datetime = BASE,
    status: str = "succeeded",
    step_fields: Callable[[int], dict[str, Any]] | None = None,
    plan: dict[str, Any] | None = None,
    writer: Callable[[AsyncEngine], TraceWriter] = TraceRecorder,
) -> str:
    """A run as `writer` (default TraceRecorder: chain format v2, chained by the database)
    writes it: `steps` steps a second apart from `started_at`, sealed with `status` an hour
    later unless `seal=False`; `step_fields(i)` overrides fields of step i."""
    engine = async_engine(url)
    try:
        recorder = writer(engine)
        trace_id = await recorder.start_trace(
            TraceStart(
                tenant_id=tenant_id,
                run_id=run_id,
                trace_id=f"trace-{run_id}",
                agent_id="agent-7",
                plan_id="plan-42",
                plan={"goal": "fetch and summarize"} if plan is None else plan,
                started_at=started_at,
            )
        )
        for index in range(steps):
            await recorder.append_step(
                tenant_id,
                run_id,
                make_step(
                    index,
                    at=started_at + timedelta(seconds=index),
                    **({} if step_fields is None else step_fields(index)),
                ),
            )
        if seal:
            await recorder.seal(
                tenant_id, run_id, status=status, completed_at=started_at + timedelta(hours=1)
            )
        return trace_id
    finally:
        await engine.dispose()


def record_run(url: DatabaseUrl, tenant_id: str, run_id: str, **kwargs: Any) -> str:
    """record_run_async, from synchronous code."""
    return run(record_run_async(url, tenant_id, run_id, **kwargs))


def prove(
    url: DatabaseUrl,
    tenant_id: str,
    run_id: str,
    *,
    coordinator: RunProofCoordinator | None = None,
    **kwargs: Any,
) -> RunProofResult:
    """The run's proof by `coordinator` (default: get_run_proof_coordinator())."""
    chosen = get_run_proof_coordinator() if coordinator is None else coordinator

    async def go() -> RunProofResult:
        async with session_scope(url) as session:
            return await chosen.get_run_proof(session, tenant_id, run_id, **kwargs)

    return run(go())


_TRIGGERS = {
    "aos_trace_steps": "aos_trace_steps_append_only",
    "aos_traces": "aos_traces_seal_once",
}


def owner_sql(url: DatabaseUrl, sql: str, params: tuple[Any, ...] = (), *, table: str) -> int:
    """Run a tampering statement as the table owner with the append-only trigger of `table`
    disabled, the way an owner could; returns the number of rows it touched."""
    trigger = _TRIGGERS[table]
    with psycopg.connect(url.libpq()) as conn:
        conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
        touched = conn.execute(sql, params).rowcount
        conn.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trigger}")
    return touched
