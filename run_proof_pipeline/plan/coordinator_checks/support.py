"""What the shipped coordinator tests need to write and prove runs: recorded through the
project's own TraceRecorder (chain format v2, chained by the database), proven by the
coordinator, tampered with as a table owner could. No test-suite module is imported: an
installed package has none."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg

from run_proof_pipeline.coordinator import (
    RunProofCoordinator,
    RunProofResult,
    get_run_proof_coordinator,
)
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import async_engine, session_scope
from run_proof_pipeline.store.recorder import StepAppend, TraceRecorder, TraceStart

T = TypeVar("T")
BASE = datetime(2026, 2, 9, 10, 0, tzinfo=UTC)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def make_step(index: int, *, at: datetime | None = None) -> StepAppend:
    return StepAppend(
        skill_id="skill.http_call",
        skill_name="http_call",
        params={"url": "https://example.invalid/api", "attempt": index, "note": "café ✓"},
        status="succeeded",
        outcome_category="success",
        outcome_code="200",
        outcome_data={"bytes": 1000 + index, "ok": True, "ratio": 0.1 * index},
        cost_cents=0.5,
        duration_ms=227.6,
        retry_count=0,
        timestamp=at or BASE + timedelta(seconds=index, microseconds=123456),
    )


async def record_run_async(
    url: DatabaseUrl, tenant_id: str, run_id: str, *, steps: int = 3, seal: bool = True
) -> str:
    engine = async_engine(url)
    try:
        recorder = TraceRecorder(engine)
        trace_id = await recorder.start_trace(
            TraceStart(
                tenant_id=tenant_id,
                run_id=run_id,
                trace_id=f"trace-{run_id}",
                agent_id="agent-7",
                plan_id="plan-42",
                plan={"goal": "fetch and summarize"},
                started_at=BASE,
            )
        )
        for index in range(steps):
            await recorder.append_step(
                tenant_id, run_id, make_step(index, at=BASE + timedelta(seconds=index))
            )
        if seal:
            await recorder.seal(
                tenant_id, run_id, status="succeeded", completed_at=BASE + timedelta(hours=1)
            )
        return trace_id
    finally:
        await engine.dispose()


def record_run(url: DatabaseUrl, tenant_id: str, run_id: str, **kwargs: Any) -> str:
    """A run of `steps` steps as TraceRecorder writes it, sealed unless `seal=False`."""
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
