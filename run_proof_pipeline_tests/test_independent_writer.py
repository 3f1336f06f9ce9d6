"""Rows written with plain SQL, hashed by an independent implementation of the spec
(the `rfc8785` package and hashlib, none of our code), verify as VERIFIED."""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg
import rfc8785
from psycopg.types.json import Jsonb

from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.stores import prove

HEADER = {
    "tenant_id": "tenant-x",
    "run_id": "run-independent",
    "trace_id": "trace-independent",
    "agent_id": "agent-1",
    "plan_id": None,
    "plan": {"goal": "independent", "weights": [1.5, 2, 1e-7]},
    "started_at": "2026-02-09T09:00:00.000000Z",
}


def _step(index: int) -> dict[str, Any]:
    return {
        "tenant_id": "tenant-x",
        "run_id": "run-independent",
        "step_index": index,
        "skill_id": "skill.sql",
        "skill_name": "sql",
        "params": {"q": f"select {index}", "ünï": "✓", "big": 1e16},
        "status": "succeeded",
        "outcome_category": "success",
        "outcome_code": "OK",
        "outcome_data": None if index % 2 else {"rows": index},
        "cost_cents": 0.25 * index,
        "duration_ms": 10.0 + index,
        "retry_count": 0,
        "timestamp": f"2026-02-09T09:00:0{index}.250000Z",
    }


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def test_plain_sql_rows_with_independent_hashes_verify(store: DatabaseUrl) -> None:
    genesis = _h(rfc8785.dumps({"v": 1, "kind": "trace", **HEADER}))
    steps = [_step(i) for i in range(4)]
    prev = genesis
    hashes = []
    for step in steps:
        digest = _h(prev + rfc8785.dumps({"v": 1, "kind": "step", **step}))
        hashes.append((prev.hex(), digest.hex()))
        prev = digest
    seal = {
        "v": 1,
        "kind": "seal",
        "tenant_id": "tenant-x",
        "run_id": "run-independent",
        "status": "succeeded",
        "completed_at": "2026-02-09T09:01:00.000000Z",
        "chain_length": len(steps),
    }
    root = _h(prev + rfc8785.dumps(seal)).hex()

    with psycopg.connect(store.libpq()) as conn:
        conn.execute(
            "INSERT INTO aos_traces (trace_id, run_id, tenant_id, agent_id, plan_id, plan,"
            " status, started_at, genesis_hash) VALUES (%s, %s, %s, %s, %s, %s, 'running', %s, %s)",
            (
                HEADER["trace_id"],
                HEADER["run_id"],
                HEADER["tenant_id"],
                HEADER["agent_id"],
                HEADER["plan_id"],
                Jsonb(HEADER["plan"]),
                HEADER["started_at"],
                genesis.hex(),
            ),
        )
        for step, (prev_hex, step_hex) in zip(steps, hashes, strict=True):
            conn.execute(
                "INSERT INTO aos_trace_steps (trace_id, run_id, tenant_id, step_index, skill_id,"
                " skill_name, params, status, outcome_category, outcome_code, outcome_data,"
                " cost_cents, duration_ms, retry_count, timestamp, prev_hash, step_hash)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    HEADER["trace_id"],
                    step["run_id"],
                    step["tenant_id"],
                    step["step_index"],
                    step["skill_id"],
                    step["skill_name"],
                    Jsonb(step["params"]),
                    step["status"],
                    step["outcome_category"],
                    step["outcome_code"],
                    None if step["outcome_data"] is None else Jsonb(step["outcome_data"]),
                    step["cost_cents"],
                    step["duration_ms"],
                    step["retry_count"],
                    step["timestamp"],
                    prev_hex,
                    step_hex,
                ),
            )
        updated = conn.execute(
            "UPDATE aos_traces SET status = 'succeeded', completed_at = %s, root_hash = %s,"
            " chain_length = %s WHERE trace_id = %s",
            (seal["completed_at"], root, len(steps), HEADER["trace_id"]),
        )
        assert updated.rowcount == 1

    result = prove(store, "tenant-x", "run-independent")

    assert result.integrity.verification_status == "VERIFIED", result.integrity.failure_reason
    assert result.integrity.root_hash == root
    assert result.integrity.chain_length == 4
