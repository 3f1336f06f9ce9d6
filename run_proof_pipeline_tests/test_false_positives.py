"""Zero false positives (slow): 1,050 untouched runs of mixed shapes all VERIFY, and the ledger
audit and a signed checkpoint over them are clean.

Rows are computed with the integrity core and COPYed in (then sealed by one UPDATE, so the
database's own triggers assign seal order and write the ledger), which is what keeps this
under a minute; the recorder's write path is covered elsewhere.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from run_proof_pipeline.coordinator import get_run_proof_coordinator
from run_proof_pipeline.integrity import (
    canonical_timestamp,
    compute_chain,
    header_record,
    seal_record,
    step_record,
)
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import session_scope
from run_proof_pipeline_tests.support.ledger_fixtures import CheckpointEnv
from run_proof_pipeline_tests.test_ledger_support import (
    audit,
    make_checkpoint,
)

pytestmark = pytest.mark.slow

RUNS = 1050
T0 = datetime(2026, 2, 9, 8, 0, tzinfo=UTC)
SHAPES = ("empty", "one", "many", "unicode", "large-json", "failed", "numbers")
STEP_COLUMNS = (
    "trace_id, run_id, tenant_id, step_index, skill_id, skill_name, params, status,"
    " outcome_category, outcome_code, outcome_data, cost_cents, duration_ms, retry_count,"
    ' "timestamp", prev_hash, step_hash'
)


def _step(shape: str, i: int, rng: random.Random) -> dict[str, Any]:
    params: Any = {"attempt": i, "url": f"https://example.invalid/{i}"}
    outcome: Any = {"ok": True, "bytes": rng.randint(0, 10**6)}
    status, category = "succeeded", "success"
    if shape == "unicode":
        params = {
            "q": 'café ✓ 😀 \u2028 "quoted" \\ back',
            "\U0001f600key": [1, "ü"],
            "ключ": "значение",
        }
    elif shape == "large-json":
        outcome = {"rows": [{"i": k, "text": "x" * 40, "v": k / 7} for k in range(300)]}
    elif shape == "failed":
        status, category, outcome = "failed", "error", {"error": "timeout", "retryable": False}
    elif shape == "numbers":
        params = {
            "big": 2**53 - 1,
            "neg": -(2**53 - 1),
            "tiny": 1e-7,
            "e21": 1e21,
            "z": -0.0,
            "third": 1 / 3,
            "nested": [[[]], {}, None, False],
        }
        outcome = None
    return {
        "skill_id": f"skill.{shape}",
        "skill_name": shape,
        "params": params,
        "status": status,
        "outcome_category": category,
        "outcome_code": "500" if shape == "failed" else "200",
        "outcome_data": outcome,
        "cost_cents": rng.choice([0.0, 0.5, 1.25, 12.0, 0.1]),
        "duration_ms": rng.uniform(0.1, 5000.0),
        "retry_count": rng.randint(0, 3),
        "timestamp": canonical_timestamp(
            T0 + timedelta(seconds=i, microseconds=rng.randint(0, 999999))
        ),
    }


def _steps_for(shape: str, rng: random.Random) -> int:
    return {"empty": 0, "one": 1, "many": rng.randint(20, 80)}.get(shape, rng.randint(1, 6))


def _populate(url: DatabaseUrl) -> list[tuple[str, str, int]]:
    rng = random.Random(4)
    runs: list[tuple[str, str, int]] = []
    traces, steps, seals = [], [], []
    for r in range(RUNS):
        shape = SHAPES[r % len(SHAPES)]
        tenant = f"tenant-{r % 7}" + ("-ü" if shape == "unicode" else "")
        run_id = f"run-{r:05d}-{shape}" + ("-😀" if shape == "unicode" else "")
        trace_id = f"trace-{r:05d}"
        started = canonical_timestamp(T0 + timedelta(minutes=r))
        plan = {"goal": f"shape {shape}", "budget": r} if r % 3 else None
        ids = {"tenant_id": tenant, "run_id": run_id}
        header = header_record(
            **ids,
            trace_id=trace_id,
            agent_id=f"agent-{r % 5}",
            plan_id=None if r % 4 == 0 else "plan-1",
            plan=plan,
            started_at=started,
        )
        fields = [_step(shape, i, rng) for i in range(_steps_for(shape, rng))]
        status = "failed" if shape == "failed" else "succeeded"
        completed = canonical_timestamp(T0 + timedelta(minutes=r, seconds=90))
        seal = seal_record(**ids, status=status, completed_at=completed, chain_length=len(fields))
        chain = compute_chain(
            header, [step_record(**ids, step_index=i, **f) for i, f in enumerate(fields)], seal
        )
        traces.append(
            (
                trace_id,
                run_id,
                tenant,
                header["agent_id"],
                header["plan_id"],
                None if plan is None else Jsonb(plan),
                started,
                chain.genesis_hash,
            )
        )
        prev = chain.genesis_hash
        for i, (f, digest) in enumerate(zip(fields, chain.step_hashes, strict=True)):
            steps.append(
                (
                    trace_id,
                    run_id,
                    tenant,
                    i,
                    f["skill_id"],
                    f["skill_name"],
                    Jsonb(f["params"]),
                    f["status"],
                    f["outcome_category"],
                    f["outcome_code"],
                    None if f["outcome_data"] is None else Jsonb(f["outcome_data"]),
                    f["cost_cents"],
                    f["duration_ms"],
                    f["retry_count"],
                    f["timestamp"],
                    prev,
                    digest,
                )
            )
            prev = digest
        seals.append((trace_id, status, completed, chain.root_hash, len(fields)))
        runs.append((tenant, run_id, len(fields)))
    with psycopg.connect(url.libpq()) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY aos_traces (trace_id, run_id, tenant_id, agent_id, plan_id, plan,"
            " started_at, genesis_hash) FROM STDIN"
        ) as copy:
            for row in traces:
                copy.write_row(row)
        with cur.copy(f"COPY aos_trace_steps ({STEP_COLUMNS}) FROM STDIN") as copy:
            for row in steps:
                copy.write_row(row)
        cur.execute(
            "CREATE TEMP TABLE seals (trace_id text, status text, completed_at"
            " timestamptz, root_hash text, chain_length int)"
        )
        with cur.copy("COPY seals FROM STDIN") as copy:
            for row in seals:
                copy.write_row(row)
        cur.execute(
            "UPDATE aos_traces t SET status = s.status, completed_at = s.completed_at,"
            " root_hash = s.root_hash, chain_length = s.chain_length"
            " FROM seals s WHERE s.trace_id = t.trace_id"
        )
        assert cur.rowcount == RUNS
    return runs


async def _prove_share(url: DatabaseUrl, runs: list[tuple[str, str, int]]) -> list[str]:
    coordinator = get_run_proof_coordinator()
    bad: list[str] = []
    async with session_scope(url) as session:
        for tenant, run_id, n in runs:
            result = await coordinator.get_run_proof(session, tenant, run_id, step_summary_limit=0)
            integrity = result.integrity
            if integrity.verification_status != "VERIFIED" or integrity.chain_length != n:
                bad.append(f"{run_id}: {integrity.verification_status} {integrity.failure_reason}")
    return bad


async def _prove_all(url: DatabaseUrl, runs: list[tuple[str, str, int]]) -> list[str]:
    # Four sessions at once: the proofs wait on the server as much as they compute.
    shares = await asyncio.gather(*(_prove_share(url, runs[k::4]) for k in range(4)))
    return [line for share in shares for line in share]


def test_a_thousand_untouched_runs_of_mixed_shapes_all_verify(
    store: DatabaseUrl, checkpoint_env: CheckpointEnv
) -> None:
    runs = _populate(store)
    created = make_checkpoint(store)

    bad = asyncio.run(_prove_all(store, runs))

    assert len(runs) >= 1000
    assert bad == []
    assert created.signed.checkpoint.size == RUNS
    assert audit(store).problems == []
