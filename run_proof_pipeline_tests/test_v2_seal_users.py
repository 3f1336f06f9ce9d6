"""Everything keyed on the seal follows the format's seal column, `seal_hash`, for format-v2
traces chained by the database (docs/hash-chain-v2.md, migration 0006): the ledger entry,
`checkpoint create` / `checkpoint verify` (the audit), the nightly schedule's latest-sealed
query, the new-seal sensor and its cursor, the trace kinds and the run-id holders.

Each v2 run is written with plain SQL, as any client (AOS's unchanged writer included)
writes it: an INSERT of the trace with AOS's `root_hash = 'pending'`, one INSERT per step,
no hash supplied, then the completing UPDATE of `status` that makes the database seal it.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from dagster import SensorResult, build_sensor_context

from run_proof_pipeline.adoption.kinds import count_trace_kinds
from run_proof_pipeline.defs.plan.seal_cursor import SealCursor
from run_proof_pipeline.defs.plan.sensors import fetch_new_seals, new_sealed_traces
from run_proof_pipeline.ledger.retirement import retire_run
from run_proof_pipeline.ledger.settings import load_ledger_settings
from run_proof_pipeline.plan.queries import latest_sealed_trace, run_id_holders
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import async_engine
from run_proof_pipeline_tests.support.ledger_fixtures import CheckpointEnv
from run_proof_pipeline_tests.support.plan_runs import trace_store
from run_proof_pipeline_tests.support.stores import BASE, record_run, run
from run_proof_pipeline_tests.test_ledger_support import (
    audit,
    ledger_entries,
    make_checkpoint,
    tamper,
)

TENANT = "tenant-v2"


def insert_v2_run(
    url: DatabaseUrl,
    run_id: str,
    *,
    steps: int = 3,
    tenant_id: str = TENANT,
    started_at: Any = BASE,
    complete: bool = True,
) -> str:
    """A run written as any client writes it (no hash supplied); sealed by the database when
    `complete` (the UPDATE of status). Returns its trace id."""
    trace_id = f"trace_{run_id}"
    with psycopg.connect(url.libpq(), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO aos_traces (trace_id, run_id, correlation_id, tenant_id, agent_id,"
            " root_hash, plan, trace, schema_version, status, started_at, created_at)"
            " VALUES (%s, %s, %s, %s, 'agent-7', 'pending', %s::jsonb, '{\"steps\": []}',"
            " '1.0', 'running', %s, %s)",
            (
                trace_id,
                run_id,
                f"corr-{run_id}",
                tenant_id,
                json.dumps({"goal": "fetch"}),
                started_at,
                started_at,
            ),
        )
        for index in range(steps):
            conn.execute(
                "INSERT INTO aos_trace_steps (trace_id, step_index, skill_id, skill_name,"
                " params, status, outcome_category, outcome_code, outcome_data, cost_cents,"
                " duration_ms, retry_count, replay_behavior, timestamp)"
                " VALUES (%s, %s, 'http', 'http', %s::jsonb, 'succeeded', 'SUCCESS', 'OK',"
                " NULL, 0.5, 12.25, 0, 'execute', %s)",
                (
                    trace_id,
                    index,
                    json.dumps({"i": index}),
                    started_at + timedelta(seconds=index),
                ),
            )
        if complete:
            conn.execute(
                "UPDATE aos_traces SET status = 'completed', completed_at = %s,"
                ' metadata = \'{"outcome": "ok"}\'::jsonb WHERE run_id = %s',
                (started_at + timedelta(minutes=5), run_id),
            )
    return trace_id


def _row(url: DatabaseUrl, query: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(url.libpq()) as conn:
        return conn.execute(query, params).fetchone()


def _seal(url: DatabaseUrl, trace_id: str) -> tuple[int, str, int, str, int]:
    """(chain_format, seal_hash, chain_length, root_hash, seal_seq) as stored."""
    return _row(
        url,
        "SELECT chain_format, seal_hash, chain_length, root_hash, seal_seq FROM aos_traces"
        " WHERE trace_id = %s",
        (trace_id,),
    )


def test_a_v2_run_sealed_by_its_completion_has_one_entry_naming_its_seal_hash(
    store: DatabaseUrl,
) -> None:
    trace_id = insert_v2_run(store, "run-v2", steps=3)

    chain_format, seal_hash, length, root_hash, seal_seq = _seal(store, trace_id)
    assert chain_format == 2 and length == 3 and seal_seq is not None
    assert seal_hash is not None and len(seal_hash) == 64
    assert root_hash == "pending"  # AOS's column, as the writer inserted it
    [entry] = ledger_entries(store)
    assert (entry.kind, entry.tenant_id, entry.run_id, entry.trace_id) == (
        "seal",
        TENANT,
        "run-v2",
        trace_id,
    )
    assert (entry.root_hash, entry.chain_length) == (seal_hash, 3)
    assert entry.leaf_hash == entry.leaf().hex()


def test_checkpoint_create_and_verify_are_clean_and_a_seal_hash_edit_is_caught(
    store: DatabaseUrl, checkpoint_env: CheckpointEnv
) -> None:
    record_run(store, "tenant-a", "run-v1", steps=2)  # the recorder's format-v1 path
    trace_id = insert_v2_run(store, "run-v2", steps=4)
    seal_hash = _seal(store, trace_id)[1]
    created = make_checkpoint(store)
    assert created.signed.checkpoint.size == 2

    clean = audit(store)
    assert clean.ok, clean.problems
    assert clean.size == 2

    forged = "0" * 64
    touched = tamper(
        store, ("UPDATE aos_traces SET seal_hash = %s WHERE trace_id = %s", (forged, trace_id))
    )
    assert touched == [1]
    problems = audit(store).problems
    assert problems == [
        f"ledger entry 2 (tenant {TENANT!r}, run 'run-v2'): seal_hash mismatch "
        f"(recorded {seal_hash}, found {forged})"
    ]


def test_a_v2_chain_length_edit_and_a_cleared_seal_are_caught(
    store: DatabaseUrl, checkpoint_env: CheckpointEnv
) -> None:
    trace_id = insert_v2_run(store, "run-v2", steps=2)
    make_checkpoint(store)

    tamper(store, ("UPDATE aos_traces SET chain_length = 1 WHERE trace_id = %s", (trace_id,)))
    [problem] = audit(store).problems
    assert "chain_length mismatch (recorded 2, found 1)" in problem

    tamper(
        store,
        (
            "UPDATE aos_traces SET seal_hash = NULL, chain_length = 2 WHERE trace_id = %s",
            (trace_id,),
        ),
    )
    [problem] = audit(store).problems
    assert "the trace's seal columns were cleared" in problem


def test_a_v1_root_hash_disagreeing_with_its_seal_hash_is_caught(
    store: DatabaseUrl, checkpoint_env: CheckpointEnv
) -> None:
    record_run(store, "tenant-a", "run-v1", steps=2, chain_format=1)
    make_checkpoint(store)
    tamper(
        store,
        ("UPDATE aos_traces SET root_hash = repeat('e', 64) WHERE run_id = %s", ("run-v1",)),
    )

    [problem] = audit(store).problems
    assert problem.startswith(
        "ledger entry 1 (tenant 'tenant-a', run 'run-v1'): root_hash mismatch"
    )
    assert "kept in root_hash and seal_hash" in problem


def test_a_removed_v2_run_is_an_alarm_unless_it_was_retired(
    store: DatabaseUrl, checkpoint_env: CheckpointEnv
) -> None:
    gone = insert_v2_run(store, "run-gone", steps=2)
    retired = insert_v2_run(store, "run-retired", steps=3, started_at=BASE + timedelta(hours=1))
    make_checkpoint(store)
    settings = load_ledger_settings()
    key = settings.signing_key()

    async def retire() -> Any:
        engine = async_engine(store)
        try:
            return await retire_run(engine, TENANT, "run-retired", "retention", key)
        finally:
            await engine.dispose()

    retirement = run(retire())
    assert retirement.tombstone.trace_id == retired
    # The tombstone names the format's seal, not AOS's root_hash ('pending').
    assert retirement.tombstone.root_hash == _seal(store, retired)[1]
    assert retirement.tombstone.chain_length == 3
    # Removals as the owner could make them: the retired run lawfully, the other silently.
    tamper(
        store,
        ("DELETE FROM aos_traces WHERE trace_id = %s", (retired,)),
        ("DELETE FROM aos_traces WHERE trace_id = %s", (gone,)),
    )

    report = audit(store)
    assert report.problems == [
        f"ledger entry 1 (tenant {TENANT!r}, run 'run-gone'): the run is gone from "
        "aos_traces (deleted)"
    ]


def test_a_v2_run_turned_legacy_is_an_alarm(
    store: DatabaseUrl, checkpoint_env: CheckpointEnv
) -> None:
    trace_id = insert_v2_run(store, "run-v2", steps=2)
    make_checkpoint(store)
    tamper(store, ("UPDATE aos_traces SET chain_format = NULL WHERE trace_id = %s", (trace_id,)))

    [problem] = audit(store).problems
    assert problem.startswith(
        f"ledger entry 1 (tenant {TENANT!r}, run 'run-v2'): the recorded trace {trace_id!r} "
        "is no longer format v1 or v2 (its chain_format was cleared)"
    )


def test_a_sealed_v2_trace_without_an_entry_is_named(
    store: DatabaseUrl, checkpoint_env: CheckpointEnv
) -> None:
    insert_v2_run(store, "run-v2", steps=1)
    make_checkpoint(store)
    tamper(store, ("DELETE FROM run_proof_ledger WHERE run_id = %s", ("run-v2",)))

    problems = audit(store).problems
    seal_hash = _row(store, "SELECT seal_hash FROM aos_traces WHERE run_id = 'run-v2'")[0]
    assert (
        f"tenant {TENANT!r}, run 'run-v2': sealed (root {seal_hash}) but has no ledger entry"
        in (problems)
    )


def _latest(url: DatabaseUrl) -> Any:
    async def go() -> Any:
        engine = async_engine(url)
        try:
            async with engine.connect() as conn:
                return await latest_sealed_trace(conn)
        finally:
            await engine.dispose()

    return run(go())


def test_the_nightly_latest_sealed_query_takes_a_v2_seal_not_aos_root_hash(
    store: DatabaseUrl,
) -> None:
    record_run(store, "tenant-a", "run-v1", steps=2)  # started at BASE
    insert_v2_run(store, "run-v2", steps=2, started_at=BASE + timedelta(hours=1))
    # Started later, still running: AOS's root_hash is set ('pending') but nothing is sealed.
    insert_v2_run(store, "run-live", steps=1, started_at=BASE + timedelta(hours=2), complete=False)
    assert _row(store, "SELECT seal_hash FROM aos_traces WHERE run_id = 'run-live'") == (None,)

    latest = _latest(store)

    assert latest is not None and (latest.tenant_id, latest.run_id) == (TENANT, "run-v2")
    assert latest.status == "completed"


def _tick(url: DatabaseUrl, cursor: str | None) -> SensorResult:
    context = build_sensor_context(cursor=cursor, resources={"trace_store": trace_store(url)})
    result = new_sealed_traces(context)
    assert isinstance(result, SensorResult)
    return result


def test_the_sensor_and_its_cursor_follow_v2_seals(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-v1", steps=2)
    first = _tick(store, None)
    assert first.run_requests == []
    high = SealCursor.parse(first.cursor)
    assert high is not None
    insert_v2_run(store, "run-v2", steps=3, started_at=BASE - timedelta(days=1))
    insert_v2_run(store, "run-empty", steps=0)  # sealed with no step: seen, no run
    insert_v2_run(store, "run-live", steps=1, complete=False)

    seals, advanced = fetch_new_seals(trace_store(store), high)

    trace_id = "trace_run-v2"
    seal_hash, seal_seq = _row(
        store, "SELECT seal_hash, seal_seq FROM aos_traces WHERE trace_id = %s", (trace_id,)
    )
    empty_hash = _row(store, "SELECT seal_hash FROM aos_traces WHERE run_id = 'run-empty'")[0]
    assert [(s.run_id, s.seal_hash, s.seal_seq, s.chain_length) for s in seals] == [
        ("run-v2", seal_hash, seal_seq, 3),
        ("run-empty", empty_hash, seal_seq + 1, 0),
    ]
    assert advanced.high == seal_seq + 1 and advanced.pending == {}
    result = _tick(store, first.cursor)
    [request] = result.run_requests or []
    assert request.run_key == f"{trace_id}:{seal_hash}"
    assert request.tags["run_proof/run_id"] == "run-v2"
    assert _tick(store, result.cursor).run_requests == []


def test_kinds_and_run_id_holders_name_format_v2(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-v1", steps=1, chain_format=1)
    insert_v2_run(store, "run-v2", steps=1)
    insert_v2_run(store, "run-shared", steps=1, tenant_id="tenant-b")
    # A legacy trace under the same run id (a format trace is one per run id; a row no
    # trigger chained, as AOS's rows from before the upgrade are, may share it).
    tamper(
        store,
        (
            "INSERT INTO aos_traces (trace_id, run_id, tenant_id, status, started_at)"
            " VALUES ('legacy-shared', 'run-shared', 'tenant-a', 'running', %s)",
            (BASE - timedelta(days=1),),
        ),
    )

    async def go() -> Any:
        engine = async_engine(store)
        try:
            async with engine.connect() as conn:
                return await count_trace_kinds(conn), await run_id_holders(conn, "run-shared")
        finally:
            await engine.dispose()

    kinds, holders = run(go())
    assert (kinds.native, kinds.native_v2, kinds.adopted, kinds.legacy) == (3, 2, 0, 1)
    assert kinds.legacy_running == 1
    assert "3 native (2 format v2), 0 adopted, 1 legacy (1 running)" in kinds.summary()
    described = [h.describe() for h in holders]
    assert len(described) == 2
    assert described[0].startswith(
        "trace 'trace_run-shared' (tenant 'tenant-b', format v2, sealed, status 'completed'"
    )
    assert described[1].startswith(
        "trace 'legacy-shared' (tenant 'tenant-a', legacy, not sealed, status 'running'"
    )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE aos_traces SET chain_format = NULL WHERE run_id = %s",
        "UPDATE aos_traces SET genesis_hash = NULL WHERE run_id = %s",
    ],
    ids=["chain-format-cleared", "v1-genesis-cleared"],
)
def test_a_trace_turned_legacy_is_not_counted_as_native(store: DatabaseUrl, statement: str) -> None:
    record_run(store, "tenant-a", "run-v1", steps=1, chain_format=1)
    assert tamper(store, (statement, ("run-v1",))) == [1]

    async def go() -> Any:
        engine = async_engine(store)
        try:
            async with engine.connect() as conn:
                return await count_trace_kinds(conn)
        finally:
            await engine.dispose()

    kinds = run(go())
    assert (kinds.native, kinds.legacy) == (0, 1)


def test_a_v1_run_whose_genesis_was_cleared_is_still_an_alarm(
    store: DatabaseUrl, checkpoint_env: CheckpointEnv
) -> None:
    record_run(store, "tenant-a", "run-v1", steps=2, chain_format=1)
    make_checkpoint(store)
    tamper(store, ("UPDATE aos_traces SET genesis_hash = NULL WHERE run_id = %s", ("run-v1",)))

    [problem] = audit(store).problems
    assert problem.startswith(
        "ledger entry 1 (tenant 'tenant-a', run 'run-v1'): the recorded trace 'trace-run-v1' "
        "is no longer format v1 (its genesis_hash was cleared)"
    )
