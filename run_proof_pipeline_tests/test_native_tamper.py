"""The compiled and pure paths agree on every tamper-matrix case (test_tamper_matrix.py).

Each case's run is recorded and tampered once, then proved four times: in process and by
segment workers (where the compiled walk runs, proof/segment_worker.py), each with
RUN_PROOF_NATIVE=0 and with the default; the whole integrity verdict (status, failure with
its location, step, rule, expected, found and reason) and the rows read must be the same.
"""

from __future__ import annotations

from typing import Any

import pytest

from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.native_line import walk
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
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_both_paths_give_the_same_verdict_on_every_tamper_case(
    shared_store: DatabaseUrl, case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = f"run-native-{case.name}"
    record_run(shared_store, TENANT, run_id, steps=STEPS, chain_format=1)
    record_run(shared_store, "tenant-other", f"donor-{run_id}", steps=STEPS, chain_format=1)
    run = RunShape.read(shared_store, TENANT, run_id)
    assert tamper(shared_store, *case.tamper(run)) == case.rowcounts
    for path in PATHS:
        monkeypatch.setenv("RUN_PROOF_NATIVE", "0")
        pure = _proved(shared_store, run_id, path)
        monkeypatch.delenv("RUN_PROOF_NATIVE")
        native = _proved(shared_store, run_id, path)
        assert native == pure, path
        assert pure["integrity"]["verification_status"] == "FAILED"
