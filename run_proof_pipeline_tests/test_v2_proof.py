"""The proof's read path on format v2 (docs/hash-chain-v2.md): runs inserted with plain SQL,
no hash supplied by the client, chained by migration 0006's triggers, proved by the
coordinator (what `run-proof verify` calls), in process and in segment workers.

The store is run-proof's own schema at head; each test inserts its own runs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from run_proof_pipeline.coordinator import RunProofCoordinator, RunProofResult
from run_proof_pipeline.coordinator import run_proof as coordinator_module
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.plan.coordinator_checks.fixtures import migrated_copy
from run_proof_pipeline.proof.stream import prove_traces
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import session_scope
from run_proof_pipeline.store.migrate import upgrade
from run_proof_pipeline.store.snapshot import begin_snapshot, read_trace
from run_proof_pipeline_tests.support.stores import BASE, prove, record_run, run

TENANT = "tenant-v2"
BIG = 2**64 + 1  # no double holds it: v1 would hash 2^64 (docs/hash-chain-v2.md)

_INSERT_TRACE = """
INSERT INTO aos_traces (trace_id, run_id, correlation_id, tenant_id, agent_id, plan_id, root_hash,
    plan, trace, schema_version, status, started_at, created_at, seed, is_synthetic)
VALUES (%s, %s, %s, %s, 'agent-7', 'plan-42', 'pending', %s::jsonb, '{"steps": []}', '1.0',
    'running', %s, %s, %s, false)
ON CONFLICT (trace_id) DO NOTHING
"""
_INSERT_STEP = """
INSERT INTO aos_trace_steps (trace_id, step_index, skill_id, skill_name, params, status,
    outcome_category, outcome_code, outcome_data, cost_cents, duration_ms, retry_count,
    replay_behavior, "timestamp", input_hash, idempotency_key, source, level, is_synthetic)
VALUES (%s, %s, 'http_call', 'http_call', %s::jsonb, 'success', 'SUCCESS', '200', %s::jsonb,
    %s, %s, 0, 'execute', %s, %s, %s, 'engine', 'INFO', false)
ON CONFLICT (trace_id, step_index) DO NOTHING
"""
_COMPLETE = """
UPDATE aos_traces SET status = %s, completed_at = %s, metadata = COALESCE(%s::jsonb, metadata)
WHERE run_id = %s AND tenant_id = %s
"""


def step_params(index: int) -> dict[str, Any]:
    return {"url": f"https://example.invalid/{index}", "n": index, "note": "café ✓", "r": 0.1}


def trace_id_of(run_id: str) -> str:
    return f"trace_{run_id}"


def start_v2(url: DatabaseUrl, run_id: str, *, tenant_id: str = TENANT, seed: int = 7) -> str:
    """The trace row as AOS's start_trace writes it: no hash of any kind."""
    trace_id = trace_id_of(run_id)
    with psycopg.connect(url.libpq(), autocommit=True) as conn:
        conn.execute(
            _INSERT_TRACE,
            (
                trace_id,
                run_id,
                f"corr-{run_id}",
                tenant_id,
                json.dumps({"goal": "fetch", "steps": [1, 2.5]}),
                BASE,
                BASE,
                seed,
            ),
        )
    return trace_id


def add_steps(
    url: DatabaseUrl,
    run_id: str,
    indexes: list[int],
    *,
    params: Any = None,
) -> None:
    """Steps as AOS's record_step writes them, one autocommit statement each."""
    with psycopg.connect(url.libpq(), autocommit=True) as conn:
        for index in indexes:
            conn.execute(
                _INSERT_STEP,
                (
                    trace_id_of(run_id),
                    index,
                    json.dumps(step_params(index) if params is None else params),
                    None if index == 0 else json.dumps({"bytes": 10 * index, "ok": True}),
                    0.25,
                    12.5 + index,
                    BASE + timedelta(seconds=index, microseconds=123456),
                    f"in-{index}",
                    f"key-{run_id}-{index}",
                ),
            )


def complete_v2(
    url: DatabaseUrl,
    run_id: str,
    *,
    tenant_id: str = TENANT,
    status: str = "completed",
    metadata: Any = None,
) -> None:
    with psycopg.connect(url.libpq(), autocommit=True) as conn:
        touched = conn.execute(
            _COMPLETE,
            (
                status,
                BASE + timedelta(hours=1),
                json.dumps({"total_cost_cents": 0.75} if metadata is None else metadata),
                run_id,
                tenant_id,
            ),
        ).rowcount
    assert touched == 1


def v2_run(url: DatabaseUrl, run_id: str, steps: int, *, complete: bool = True) -> str:
    trace_id = start_v2(url, run_id)
    add_steps(url, run_id, list(range(steps)))
    if complete:
        complete_v2(url, run_id)
    return trace_id


def stored(url: DatabaseUrl, query: str, params: tuple[Any, ...]) -> Any:
    with psycopg.connect(url.libpq()) as conn:
        row = conn.execute(query, params).fetchone()
    return None if row is None else (row[0] if len(row) == 1 else row)


def seal_columns(url: DatabaseUrl, run_id: str) -> tuple[Any, ...]:
    return stored(
        url,
        "SELECT chain_format, seal_hash, chain_length, root_hash, genesis_hash"
        " FROM aos_traces WHERE run_id = %s",
        (run_id,),
    )


SEGMENTS: dict[str, Any] = {
    "coordinator": RunProofCoordinator(workers=3, parallel_min_steps=1),
    "step_summary_limit": 0,  # a small limit: the segment path is taken
}


@pytest.fixture(scope="module")
def v2_store(pg_server: LocalPostgres) -> Iterator[DatabaseUrl]:
    database = f"v2proof_{uuid.uuid4().hex[:12]}"
    url = migrated_copy(pg_server, database)
    yield url
    pg_server.drop_database(database)


def _verified(result: RunProofResult, steps: int, seal_hash: str) -> None:
    integrity = result.integrity
    assert integrity.verification_status == "VERIFIED", integrity.failure_reason
    assert integrity.model == "HASH_CHAIN"
    assert integrity.chain_length == steps
    assert result.steps_read == steps
    assert integrity.root_hash == seal_hash
    assert integrity.sealed
    assert integrity.anchored  # rule 5 compared the ledger's seal entry


def test_plain_sql_run_is_unsealed_while_running_then_verified(v2_store: DatabaseUrl) -> None:
    run_id = "plain-1"
    v2_run(v2_store, run_id, 4, complete=False)
    chain_format, seal_hash, chain_length, root_hash, genesis = seal_columns(v2_store, run_id)
    assert (chain_format, seal_hash, chain_length, root_hash) == (2, None, None, "pending")
    assert genesis is not None  # computed by the database, not by the client

    running = prove(v2_store, TENANT, run_id)
    assert running.integrity.verification_status == "UNSEALED", running.integrity.failure_reason
    assert running.integrity.chain_length == 4 and not running.integrity.sealed
    assert running.integrity.root_hash is None
    assert running.integrity.head_hash == stored(
        v2_store,
        "SELECT step_hash FROM aos_trace_steps WHERE trace_id = %s AND step_index = 3",
        (trace_id_of(run_id),),
    )

    complete_v2(v2_store, run_id)
    _, seal_hash, chain_length, root_hash, _ = seal_columns(v2_store, run_id)
    assert seal_hash is not None and chain_length == 4
    assert root_hash == "pending"  # AOS's column is never the format's seal
    result = prove(v2_store, TENANT, run_id, include_payloads=True)
    _verified(result, 4, seal_hash)
    assert [s.step_index for s in result.aos_trace_steps] == [0, 1, 2, 3]
    assert result.aos_trace_steps[1].params == step_params(1)


@pytest.mark.slow
def test_segment_workers_prove_a_v2_run_like_one_stream(
    v2_store: DatabaseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = "segments-1"
    v2_run(v2_store, run_id, 7)
    seal_hash = seal_columns(v2_store, run_id)[1]

    async def no_stream(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the segments path proved the run in process")

    monkeypatch.setattr(coordinator_module, "prove_trace", no_stream)
    result = prove(v2_store, TENANT, run_id, **SEGMENTS)
    assert result.segment_workers == 3
    _verified(result, 7, seal_hash)


def test_big_integer_param_is_hashed_exactly(v2_store: DatabaseUrl) -> None:
    run_id = "bigint-1"
    start_v2(v2_store, run_id, seed=2**63 - 1)
    add_steps(v2_store, run_id, [0, 1], params={"n": BIG, "exact": 0.10000000000000001})
    complete_v2(v2_store, run_id, metadata={"big": BIG})
    seal_hash = seal_columns(v2_store, run_id)[1]
    assert stored(
        v2_store,
        "SELECT params->>'n' FROM aos_trace_steps WHERE trace_id = %s AND step_index = 1",
        (trace_id_of(run_id),),
    ) == str(BIG)

    _verified(prove(v2_store, TENANT, run_id), 2, seal_hash)
    _verified(prove(v2_store, TENANT, run_id, **SEGMENTS), 2, seal_hash)


def test_v1_recorder_runs_still_verify_with_the_seal_in_both_columns(
    v2_store: DatabaseUrl,
) -> None:
    run_id = "v1-recorded"
    record_run(v2_store, TENANT, run_id, steps=3, chain_format=1)  # the format-v1 writer
    chain_format, seal_hash, chain_length, root_hash, _ = seal_columns(v2_store, run_id)
    assert (chain_format, chain_length) == (1, 3)
    assert seal_hash == root_hash is not None

    _verified(prove(v2_store, TENANT, run_id), 3, seal_hash)
    _verified(prove(v2_store, TENANT, run_id, **SEGMENTS), 3, seal_hash)


def test_the_recorders_runs_are_v2_and_verify(v2_store: DatabaseUrl) -> None:
    run_id = "recorder-v2"
    record_run(v2_store, TENANT, run_id, steps=3, chain_format=2)
    chain_format, seal_hash, chain_length, _, _ = seal_columns(v2_store, run_id)
    assert (chain_format, chain_length) == (2, 3)
    _verified(prove(v2_store, TENANT, run_id), 3, seal_hash)


def test_a_sweep_batch_proves_v1_and_v2_traces_together(v2_store: DatabaseUrl) -> None:
    record_run(v2_store, TENANT, "batch-v1", steps=2, chain_format=1)
    v2_run(v2_store, "batch-v2-a", 3)
    v2_run(v2_store, "batch-v2-b", 0)
    v2_run(v2_store, "batch-v2-running", 2, complete=False)
    runs = ["batch-v2-a", "batch-v1", "batch-v2-running", "batch-v2-b"]

    async def go() -> list[tuple[str, str, int]]:
        async with session_scope(v2_store) as session:
            conn = await session.connection()
            await begin_snapshot(conn)
            traces = [await read_trace(conn, TENANT, r) for r in runs]
            proofs = await prove_traces(conn, [t for t in traces if t is not None])
            await session.rollback()
        return [
            (trace.run_id, proof.verdict.status.value, proof.steps_read) for trace, proof in proofs
        ]

    assert run(go()) == [
        ("batch-v2-a", "VERIFIED", 3),
        ("batch-v1", "VERIFIED", 2),
        ("batch-v2-running", "UNSEALED", 2),
        ("batch-v2-b", "VERIFIED", 0),
    ]


def test_an_exact_number_edited_by_one_unit_fails(v2_store: DatabaseUrl) -> None:
    """v1 would hash 2^64+1 and 2^64+2 alike (the same double): v2 tells them apart."""
    from run_proof_pipeline_tests.test_ledger_support import tamper

    run_id = "bigint-edit"
    start_v2(v2_store, run_id)
    add_steps(v2_store, run_id, [0, 1, 2], params={"n": BIG})
    complete_v2(v2_store, run_id)
    assert prove(v2_store, TENANT, run_id).integrity.verification_status == "VERIFIED"

    touched = tamper(
        v2_store,
        (
            "UPDATE aos_trace_steps SET params = %s::jsonb WHERE trace_id = %s AND step_index = 1",
            (json.dumps({"n": BIG + 1}), trace_id_of(run_id)),
        ),
    )

    assert touched == [1]
    for kwargs in ({}, SEGMENTS):
        integrity = prove(v2_store, TENANT, run_id, **kwargs).integrity
        assert integrity.verification_status == "FAILED"
        assert integrity.failure is not None
        assert (integrity.failure.location, integrity.failure.step_index) == ("step", 1)
        assert "step_hash mismatch" in integrity.failure.reason


_HOSTILE = {
    "extra_float_digits": "-15",
    "DateStyle": "SQL, DMY",
    "TimeZone": "Pacific/Chatham",
    "IntervalStyle": "sql_standard",
}


@pytest.mark.slow
def test_hostile_database_and_role_defaults_do_not_change_a_v2_proof(
    new_database: Any,
) -> None:
    """The read path's pins (store/session_pins.py) make the text of float8, jsonb and
    timestamptz exact for v2 too: defaults set by the database's owner and by the role change
    nothing (a float8 printed with -15 digits, or a local-time timestamp, would not hash
    alike)."""
    url = DatabaseUrl.parse(new_database("v2hostile"))
    upgrade(url)
    run_id = "hostile"
    v2_run(url, run_id, 3)
    seal_hash = seal_columns(url, run_id)[1]
    database = url.libpq().rsplit("/", 1)[-1].split("?", 1)[0]
    with psycopg.connect(url.libpq(), autocommit=True) as conn:
        for name, value in _HOSTILE.items():
            for target in (
                psycopg.sql.SQL("DATABASE {}").format(psycopg.sql.Identifier(database)),
                psycopg.sql.SQL("ROLE CURRENT_USER IN DATABASE {}").format(
                    psycopg.sql.Identifier(database)
                ),
            ):
                conn.execute(
                    psycopg.sql.SQL("ALTER {} SET {} = {}").format(
                        target, psycopg.sql.Identifier(name), psycopg.sql.Literal(value)
                    )
                )
    with psycopg.connect(url.libpq()) as conn:  # the defaults are in force for new sessions
        shown = conn.execute(
            "SELECT current_setting('extra_float_digits'), current_setting('TimeZone'),"
            " 12.5::float8 * 1.1 || ''"
        ).fetchone()
    assert shown is not None and shown[:2] == ("-15", "Pacific/Chatham")
    assert shown[2] != repr(12.5 * 1.1)  # float8 text is rounded in such a session

    _verified(prove(url, TENANT, run_id), 3, seal_hash)
    _verified(prove(url, TENANT, run_id, **SEGMENTS), 3, seal_hash)
