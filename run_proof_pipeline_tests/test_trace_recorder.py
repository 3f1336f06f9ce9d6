"""The write path (format v2): the recorder writes through the database's chaining and checks
every hash the database computed against the Python reference; refusals with nothing
written, no forks. docs/hash-chain-v2.md; the vectors are integrity/data/hash-chain-v2-vectors.json.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import psycopg
import pytest

from run_proof_pipeline.integrity import canonicalize_v2, seal_record_v2, step_record_v2
from run_proof_pipeline.integrity.vectors import BUNDLED_VECTORS_V2, load_vectors_v2
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import async_engine
from run_proof_pipeline.store.recorder import (
    ChainMismatch,
    DuplicateRun,
    FullStepAppend,
    FullTraceStart,
    InvalidRecord,
    SealWritten,
    StepIndexConflict,
    StepWritten,
    TraceRecorder,
    TraceSealed,
)
from run_proof_pipeline_tests.support.stores import make_step, prove, record_run, run

T = TypeVar("T")
CASES = load_vectors_v2(BUNDLED_VECTORS_V2.read_text(encoding="utf-8"))["cases"]


def _counts(url: DatabaseUrl) -> tuple[int, int]:
    with psycopg.connect(url.libpq()) as conn:
        traces = conn.execute("SELECT count(*) FROM aos_traces").fetchone()[0]
        steps = conn.execute("SELECT count(*) FROM aos_trace_steps").fetchone()[0]
    return traces, steps


def _with_recorder(url: DatabaseUrl, use: Callable[[TraceRecorder], Coroutine[Any, Any, T]]) -> T:
    async def go() -> T:
        engine = async_engine(url)
        try:
            return await use(TraceRecorder(engine))
        finally:
            await engine.dispose()

    return run(go())


def _append(url: DatabaseUrl, run_id: str, **overrides: Any) -> StepWritten:
    return _with_recorder(
        url, lambda r: r.append_step("tenant-a", run_id, make_step(9, **overrides))
    )


def _record_v2(url: DatabaseUrl, run_id: str, **kwargs: Any) -> str:
    return record_run(url, "tenant-a", run_id, chain_format=2, **kwargs)


def _stored(url: DatabaseUrl, trace_id: str) -> tuple[Any, ...]:
    with psycopg.connect(url.libpq()) as conn:
        trace = conn.execute(
            "SELECT chain_format, genesis_hash, seal_hash, chain_length, root_hash"
            " FROM aos_traces WHERE trace_id = %s",
            (trace_id,),
        ).fetchone()
        steps = conn.execute(
            "SELECT step_index, chain_position, prev_hash, step_hash FROM aos_trace_steps"
            " WHERE trace_id = %s ORDER BY step_index",
            (trace_id,),
        ).fetchall()
    return trace, steps


# --- the vectors, recorded through the recorder -------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_a_vector_case_recorded_through_the_recorder_stores_the_vector_hashes(
    store: DatabaseUrl, case: dict[str, Any]
) -> None:
    """Byte for byte: the hashes the database stored (and the recorder returned) are the
    vector's. The recorder starts every trace running; a case AOS inserts finished
    (store_trace) has the same header, steps and seal records (status is not in the header)."""
    header = case["header"]
    expected = case["expected"]
    start = FullTraceStart(**header)

    async def go(recorder: TraceRecorder) -> tuple[list[StepWritten], SealWritten | None]:
        await recorder.start_trace(start)
        written = []
        for step in case["steps"]:
            fields = {k: v for k, v in step.items() if k not in ("trace_id", "step_index")}
            written.append(
                await recorder.append_step(
                    header["tenant_id"],
                    header["run_id"],
                    FullStepAppend(**fields),
                    expected_index=step["step_index"],
                )
            )
        seal = None
        if case["seal"] is not None:
            seal = await recorder.seal(header["tenant_id"], header["run_id"], **case["seal"])
        return written, seal

    written, seal = _with_recorder(store, go)

    trace, steps = _stored(store, header["trace_id"])
    assert trace[0] == 2
    assert trace[1] == expected["genesis_hash"]
    assert [s[3] for s in steps] == expected["step_hashes"] == [w.step_hash for w in written]
    assert [s[1] for s in steps] == [s["step_index"] for s in case["steps"]]
    prevs = [expected["genesis_hash"], *expected["step_hashes"][:-1]]
    assert [s[2] for s in steps] == prevs[: len(steps)]
    assert trace[4] == header["aos_root_hash"]  # AOS's root_hash column, kept as written
    if case["seal"] is None:
        assert seal is None and trace[2] is None
    else:
        assert seal is not None
        assert trace[2] == expected["seal_hash"] == seal.root_hash
        assert trace[3] == len(case["steps"]) == seal.chain_length


def test_recorded_run_verifies_with_chain_length_equal_to_step_count(store: DatabaseUrl) -> None:
    trace_id = _record_v2(store, "run-1", steps=4)

    result = prove(store, "tenant-a", "run-1")

    assert result.integrity.verification_status == "VERIFIED"
    assert result.integrity.chain_length == 4 == _counts(store)[1]
    assert result.integrity.root_hash == _stored(store, trace_id)[0][2]


def test_numbers_a_double_cannot_hold_are_stored_and_hashed_exactly(store: DatabaseUrl) -> None:
    """Format v2 refuses no finite number (v1 refused 2^53): the jsonb holds the exact value
    and the step's hash is the Python reference's over it."""
    _record_v2(store, "run-big", steps=0, seal=False)
    params = {"n": 2**64 + 1, "d": Decimal("0.10000000000000001"), "e": Decimal("1E+400")}

    written = _append(store, "run-big", params=params)

    with psycopg.connect(store.libpq()) as conn:
        stored = conn.execute(
            "SELECT params::text, tenant_id FROM aos_trace_steps WHERE run_id = 'run-big'"
        ).fetchone()
    assert "18446744073709551617" in stored[0] and "0.10000000000000001" in stored[0]
    # The columns the recorder left to the database are hashed as stored: its defaults.
    defaults = {"replay_behavior": "execute", "source": "engine", "level": "INFO"}
    step = make_step(9, params=params)
    record = step_record_v2(
        tenant_id="tenant-a",
        run_id="run-big",
        trace_id="trace-run-big",
        step_index=0,
        **step.model_dump(),
        **defaults,
        is_synthetic=False,
        input_hash=None,
        output_hash=None,
        rng_state_before=None,
        idempotency_key=None,
        synthetic_scenario_id=None,
    )
    genesis = _stored(store, "trace-run-big")[0][1]
    reference = hashlib.sha256(bytes.fromhex(genesis) + canonicalize_v2(record)).hexdigest()
    assert written.step_hash == reference == _stored(store, "trace-run-big")[1][0][3]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cost_cents": math.nan}, "nan"),
        ({"duration_ms": math.inf}, "inf"),
        ({"params": {"text": "nul\x00byte"}}, "U+0000"),
        ({"skill_name": "nul\x00byte"}, "U+0000"),
        ({"params": {"text": "lone \ud800 surrogate"}}, "surrogate"),
        ({"timestamp": datetime(2026, 2, 9, 10, 0)}, "naive"),
        ({"timestamp": "2026-02-09T10:00:00.1234567Z"}, "microsecond"),
        ({"retry_count": 2**31}, "range"),
        ({"params": {1: "non-string key"}}, "not a string"),
    ],
)
def test_invalid_step_values_are_refused_with_nothing_written(
    store: DatabaseUrl, overrides: dict[str, Any], message: str
) -> None:
    _record_v2(store, "run-bad", steps=1, seal=False)
    before = _counts(store)

    with pytest.raises(InvalidRecord) as info:
        _append(store, "run-bad", **overrides)

    assert message.lower() in str(info.value).lower()
    assert _counts(store) == before
    assert prove(store, "tenant-a", "run-bad").integrity.verification_status == "UNSEALED"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"started_at": datetime(2026, 1, 1)}, "naive"),
        ({"seed": 2**63}, "range"),
        ({"plan": {"x": math.nan}}, "nan"),
        ({"checksum": "a\x00b"}, "U+0000"),
    ],
)
def test_invalid_header_values_are_refused_with_nothing_written(
    store: DatabaseUrl, fields: dict[str, Any], message: str
) -> None:
    start = FullTraceStart(
        **{"tenant_id": "t", "run_id": "r", "started_at": datetime.now(UTC), **fields}
    )

    with pytest.raises(InvalidRecord) as info:
        _with_recorder(store, lambda r: r.start_trace(start))

    assert message.lower() in str(info.value).lower()
    assert _counts(store) == (0, 0)


def test_step_after_the_seal_is_refused(store: DatabaseUrl) -> None:
    """The database would store and chain a late step (and the verdict name it); the
    recorder refuses to write one."""
    _record_v2(store, "run-sealed", steps=1)
    before = _counts(store)

    with pytest.raises(TraceSealed):
        _append(store, "run-sealed")

    assert _counts(store) == before
    assert prove(store, "tenant-a", "run-sealed").integrity.verification_status == "VERIFIED"


def test_second_seal_is_refused(store: DatabaseUrl) -> None:
    trace_id = _record_v2(store, "run-twice", steps=1)
    sealed = _stored(store, trace_id)[0]

    with pytest.raises(TraceSealed):
        _with_recorder(
            store,
            lambda r: r.seal(
                "tenant-a", "run-twice", status="failed", completed_at=datetime.now(UTC)
            ),
        )
    assert _stored(store, trace_id)[0] == sealed
    assert prove(store, "tenant-a", "run-twice").integrity.verification_status == "VERIFIED"


def test_the_seal_covers_metadata_and_returns_the_format_seal(store: DatabaseUrl) -> None:
    trace_id = _record_v2(store, "run-meta", steps=2, seal=False)
    metadata = {"abort_reason": "worker shutdown", "tokens": 2**60 + 1}

    seal = _with_recorder(
        store,
        lambda r: r.seal(
            "tenant-a",
            "run-meta",
            status="aborted",
            completed_at="2026-02-09T11:00:00.000001Z",
            metadata=metadata,
        ),
    )

    trace, steps = _stored(store, trace_id)
    record = seal_record_v2(
        tenant_id="tenant-a",
        run_id="run-meta",
        trace_id=trace_id,
        status="aborted",
        completed_at="2026-02-09T11:00:00.000001Z",
        chain_length=2,
        metadata=metadata,
    )
    reference = hashlib.sha256(bytes.fromhex(steps[-1][3]) + canonicalize_v2(record)).hexdigest()
    assert seal == SealWritten(chain_length=2, root_hash=reference)
    assert trace[2] == reference and trace[3] == 2
    assert trace[4] is None  # the recorder leaves AOS's root_hash column alone
    assert prove(store, "tenant-a", "run-meta").integrity.verification_status == "VERIFIED"


def test_a_seal_that_does_not_end_the_run_is_refused(store: DatabaseUrl) -> None:
    trace_id = _record_v2(store, "run-open", steps=1, seal=False)

    with pytest.raises(InvalidRecord, match="running"):
        _with_recorder(
            store,
            lambda r: r.seal("tenant-a", "run-open", status="running", completed_at=None),
        )
    assert _stored(store, trace_id)[0][2] is None


def test_duplicate_run_is_refused(store: DatabaseUrl) -> None:
    _record_v2(store, "run-dup", steps=0, seal=False)
    with pytest.raises(DuplicateRun):
        record_run(store, "tenant-b", "run-dup", steps=0, seal=False, chain_format=2)
    assert _counts(store) == (1, 0)


def test_a_format_v1_trace_is_not_extended_by_the_recorder(store: DatabaseUrl) -> None:
    """v1 rows (tests make them with v1_writer) keep verifying as v1; no producer adds to them."""
    trace_id = record_run(store, "tenant-a", "run-v1", steps=2, seal=False, chain_format=1)
    assert _stored(store, trace_id)[0][0] == 1

    with pytest.raises(InvalidRecord, match="format v1"):
        _append(store, "run-v1")

    assert _counts(store) == (1, 2)
    assert prove(store, "tenant-a", "run-v1").integrity.verification_status == "UNSEALED"


def test_two_writers_racing_for_one_index_one_wins_one_gets_a_clear_error(
    store: DatabaseUrl,
) -> None:
    _record_v2(store, "run-race", steps=2, seal=False)

    async def go(recorder: TraceRecorder) -> list[BaseException | Any]:
        return await asyncio.gather(
            *(
                recorder.append_step("tenant-a", "run-race", make_step(2), expected_index=2)
                for _ in range(2)
            ),
            return_exceptions=True,
        )

    outcomes = _with_recorder(store, go)

    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], StepIndexConflict)
    assert _counts(store)[1] == 3
    assert prove(store, "tenant-a", "run-race").integrity.verification_status == "UNSEALED"


def test_concurrent_appenders_never_fork_or_gap(store: DatabaseUrl) -> None:
    trace_id = _record_v2(store, "run-busy", steps=0, seal=False)

    async def go(recorder: TraceRecorder) -> None:
        await asyncio.gather(
            *(recorder.append_step("tenant-a", "run-busy", make_step(i)) for i in range(20))
        )
        await recorder.seal(
            "tenant-a", "run-busy", status="succeeded", completed_at=datetime.now(UTC)
        )

    _with_recorder(store, go)

    steps = _stored(store, trace_id)[1]
    assert [s[0] for s in steps] == list(range(20)) == [s[1] for s in steps]
    assert [s[2] for s in steps[1:]] == [s[3] for s in steps[:-1]]
    assert prove(store, "tenant-a", "run-busy").integrity.verification_status == "VERIFIED"


def test_seal_with_an_unrepresentable_status_is_refused_and_the_run_stays_open(
    store: DatabaseUrl,
) -> None:
    _record_v2(store, "run-bad-seal", steps=1, seal=False)

    with pytest.raises(InvalidRecord, match="seal"):
        _with_recorder(
            store,
            lambda r: r.seal(
                "tenant-a", "run-bad-seal", status="done\x00", completed_at=datetime.now(UTC)
            ),
        )
    assert prove(store, "tenant-a", "run-bad-seal").integrity.verification_status == "UNSEALED"


# --- the database's chaining is checked, not trusted ----------------------------------------


def test_a_chain_start_that_disagrees_with_the_trace_is_caught_and_nothing_is_written(
    store: DatabaseUrl,
) -> None:
    """The owner moves where the database starts the chain (run_proof_chain_heads): the
    step it would chain does not follow the stored genesis. The recorder names both prev
    hashes and its transaction rolls back."""
    trace_id = _record_v2(store, "run-head", steps=0, seal=False)
    with psycopg.connect(store.libpq()) as conn:
        conn.execute(
            "UPDATE run_proof_chain_heads SET head_hash = %s WHERE trace_id = %s",
            ("ab" * 32, trace_id),
        )
    before = _stored(store, trace_id)

    with pytest.raises(ChainMismatch) as info:
        _append(store, "run-head")

    assert "prev_hash" in str(info.value) and "ab" * 32 in str(info.value)
    assert before[0][1] in str(info.value)  # the genesis, the reference's prev
    assert _stored(store, trace_id) == before
    assert _counts(store) == (1, 0)


def _make_function_lie(url: DatabaseUrl, name: str) -> None:
    """As the owner: `name` (one of chain_v2.sql's hash functions) returns 64 zeros."""
    with psycopg.connect(url.libpq()) as conn:
        function, arguments = conn.execute(
            "SELECT p.oid::regprocedure::text, pg_get_function_arguments(p.oid) FROM pg_proc p"
            " WHERE p.proname = %s",
            (name,),
        ).fetchone()
        conn.execute(f"ALTER FUNCTION {function} RENAME TO {name}_real")
        conn.execute(
            f"CREATE FUNCTION {name}({arguments}) RETURNS text"
            " LANGUAGE sql AS $$ SELECT repeat('0', 64) $$"
        )


def test_a_lying_genesis_function_is_caught_and_no_trace_is_written(store: DatabaseUrl) -> None:
    _make_function_lie(store, "run_proof_v2_genesis_hash")

    with pytest.raises(ChainMismatch) as info:
        _record_v2(store, "run-lie", steps=0, seal=False)

    assert "genesis_hash" in str(info.value) and "0" * 64 in str(info.value)
    assert _counts(store) == (0, 0)


def test_a_lying_step_function_is_caught_and_no_step_is_written(store: DatabaseUrl) -> None:
    trace_id = _record_v2(store, "run-lie", steps=1, seal=False)
    before = _stored(store, trace_id)
    _make_function_lie(store, "run_proof_v2_step_hash")

    with pytest.raises(ChainMismatch) as info:
        _append(store, "run-lie")

    assert "step_hash" in str(info.value) and "0" * 64 in str(info.value)
    assert _stored(store, trace_id) == before


def test_a_lying_seal_function_is_caught_and_the_run_stays_open(store: DatabaseUrl) -> None:
    trace_id = _record_v2(store, "run-lie", steps=1, seal=False)
    _make_function_lie(store, "run_proof_v2_seal_hash")

    with pytest.raises(ChainMismatch) as info:
        _with_recorder(
            store,
            lambda r: r.seal("tenant-a", "run-lie", status="succeeded", completed_at=None),
        )

    assert "seal_hash" in str(info.value) and "0" * 64 in str(info.value)
    with psycopg.connect(store.libpq()) as conn:
        row = conn.execute(
            "SELECT status, seal_hash FROM aos_traces WHERE trace_id = %s", (trace_id,)
        ).fetchone()
        entries = conn.execute("SELECT count(*) FROM run_proof_ledger").fetchone()[0]
    assert row == ("running", None) and entries == 0
