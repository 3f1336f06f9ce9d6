"""Migration 0006 on run-proof's own schema: the database chains every insert (format v2).

Plain psql-style INSERTs get their genesis, step and seal hashes from the triggers, equal to
the Python reference (records_v2) recomputed from the rows; a client's values for columns of
ours are replaced; no writer can make the database seal a prefix; the format-v1 recorder keeps
its path (docs/hash-chain-v2.md, "Where every value is stored", "When a trace is sealed").
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from run_proof_pipeline.local_postgres import LocalPostgres
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.migrate import upgrade
from run_proof_pipeline_tests.aos_deployed import chained_run, ledger_entries
from run_proof_pipeline_tests.store_fixtures import record_run

TENANT = "acme"


@pytest.fixture(scope="module")
def store(pg_server: LocalPostgres) -> Iterator[DatabaseUrl]:
    name = f"chaindb_{uuid.uuid4().hex[:12]}"
    url = DatabaseUrl.parse(pg_server.create_database(name))
    upgrade(url)
    try:
        yield url
    finally:
        pg_server.drop_database(name)


def connect(url: DatabaseUrl) -> psycopg.Connection[Any]:
    return psycopg.connect(url.libpq(), autocommit=True)


def insert_trace(
    conn: psycopg.Connection[Any], run_id: str, *, status: str = "running", **extra: Any
) -> str:
    trace_id = f"trace-{run_id}"
    columns = {
        "trace_id": trace_id,
        "run_id": run_id,
        "tenant_id": TENANT,
        "agent_id": "agent-1",
        "plan": json.dumps({"goal": "x", "big": 2**64 + 1}),
        "status": status,
        **extra,
    }
    names = ", ".join(columns)
    marks = ", ".join(["%s"] * len(columns))
    conn.execute(
        f"INSERT INTO aos_traces ({names}) VALUES ({marks})",
        tuple(columns.values()),
    )
    return trace_id


def insert_step(conn: psycopg.Connection[Any], trace_id: str, index: int, **extra: Any) -> None:
    columns = {
        "trace_id": trace_id,
        "step_index": index,
        "skill_id": "s",
        "skill_name": "http_call",
        "params": json.dumps({"i": index, "exact": "9007199254740993"}),
        "status": "success",
        "outcome_category": "SUCCESS",
        "cost_cents": 0.1 * index,
        "duration_ms": 12.5,
        "retry_count": 0,
        **extra,
    }
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join(["%s"] * len(columns))
    conn.execute(
        f"INSERT INTO aos_trace_steps ({names}) VALUES ({marks})",
        tuple(columns.values()),
    )


def complete(conn: psycopg.Connection[Any], trace_id: str, metadata: Any = None) -> None:
    conn.execute(
        "UPDATE aos_traces SET status = 'completed', completed_at = now(),"
        " metadata = %s WHERE trace_id = %s",
        (json.dumps(metadata) if metadata is not None else None, trace_id),
    )


def test_plain_inserts_are_chained_and_sealed_by_the_database(store: DatabaseUrl) -> None:
    with connect(store) as conn:
        trace_id = insert_trace(conn, "run-plain")
        for index in range(3):
            insert_step(conn, trace_id, index)
        running = chained_run(conn, trace_id)
        running.assert_matches()
        assert running.trace["seal_hash"] is None
        complete(conn, trace_id, {"total": 2**70})
        sealed = chained_run(conn, trace_id)
        sealed.assert_matches()
        assert sealed.trace["chain_length"] == 3
        assert sealed.trace["seal_seq"] is not None
        assert sealed.trace["root_hash"] is None  # AOS's column: run-proof writes nothing there
        assert ledger_entries(conn, trace_id) == [("seal", 3, sealed.expected_seal)]


def test_the_recorder_keeps_format_v1(store: DatabaseUrl) -> None:
    trace_id = record_run(store, TENANT, "run-v1", steps=2)
    with connect(store) as conn:
        row = conn.execute(
            "SELECT chain_format, seal_hash = root_hash, chain_length FROM aos_traces"
            " WHERE trace_id = %s",
            (trace_id,),
        ).fetchone()
        assert row == (1, True, 2)
        positions = conn.execute(
            "SELECT chain_position FROM aos_trace_steps WHERE trace_id = %s", (trace_id,)
        ).fetchall()
        assert positions == [(None,), (None,)]
        root = conn.execute(
            "SELECT root_hash FROM aos_traces WHERE trace_id = %s", (trace_id,)
        ).fetchone()
        assert root is not None
        assert ledger_entries(conn, trace_id) == [("seal", 2, root[0])]
