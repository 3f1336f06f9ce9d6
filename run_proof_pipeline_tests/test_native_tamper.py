"""The compiled and pure paths agree on every tamper-matrix case (test_tamper_matrix.py,
and format v2's test_v2_tamper_matrix.py).

Each case's run is recorded, tampered and proved with RUN_PROOF_NATIVE=0 and with the
default, in process and by segment workers (where the compiled walk runs too,
proof/segment_worker.py; beyond the first path with the whole suite only); the whole
integrity verdict (status, failure with its location, step, rule, expected, found and reason)
and the rows read must be the same. Format v2 also in a sweep's batch (proof/stream.py
prove_traces).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from run_proof_pipeline.coordinator import RunProofCoordinator
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.plan.coordinator_checks.fixtures import migrated_copy
from run_proof_pipeline.proof.stream import prove_trace, prove_traces
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store import step_rows_v2
from run_proof_pipeline.store.engine import async_engine
from run_proof_pipeline.store.native_line import walk, walk_v2
from run_proof_pipeline.store.snapshot import begin_snapshot, read_trace
from run_proof_pipeline_tests import test_v2_tamper_matrix as v2m
from run_proof_pipeline_tests.support.marks import slow_after
from run_proof_pipeline_tests.support.stores import prove, record_run, run
from run_proof_pipeline_tests.test_ledger_support import RunShape, tamper
from run_proof_pipeline_tests.test_tamper_matrix import (
    CASES,
    PATHS,
    STEPS,
    TENANT,
    Case,
    shared_store,
)
from run_proof_pipeline_tests.test_v2_proof import start_v2, v2_run
from run_proof_pipeline_tests.test_v2_tamper_matrix import matrix_store

__all__ = ["matrix_store", "shared_store"]  # the matrices' store fixtures, shared with them


# The matrix's paths, each with a summary limit: a proof that summarizes every step observes
# each one and never walks (proof/stream.py prove_trace), so both ways would be the pure path.
NATIVE_PATHS: dict[str, Callable[[], dict[str, Any]]] = {
    "stream": lambda: {"step_summary_limit": 2},
    "stream-joined": PATHS["stream-joined"],
    "segments": PATHS["segments"],
}


def _proved(store: DatabaseUrl, run_id: str, path: str) -> dict[str, Any]:
    result = prove(store, TENANT, run_id, **NATIVE_PATHS[path]())
    return {"integrity": result.integrity.model_dump(), "steps_read": result.steps_read}


@pytest.mark.skipif(walk is None, reason="the compiled path is not built here")
@pytest.mark.parametrize("path", slow_after(NATIVE_PATHS))
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_both_paths_give_the_same_verdict_on_every_tamper_case(
    shared_store: DatabaseUrl, case: Case, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = f"run-native-{case.name}-{path}"
    record_run(shared_store, TENANT, run_id, steps=STEPS, chain_format=1)
    record_run(shared_store, "tenant-other", f"donor-{run_id}", steps=STEPS, chain_format=1)
    run = RunShape.read(shared_store, TENANT, run_id)
    assert tamper(shared_store, *case.tamper(run)) == case.rowcounts
    monkeypatch.setenv("RUN_PROOF_NATIVE", "0")
    pure = _proved(shared_store, run_id, path)
    monkeypatch.delenv("RUN_PROOF_NATIVE")
    native = _proved(shared_store, run_id, path)
    assert native == pure
    assert pure["integrity"]["verification_status"] == "FAILED"


def _with_progress(
    store: DatabaseUrl,
    run_id: str,
    coordinator: RunProofCoordinator,
    limit: int | None,
    tenant: str = TENANT,
) -> dict[str, Any]:
    calls: list[tuple[int, int | None]] = []
    result = prove(
        store,
        tenant,
        run_id,
        coordinator=coordinator,
        step_summary_limit=limit,
        progress=lambda seen, total: calls.append((seen, total)),
    )
    dumped = result.model_dump(exclude={"verified_at", "elapsed_seconds", "decode_path"})
    return {"result": dumped, "progress": calls, "path": result.decode_path}


@pytest.mark.skipif(walk is None, reason="the compiled path is not built here")
@pytest.mark.parametrize("limit", [0, 3, 40, None])
@pytest.mark.parametrize("workers", slow_after([1, 3]))
def test_summaries_and_progress_are_the_pure_paths(
    shared_store: DatabaseUrl, limit: int | None, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 40-step run proved in process (workers=1) and in segments, summaries capped at
    `limit`, progress every 7 steps: the same result, summaries and progress calls."""
    run_id = f"run-native-progress-{limit}-{workers}"
    record_run(shared_store, TENANT, run_id, steps=40, chain_format=1)
    coordinator = RunProofCoordinator(progress_every=7, workers=workers, parallel_min_steps=1)
    monkeypatch.setenv("RUN_PROOF_NATIVE", "0")
    pure = _with_progress(shared_store, run_id, coordinator, limit)
    monkeypatch.delenv("RUN_PROOF_NATIVE")
    native = _with_progress(shared_store, run_id, coordinator, limit)
    # What --json says proved the run (RunProofResult.decode_path).
    assert (pure.pop("path"), native.pop("path")) == ("pure (RUN_PROOF_NATIVE=0)", "native")
    if workers > 1:
        # Segments report in the order their workers' messages arrive: the totals compare.
        for proved in (pure, native):
            proved["progress"] = (len(proved["progress"]), proved["progress"][-1])
    assert native == pure
    assert pure["result"]["integrity"]["verification_status"] == "VERIFIED"
    assert pure["progress"], "no progress reported"


# --- format v2 (test_v2_tamper_matrix.py's cases; the compiled v2 walk, walk_v2) ---------


def _v2_run_tampered(store: DatabaseUrl, case: v2m.Case, run_id: str) -> tuple[str, str]:
    """A v2 run (inserted with plain SQL, chained by the database) with the case's edit;
    the (tenant_id, run_id) it is proved by afterwards."""
    v2_run(store, run_id, v2m.STEPS)
    start_v2(store, f"{run_id}-donor")  # an empty trace a step can be moved to
    touched = tamper(store, *case.tamper(run_id))
    assert all(count != 0 for count in touched), touched
    return case.tenant_id, case.run_id or run_id


@contextmanager
def _store_for(case: v2m.Case, shared: DatabaseUrl, server: LocalPostgres) -> Iterator[DatabaseUrl]:
    """The shared store, or one of the test's own for a case that renames the run to a fixed
    id (header-run_id: a second run renamed so in the same store would break run_id's
    uniqueness before the proof)."""
    if case.run_id is None:
        yield shared
        return
    name = f"native_v2_{uuid.uuid4().hex[:12]}"
    url = migrated_copy(server, name)
    try:
        yield url
    finally:
        server.drop_database(name)


def _both_ways(
    store: DatabaseUrl,
    ids: tuple[str, str],
    kwargs: Callable[[], dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Any]:
    proved = {}
    for name in ("pure", "native"):
        if name == "pure":
            monkeypatch.setenv("RUN_PROOF_NATIVE", "0")
        else:
            monkeypatch.delenv("RUN_PROOF_NATIVE")
        result = prove(store, *ids, **kwargs())
        proved[name] = {
            "integrity": result.integrity.model_dump(),
            "steps_read": result.steps_read,
            "path": result.decode_path,
        }
    assert (proved["pure"].pop("path"), proved["native"].pop("path")) == (
        "pure (RUN_PROOF_NATIVE=0)",
        "native",
    )
    assert proved["native"] == proved["pure"]
    return proved["pure"]


@pytest.mark.skipif(walk_v2 is None, reason="the compiled path is not built here")
@pytest.mark.parametrize("path", slow_after(["stream", "stream-joined"]))
@pytest.mark.parametrize("case", v2m.CASES, ids=[c.name for c in v2m.CASES])
def test_both_paths_give_the_same_verdict_on_every_v2_tamper_case(
    matrix_store: DatabaseUrl,
    pg_server: LocalPostgres,
    case: v2m.Case,
    path: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with _store_for(case, matrix_store, pg_server) as store:
        ids = _v2_run_tampered(store, case, f"native-{case.name}-{path}")
        pure = _both_ways(store, ids, NATIVE_PATHS[path], monkeypatch)
    assert pure["integrity"]["verification_status"] == "FAILED"
    assert pure["integrity"]["failure"]["location"] == case.location


@pytest.mark.slow
@pytest.mark.skipif(walk_v2 is None, reason="the compiled path is not built here")
@pytest.mark.parametrize("case", v2m.CASES, ids=[c.name for c in v2m.CASES])
def test_both_paths_give_the_same_verdict_on_every_v2_tamper_case_in_segments(
    matrix_store: DatabaseUrl,
    pg_server: LocalPostgres,
    case: v2m.Case,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with _store_for(case, matrix_store, pg_server) as store:
        ids = _v2_run_tampered(store, case, f"native-seg-{case.name}")
        pure = _both_ways(store, ids, NATIVE_PATHS["segments"], monkeypatch)
    assert pure["integrity"]["verification_status"] == "FAILED"


@pytest.mark.skipif(walk_v2 is None, reason="the compiled path is not built here")
def test_a_sweep_batch_of_v2_runs_is_proved_alike_both_ways(
    matrix_store: DatabaseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prove_traces (the sweep's batches, proof/stream.py _Batch): verified, tampered and
    running v2 runs and a v1 run in one batch, the same proofs with RUN_PROOF_NATIVE=0 and
    the default, and the same as proving each run alone."""
    edits = {c.name: c for c in v2m.CASES}
    runs = [("batch-ok", None), ("batch-running", None)]
    runs += [(f"batch-{name}", edits[name]) for name in BATCH_EDITS]
    for run_id, case in runs:
        if case is None:
            v2_run(matrix_store, run_id, 30, complete=run_id == "batch-ok")
        else:
            _v2_run_tampered(matrix_store, case, run_id)
    record_run(matrix_store, v2m.TENANT, "batch-v1", steps=4, chain_format=1)
    names = [r for r, _ in runs] + ["batch-v1"]

    async def proofs() -> tuple[list[Any], list[Any]]:
        engine = async_engine(matrix_store)
        try:
            async with engine.connect() as conn:
                await begin_snapshot(conn)
                traces = [await read_trace(conn, v2m.TENANT, r) for r in names]
                found = [t for t in traces if t is not None]
                assert len(found) == len(names)
                batch = await prove_traces(conn, found)
                single = [await prove_trace(conn, t) for t in found]
                return [p for _, p in batch], single
        finally:
            await engine.dispose()

    monkeypatch.setenv("RUN_PROOF_NATIVE", "0")
    pure_batch, pure_single = run(proofs())
    monkeypatch.delenv("RUN_PROOF_NATIVE")
    native_batch, native_single = run(proofs())
    assert native_batch == pure_batch == pure_single == native_single
    statuses = [p.verdict.status.value for p in pure_batch]
    assert statuses == ["VERIFIED", "UNSEALED", *["FAILED"] * len(BATCH_EDITS), "VERIFIED"]


# One edit of each kind a walk meets mid-run (a hash, a position, a value, a swapped row).
BATCH_EDITS = ["step-params", "chain-chain_position", "chain-prev_hash", "row-two-steps-swapped"]


@pytest.mark.skipif(walk_v2 is None, reason="the compiled path is not built here")
@pytest.mark.parametrize("limit", [0, 3, 40, None])
@pytest.mark.parametrize("workers", [1, 3])
def test_v2_summaries_and_progress_are_the_pure_paths(
    matrix_store: DatabaseUrl, limit: int | None, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """test_summaries_and_progress_are_the_pure_paths for a 40-step v2 run."""
    run_id = f"run-native-v2-progress-{limit}-{workers}"
    v2_run(matrix_store, run_id, 40)
    coordinator = RunProofCoordinator(progress_every=7, workers=workers, parallel_min_steps=1)
    monkeypatch.setenv("RUN_PROOF_NATIVE", "0")
    pure = _with_progress(matrix_store, run_id, coordinator, limit, tenant=v2m.TENANT)
    monkeypatch.delenv("RUN_PROOF_NATIVE")
    walked: list[int] = []  # rows the compiled v2 walk took in this process

    def counted(*args: Any) -> tuple[int, bytes]:
        assert walk_v2 is not None
        consumed, prev = walk_v2(*args)
        walked.append(consumed)
        return consumed, prev

    monkeypatch.setattr(step_rows_v2, "walk_v2", counted)
    native = _with_progress(matrix_store, run_id, coordinator, limit, tenant=v2m.TENANT)
    if workers == 1 and limit is not None:
        assert sum(walked) == 40 - min(limit, 40)  # every row after the summaries' rows
    assert (pure.pop("path"), native.pop("path")) == ("pure (RUN_PROOF_NATIVE=0)", "native")
    if workers > 1:
        for proved in (pure, native):
            proved["progress"] = (len(proved["progress"]), proved["progress"][-1])
    assert native == pure
    assert pure["result"]["integrity"]["verification_status"] == "VERIFIED"
    assert pure["progress"], "no progress reported"
