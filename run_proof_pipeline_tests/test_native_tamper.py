"""The compiled and pure paths agree on every tamper-matrix case (test_tamper_matrix.py).

Each case's run is recorded, tampered and proved with RUN_PROOF_NATIVE=0 and with the
default, once in process and once by segment workers (where the compiled walk runs too,
proof/segment_worker.py; with the whole suite only); the whole integrity verdict (status,
failure with its location, step, rule, expected, found and reason) and the rows read must be
the same.
"""

from __future__ import annotations

from typing import Any

import pytest

from run_proof_pipeline.coordinator import RunProofCoordinator
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.native_line import walk
from run_proof_pipeline_tests.support.marks import slow_after
from run_proof_pipeline_tests.support.stores import prove, record_run
from run_proof_pipeline_tests.test_ledger_support import RunShape, tamper
from run_proof_pipeline_tests.test_tamper_matrix import (
    CASES,
    PATHS,
    STEPS,
    TENANT,
    Case,
    shared_store,
)

__all__ = ["shared_store"]  # the module's store fixture, shared with the matrix


def _proved(store: DatabaseUrl, run_id: str, path: str) -> dict[str, Any]:
    result = prove(store, TENANT, run_id, **PATHS[path]())
    return {"integrity": result.integrity.model_dump(), "steps_read": result.steps_read}


@pytest.mark.skipif(walk is None, reason="the compiled path is not built here")
@pytest.mark.parametrize("path", slow_after(PATHS))  # segments: 3 processes a proof
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
    store: DatabaseUrl, run_id: str, coordinator: RunProofCoordinator, limit: int | None
) -> dict[str, Any]:
    calls: list[tuple[int, int | None]] = []
    result = prove(
        store,
        TENANT,
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
