"""The write path: hashes at write time, refusals with nothing written, no forks."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import async_engine
from run_proof_pipeline.store.recorder import (
    DuplicateRun,
    InvalidRecord,
    StepIndexConflict,
    TraceRecorder,
    TraceSealed,
    TraceStart,
)
from run_proof_pipeline_tests.store_fixtures import make_step, prove, record_run, run


def _counts(url: DatabaseUrl) -> tuple[int, int]:
    with psycopg.connect(url.libpq()) as conn:
        traces = conn.execute("SELECT count(*) FROM aos_traces").fetchone()[0]
        steps = conn.execute("SELECT count(*) FROM aos_trace_steps").fetchone()[0]
    return traces, steps


def _append(url: DatabaseUrl, run_id: str, **overrides: Any) -> None:
    async def go() -> None:
        engine = async_engine(url)
        try:
            await TraceRecorder(engine).append_step("tenant-a", run_id, make_step(9, **overrides))
        finally:
            await engine.dispose()

    run(go())


def test_recorded_run_verifies_with_chain_length_equal_to_step_count(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-1", steps=4)

    result = prove(store, "tenant-a", "run-1")

    assert result.integrity.verification_status == "VERIFIED"
    assert result.integrity.chain_length == 4 == _counts(store)[1]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cost_cents": math.nan}, "NaN"),
        ({"duration_ms": math.inf}, "inf"),
        ({"params": {"n": 2**53}}, "2^53"),
        ({"params": {"text": "nul\x00byte"}}, "U+0000"),
        ({"params": {"text": "lone \ud800 surrogate"}}, "surrogate"),
        ({"timestamp": datetime(2026, 2, 9, 10, 0)}, "naive"),
        ({"timestamp": "2026-02-09T10:00:00.1234567Z"}, "microsecond"),
    ],
)
def test_invalid_step_values_are_refused_with_nothing_written(
    store: DatabaseUrl, overrides: dict[str, Any], message: str
) -> None:
    record_run(store, "tenant-a", "run-bad", steps=1, seal=False)
    before = _counts(store)

    with pytest.raises(InvalidRecord) as info:
        _append(store, "run-bad", **overrides)

    assert message.lower() in str(info.value).lower()
    assert _counts(store) == before


def test_step_after_the_seal_is_refused(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-sealed", steps=1)
    before = _counts(store)

    with pytest.raises(TraceSealed):
        _append(store, "run-sealed")

    assert _counts(store) == before


def test_second_seal_is_refused(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-twice", steps=1)

    async def go() -> None:
        engine = async_engine(store)
        try:
            await TraceRecorder(engine).seal(
                "tenant-a", "run-twice", status="failed", completed_at=datetime.now(UTC)
            )
        finally:
            await engine.dispose()

    with pytest.raises(TraceSealed):
        run(go())
    assert prove(store, "tenant-a", "run-twice").integrity.verification_status == "VERIFIED"


def test_duplicate_run_is_refused(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-dup", steps=0, seal=False)
    with pytest.raises(DuplicateRun):
        record_run(store, "tenant-b", "run-dup", steps=0, seal=False)


def test_naive_start_time_is_refused_with_nothing_written(store: DatabaseUrl) -> None:
    async def go() -> None:
        engine = async_engine(store)
        try:
            await TraceRecorder(engine).start_trace(
                TraceStart(tenant_id="t", run_id="r", started_at=datetime(2026, 1, 1))
            )
        finally:
            await engine.dispose()

    with pytest.raises(InvalidRecord, match="naive"):
        run(go())
    assert _counts(store) == (0, 0)


def test_two_writers_racing_for_one_index_one_wins_one_gets_a_clear_error(
    store: DatabaseUrl,
) -> None:
    record_run(store, "tenant-a", "run-race", steps=2, seal=False)

    async def go() -> list[BaseException | Any]:
        engine = async_engine(store)
        try:
            recorder = TraceRecorder(engine)
            return await asyncio.gather(
                *(
                    recorder.append_step("tenant-a", "run-race", make_step(2), expected_index=2)
                    for _ in range(2)
                ),
                return_exceptions=True,
            )
        finally:
            await engine.dispose()

    outcomes = run(go())

    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], StepIndexConflict)
    assert _counts(store)[1] == 3
    assert prove(store, "tenant-a", "run-race").integrity.verification_status == "UNSEALED"


def test_concurrent_appenders_never_fork_or_gap(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-busy", steps=0, seal=False)

    async def go() -> None:
        engine = async_engine(store)
        try:
            recorder = TraceRecorder(engine)
            await asyncio.gather(
                *(recorder.append_step("tenant-a", "run-busy", make_step(i)) for i in range(20))
            )
            await recorder.seal(
                "tenant-a", "run-busy", status="succeeded", completed_at=datetime.now(UTC)
            )
        finally:
            await engine.dispose()

    run(go())

    with psycopg.connect(store.libpq()) as conn:
        indexes = [
            r[0]
            for r in conn.execute(
                "SELECT step_index FROM aos_trace_steps WHERE run_id = 'run-busy' ORDER BY 1"
            )
        ]
    assert indexes == list(range(20))
    assert prove(store, "tenant-a", "run-busy").integrity.verification_status == "VERIFIED"


def test_seal_with_an_unrepresentable_status_is_refused_and_the_run_stays_open(
    store: DatabaseUrl,
) -> None:
    record_run(store, "tenant-a", "run-bad-seal", steps=1, seal=False)

    async def go() -> None:
        engine = async_engine(store)
        try:
            await TraceRecorder(engine).seal(
                "tenant-a", "run-bad-seal", status="done\x00", completed_at=datetime.now(UTC)
            )
        finally:
            await engine.dispose()

    with pytest.raises(InvalidRecord, match="seal"):
        run(go())
    assert prove(store, "tenant-a", "run-bad-seal").integrity.verification_status == "UNSEALED"
