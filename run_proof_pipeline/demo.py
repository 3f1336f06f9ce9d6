"""Realistic demo traces, written through the recorder like any producer would."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from run_proof_pipeline.ledger.settings import load_ledger_settings
from run_proof_pipeline.store.recorder import StepAppend, TraceRecorder, TraceStart

_SKILLS = (
    ("skill.http_call", "http_call"),
    ("skill.llm_invoke", "llm_invoke"),
    ("skill.sql_query", "sql_query"),
    ("skill.file_read", "file_read"),
    ("skill.summarize", "summarize"),
)
_TENANTS = ("tenant-acme", "tenant-globex", "tenant-initech")
DEMO_BASE = datetime(2026, 2, 9, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class DemoSummary:
    traces: int
    steps: int
    running_run_id: str
    latest_run_id: str


async def store_is_empty(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        result = await conn.execute(text("SELECT NOT EXISTS (SELECT 1 FROM aos_traces)"))
        return bool(result.scalar_one())


def _step(rng: random.Random, at: datetime, index: int) -> StepAppend:
    skill_id, skill_name = rng.choice(_SKILLS)
    failed = rng.random() < 0.08
    return StepAppend(
        skill_id=skill_id,
        skill_name=skill_name,
        params={
            "attempt": index,
            "query": rng.choice(["quarterly revenue", "résumé parsing", "日本語の要約", "ok"]),
            "options": {"temperature": round(rng.random(), 2), "max_tokens": rng.randint(16, 4096)},
        },
        status="failed" if failed else "succeeded",
        outcome_category="error" if failed else "success",
        outcome_code="TIMEOUT" if failed else "200",
        outcome_data=None if failed else {"bytes": rng.randint(0, 10**6), "ok": True},
        cost_cents=round(rng.random() * 5, 3),
        duration_ms=round(rng.random() * 2000, 1),
        retry_count=2 if failed else 0,
        timestamp=at,
    )


async def seed_demo(engine: AsyncEngine, *, runs: int = 12, seed: int = 7) -> DemoSummary:
    """Seed `runs` traces over three tenants: sealed successes and failures, one zero-step
    sealed run, and one still running that is not the latest by `started_at` (so the seed's
    plan, which proves the latest trace, passes on the demo data).

    A configured RUN_PROOF_CHECKPOINT_DIR is created here (as `checkpoint create` does): every
    verify path takes a missing one for a configuration error."""
    load_ledger_settings().checkpoint_dir(create=True)
    rng = random.Random(seed)
    recorder = TraceRecorder(engine)
    total_steps = 0
    running_slot = runs // 2
    latest = ""
    running = ""
    for n in range(runs):
        tenant = _TENANTS[n % len(_TENANTS)]
        run_id = f"run-{seed:02d}-{n:04d}"
        started = DEMO_BASE + timedelta(minutes=17 * n)
        step_count = 0 if n == 1 else rng.choice([1, 3, 12, 40, 120, 300])
        await recorder.start_trace(
            TraceStart(
                tenant_id=tenant,
                run_id=run_id,
                trace_id=f"trace-{seed:02d}-{n:04d}",
                agent_id=f"agent-{n % 4}",
                plan_id=f"plan-{n % 5}",
                plan={"goal": "answer the ticket", "skills": [s[1] for s in _SKILLS[:3]]},
                started_at=started,
            )
        )
        at = started
        for index in range(step_count):
            at += timedelta(milliseconds=rng.randint(5, 900), microseconds=rng.randint(0, 999))
            await recorder.append_step(tenant, run_id, _step(rng, at, index))
        total_steps += step_count
        if n == running_slot:
            running = run_id
            continue
        await recorder.seal(
            tenant,
            run_id,
            status="failed" if n % 5 == 3 else "succeeded",
            completed_at=at + timedelta(seconds=1),
        )
        latest = run_id
    return DemoSummary(runs, total_steps, running, latest)
