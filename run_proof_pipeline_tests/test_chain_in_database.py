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

from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.plan.coordinator_checks.fixtures import migrated_copy
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.aos_deployed import chained_run, ledger_entries
from run_proof_pipeline_tests.support.stores import record_run

TENANT = "acme"


@pytest.fixture(scope="module")
def store(pg_server: LocalPostgres) -> Iterator[DatabaseUrl]:
    name = f"chaindb_{uuid.uuid4().hex[:12]}"
    url = migrated_copy(pg_server, name)
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


def test_the_format_v1_writer_keeps_its_path(store: DatabaseUrl) -> None:
    # The format-v1 writer (run_proof_pipeline_tests/v1_writer.py) inserts its own genesis.
    trace_id = record_run(store, TENANT, "run-v1", steps=2, chain_format=1)
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


def _ours(conn: psycopg.Connection[Any], trace_id: str) -> tuple[Any, ...] | None:
    return conn.execute(
        "SELECT chain_format, seal_hash, chain_length, seal_seq, adopted_at, aos_root_hash"
        " FROM aos_traces WHERE trace_id = %s",
        (trace_id,),
    ).fetchone()


def test_a_clients_values_for_columns_of_ours_are_replaced(store: DatabaseUrl) -> None:
    with connect(store) as conn:
        trace_id = insert_trace(
            conn,
            "run-forged",
            chain_format=1,
            seal_hash="f" * 64,
            chain_length=7,
            seal_seq=10**9,
            chain_problem="none",
        )
        assert _ours(conn, trace_id) == (2, None, None, None, None, None)
        insert_step(
            conn, trace_id, 0, prev_hash="a" * 64, step_hash="b" * 64, chain_position=5,
            chain_problem="forged",
        )  # fmt: skip
        run = chained_run(conn, trace_id)
        run.assert_matches()
        assert run.steps[0].chain_problem is None
        # Nor may an UPDATE write them: replaced by the database's (here: still unsealed).
        conn.execute(
            "UPDATE aos_traces SET seal_hash = %s, chain_length = 1, seal_seq = 1,"
            " chain_problem = 'x' WHERE trace_id = %s",
            ("e" * 64, trace_id),
        )
        assert _ours(conn, trace_id) == (2, None, None, None, None, None)
        # The completion that seals computes the seal itself, whatever the client sends.
        conn.execute(
            "UPDATE aos_traces SET status = 'completed', completed_at = now(), seal_hash = %s,"
            " chain_length = 9 WHERE trace_id = %s",
            ("e" * 64, trace_id),
        )
        sealed = chained_run(conn, trace_id)
        sealed.assert_matches()
        assert sealed.trace["chain_length"] == 1


def _refused(conn: psycopg.Connection[Any], statement: str, params: tuple[Any, ...]) -> str:
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
        conn.execute(statement, params)
    return str(refused.value)


def test_a_writer_cannot_make_the_database_seal_a_prefix(store: DatabaseUrl) -> None:
    """A trace inserted finished (AOS's store_trace) lists three steps: it is sealed when the
    third is chained, and nothing a client does makes the guard seal the first one or two."""
    listed = json.dumps({"steps": [{"i": 0}, {"i": 1}, {"i": 2}]})
    with connect(store) as conn:
        trace_id = insert_trace(conn, "run-prefix", status="completed", trace=listed)
        insert_step(conn, trace_id, 0)
        # An UPDATE the guard must decide on: nothing due, so nothing sealed.
        conn.execute("UPDATE aos_traces SET status = status WHERE trace_id = %s", (trace_id,))
        conn.execute("UPDATE aos_traces SET status = 'failed' WHERE trace_id = %s", (trace_id,))
        # The step trigger's cue, set by the client itself, for a step that is not the last.
        conn.execute("SELECT set_config('run_proof.seal_due', %s, false)", (trace_id,))
        insert_step(conn, trace_id, 1)
        assert _ours(conn, trace_id)[1:3] == (None, None)  # type: ignore[index]
        # The chain state is the triggers' alone (a superuser aside: the owner can do anything,
        # which the ledger and checkpoints catch).
        insert_step(conn, trace_id, 2)
        run = chained_run(conn, trace_id)
        run.assert_matches()
        assert run.trace["chain_length"] == 3
        assert run.trace["status"] == "failed"  # the seal covers the row as it stood
        assert ledger_entries(conn, trace_id) == [("seal", 3, run.expected_seal)]
        # Sealed: only a pure archival passes.
        message = _refused(
            conn, "UPDATE aos_traces SET status = 'completed' WHERE trace_id = %s", (trace_id,)
        )
        assert f"trace {trace_id} is sealed: UPDATE rejected" in message
        conn.execute("UPDATE aos_traces SET archived_at = now() WHERE trace_id = %s", (trace_id,))
        conn.execute(
            "UPDATE aos_trace_steps SET archived_at = now() WHERE trace_id = %s", (trace_id,)
        )
        chained_run(conn, trace_id).assert_matches()


def test_a_trace_inserted_finished_with_no_steps_is_sealed_at_insert(store: DatabaseUrl) -> None:
    with connect(store) as conn:
        trace_id = insert_trace(
            conn, "run-empty", status="completed", metadata=json.dumps({"n": 0})
        )
        run = chained_run(conn, trace_id)
        run.assert_matches()
        assert run.trace["chain_length"] == 0
        assert run.expected_seal is not None
        assert ledger_entries(conn, trace_id) == [("seal", 0, run.expected_seal)]
        # A step after the seal is stored and chained on (the verifier names it).
        insert_step(conn, trace_id, 0)
        after = chained_run(conn, trace_id)
        assert after.steps[0].chain_position == 0
        assert after.steps[0].step_hash == after.steps[0].expected_hash
        assert after.trace["seal_hash"] == run.trace["seal_hash"]


def test_out_of_order_gaps_duplicates_and_late_steps_never_raise(store: DatabaseUrl) -> None:
    with connect(store) as conn:
        trace_id = insert_trace(conn, "run-disorder")
        for index in (1, 0, 5):
            insert_step(conn, trace_id, index)
        # A duplicate changes nothing: ON CONFLICT DO NOTHING skips it, the chain stays.
        conn.execute(
            "INSERT INTO aos_trace_steps (trace_id, step_index, skill_name, params)"
            " VALUES (%s, 0, 'dup', '{}') ON CONFLICT (trace_id, step_index) DO NOTHING",
            (trace_id,),
        )
        complete(conn, trace_id)
        insert_step(conn, trace_id, 6)
        run = chained_run(conn, trace_id)
    assert [(s.step_index, s.chain_position) for s in run.steps] == [
        (1, 0),
        (0, 1),
        (5, 2),
        (6, 3),
    ]
    prev = run.expected_genesis
    for step in run.steps:
        assert (step.prev_hash, step.step_hash) == (prev, step.expected_hash)
        prev = step.expected_hash
    assert run.trace["chain_length"] == 3
    assert run.trace["seal_hash"] == run.expected_seal


def test_values_that_cannot_be_hashed_are_stored_and_named(store: DatabaseUrl) -> None:
    deep = "[" * 129 + "]" * 129
    with connect(store) as conn:
        trace_id = insert_trace(conn, "run-deep", plan=deep)
        insert_step(conn, trace_id, 0)
        row = conn.execute(
            "SELECT chain_format, genesis_hash, chain_problem FROM aos_traces WHERE trace_id = %s",
            (trace_id,),
        ).fetchone()
        assert row is not None
        assert row[:2] == (2, None)
        assert "plan" in row[2] and "129" in row[2]
        step = conn.execute(
            "SELECT chain_position, step_hash, chain_problem FROM aos_trace_steps"
            " WHERE trace_id = %s",
            (trace_id,),
        ).fetchone()
        assert step is not None
        assert step[:2] == (0, None) and "previous hash" in step[2]
        complete(conn, trace_id)
        assert _ours(conn, trace_id)[:3] == (2, None, 1)  # type: ignore[index]

        other = insert_trace(conn, "run-nan")
        insert_step(conn, other, 0, cost_cents=float("nan"))
        insert_step(conn, other, 1)
        run = chained_run_without_nan(conn, other)
    assert run[0][:2] == (0, None) and "cost_cents" in run[0][2]
    # The head stayed at the genesis: the next step chains on from it.
    assert run[1][0] == 1 and run[1][1] is not None


def chained_run_without_nan(conn: psycopg.Connection[Any], trace_id: str) -> list[Any]:
    return conn.execute(
        "SELECT chain_position, step_hash, chain_problem, prev_hash FROM aos_trace_steps"
        " WHERE trace_id = %s ORDER BY chain_position",
        (trace_id,),
    ).fetchall()


def test_chain_tables_are_the_triggers_alone(store: DatabaseUrl) -> None:
    with connect(store) as conn:
        trace_id = insert_trace(conn, "run-adopted-guard")
        conn.execute(
            "INSERT INTO run_proof_adopted_steps VALUES (%s, 0, 0, %s, %s)",
            (trace_id, "a" * 64, "b" * 64),
        )
        for statement in (
            "UPDATE run_proof_adopted_steps SET step_hash = 'x' WHERE trace_id = %s",
            "DELETE FROM run_proof_adopted_steps WHERE trace_id = %s",
        ):
            assert "append-only" in _refused(conn, statement, (trace_id,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("TRUNCATE run_proof_adopted_steps")


def test_a_definer_trigger_refuses_a_table_of_a_writers_own(store: DatabaseUrl) -> None:
    """Attached to a temporary table, the chain trigger would run as the owner on rows the
    writer makes up: it refuses."""
    with connect(store) as conn:
        conn.execute(
            "CREATE TEMP TABLE aos_trace_steps (LIKE public.aos_trace_steps);"
            " CREATE TRIGGER t BEFORE INSERT ON pg_temp.aos_trace_steps FOR EACH ROW"
            " EXECUTE FUNCTION public.run_proof_v2_chain_step()"
        )
        message = _refused(
            conn,
            "INSERT INTO pg_temp.aos_trace_steps (trace_id, step_index) VALUES (%s, 0)",
            ("trace-run-plain",),
        )
        assert "runs on aos_trace_steps of the store only" in message


@pytest.mark.slow
def test_concurrent_writers_of_one_trace_are_serialized(store: DatabaseUrl) -> None:
    """Two writers inserting steps of one trace at once (each step its own transaction, and
    batches of several in one): every step gets its own position and the chain is one line."""
    import threading

    with connect(store) as conn:
        trace_id = insert_trace(conn, "run-concurrent")
    errors: list[BaseException] = []

    def writer(first: int) -> None:
        try:
            with psycopg.connect(store.libpq()) as conn:
                for batch in range(5):
                    for offset in range(4):
                        insert_step(conn, trace_id, first + batch * 8 + offset)
                    conn.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(first,)) for first in (0, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [t.name for t in threads if t.is_alive()] == []
    assert errors == []
    with connect(store) as conn:
        run = chained_run(conn, trace_id)
    assert [s.chain_position for s in run.steps] == list(range(40))
    prev = run.expected_genesis
    for step in run.steps:
        assert (step.prev_hash, step.step_hash) == (prev, step.expected_hash)
        prev = step.expected_hash


def test_a_repeatable_read_writer_fails_rather_than_fork_the_chain(store: DatabaseUrl) -> None:
    """A REPEATABLE READ writer whose snapshot predates another writer's committed step cannot
    chain at the position that step took: PostgreSQL refuses it (serialization failure)."""
    with connect(store) as conn:
        trace_id = insert_trace(conn, "run-rr")
    with psycopg.connect(store.libpq()) as old, connect(store) as other:
        old.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        old.execute("SELECT count(*) FROM aos_trace_steps").fetchone()  # takes the snapshot
        insert_step(other, trace_id, 0)
        with pytest.raises(psycopg.errors.SerializationFailure):
            insert_step(old, trace_id, 1)
    with connect(store) as conn:
        run = chained_run(conn, trace_id)
    assert [s.chain_position for s in run.steps] == [0]
