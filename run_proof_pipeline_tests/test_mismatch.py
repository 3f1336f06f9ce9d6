"""One value type for "this did not match" (integrity/mismatch.py): for every kind of
comparison, the stored value and the recomputed one land in the right fields (a failure's
`expected` is the recomputed value, `found` the stored one: docs/aos-compat.md), and every
report names the first bad place the same way."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import pytest
from dagster import DagsterInstance

from run_proof_pipeline.defs.plan.checks import HASH_CHAIN_CHECK
from run_proof_pipeline.integrity import (
    Anchor,
    ChainVerifier,
    IntegrityFailure,
    Mismatch,
    StoredStep,
    StoredTrace,
    Verdict,
    VerificationStatus,
    first_bad,
)
from run_proof_pipeline.integrity.merkle import RootMismatchError, verify_inclusion
from run_proof_pipeline.integrity.vectors import (
    BUNDLED_VECTORS_V2,
    check_cases_v2,
    load_vectors_v2,
    stored_steps_v2,
    stored_trace_v2,
)
from run_proof_pipeline.ledger.audit import check_extends
from run_proof_pipeline.ledger.checkpoint import Checkpoint
from run_proof_pipeline.ledger.entry import LedgerEntry
from run_proof_pipeline.ledger.keys import generate_signing_key
from run_proof_pipeline.ledger.signed_head import SignedHead
from run_proof_pipeline.ledger.tree import LedgerTree
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.sweep import SweepOptions, run_sweep
from run_proof_pipeline_tests.support.plan_runs import (
    check_outcomes,
    plan_config,
    run_plan,
    stop_of,
    trace_store,
)
from run_proof_pipeline_tests.support.stores import owner_sql, prove, record_run

CASES = load_vectors_v2(BUNDLED_VECTORS_V2.read_text(encoding="utf-8"))["cases"]
RUN = next(c for c in CASES if c["name"] == "aos_start_trace_three_steps_completed")
EXPECTED = RUN["expected"]
OTHER = "0" * 64


def _verify(
    trace: StoredTrace, steps: list[StoredStep], anchor: Anchor | None = None
) -> IntegrityFailure:
    verifier = ChainVerifier(trace)
    for step in steps:
        verifier.feed(step)
    verdict: Verdict = verifier.finish(anchor)
    assert verdict.status is VerificationStatus.FAILED, verdict
    assert verdict.failure is not None
    return verdict.failure


def _sides(failure: IntegrityFailure) -> tuple[str | None, str | None]:
    """(recomputed, stored) as the failure's Mismatch has them, checked against its fields."""
    mismatch = failure.mismatch
    assert mismatch is not None and mismatch.field == failure.field
    assert (mismatch.recomputed, mismatch.stored) == (failure.expected, failure.found)
    return mismatch.recomputed, mismatch.stored


# --- the value type ----------------------------------------------------------------------


def test_the_standard_text_is_expected_recomputed_found_stored() -> None:
    mismatch = Mismatch("step_hash", stored="b" * 64, recomputed="a" * 64)
    assert mismatch.text() == f"step_hash mismatch (expected {'a' * 64}, found {'b' * 64})"
    assert mismatch.text("the ledger") == (
        f"step_hash mismatch (recomputed {'a' * 64}, the ledger holds {'b' * 64})"
    )


def test_a_stored_value_that_is_no_hash_is_named_as_such_and_null_as_null() -> None:
    assert (
        Mismatch("genesis_hash", "ABC", "a" * 64)
        .text()
        .endswith("found 'ABC', not 64 lowercase hex characters)")
    )
    assert Mismatch("genesis_hash", None, "a" * 64).text().endswith("found null)")
    # Not compared with a hash: shown as it is.
    assert Mismatch("len(step_hashes)", "4", "3").text("the file") == (
        "len(step_hashes) mismatch (recomputed 3, the file holds 4)"
    )


def test_a_failure_of_a_mismatch_maps_recomputed_to_expected_and_stored_to_found() -> None:
    mismatch = Mismatch("prev_hash", stored="b" * 64, recomputed="a" * 64)
    failure = IntegrityFailure.of("step", 4, 3, mismatch)
    assert (failure.expected, failure.found, failure.field) == ("a" * 64, "b" * 64, "prev_hash")
    assert failure.reason == f"step 4: {mismatch.text()}"
    assert failure.mismatch == mismatch
    assert failure.where == "step 4"


# --- the chain: rules 1-4 ----------------------------------------------------------------


def test_rule_1_the_recomputed_genesis_is_expected_the_stored_one_found() -> None:
    failure = _verify(stored_trace_v2(RUN, genesis_hash=OTHER), stored_steps_v2(RUN))
    assert (failure.location, failure.rule, failure.field) == ("header", 1, "genesis_hash")
    assert _sides(failure) == (EXPECTED["genesis_hash"], OTHER)


def test_rule_2_the_index_due_is_expected_the_stored_index_found() -> None:
    steps = stored_steps_v2(RUN)
    steps[1] = replace(steps[1], step_index=5)
    failure = _verify(stored_trace_v2(RUN), steps)
    assert (failure.location, failure.step_index, failure.rule) == ("step", 1, 2)
    assert _sides(failure) == ("1", "5")


def test_rule_3_the_recomputed_step_hash_is_expected_the_stored_one_found() -> None:
    steps = stored_steps_v2(RUN)
    steps[1] = replace(steps[1], step_hash=OTHER)
    failure = _verify(stored_trace_v2(RUN), steps)
    assert (failure.location, failure.step_index, failure.field) == ("step", 1, "step_hash")
    assert _sides(failure) == (EXPECTED["step_hashes"][1], OTHER)


def test_rule_4_the_recomputed_seal_is_expected_the_stored_one_found() -> None:
    failure = _verify(stored_trace_v2(RUN, root_hash=OTHER), stored_steps_v2(RUN))
    assert (failure.location, failure.rule, failure.field) == ("seal", 4, "seal_hash")
    assert _sides(failure) == (EXPECTED["seal_hash"], OTHER)


# --- rule 5: the ledger -------------------------------------------------------------------


def test_rule_5_the_recomputed_root_is_expected_the_ledgers_found() -> None:
    anchor = Anchor(root_hash=OTHER, chain_length=3)
    failure = _verify(stored_trace_v2(RUN), stored_steps_v2(RUN), anchor)
    assert (failure.location, failure.rule, failure.field) == ("ledger", 5, "root_hash")
    assert _sides(failure) == (EXPECTED["seal_hash"], OTHER)
    assert failure.reason == (
        f"ledger: root_hash mismatch (recomputed {EXPECTED['seal_hash']}, the ledger holds {OTHER})"
    )


def test_rule_5_the_counted_length_is_expected_the_ledgers_found() -> None:
    anchor = Anchor(root_hash=EXPECTED["seal_hash"], chain_length=4)
    failure = _verify(stored_trace_v2(RUN), stored_steps_v2(RUN), anchor)
    assert (failure.field, _sides(failure)) == ("chain_length", ("3", "4"))


# --- vectors -------------------------------------------------------------------------------


def test_a_vectors_mismatch_holds_the_files_value_as_stored_and_ours_as_recomputed() -> None:
    cases = copy.deepcopy(CASES)
    case = next(c for c in cases if c["name"] == RUN["name"])
    case["expected"]["step_hashes"][1] = OTHER

    report = check_cases_v2(cases)

    assert report.first_mismatch is not None
    assert report.first_mismatch.case == RUN["name"]
    assert report.first_mismatch.mismatch == Mismatch(
        "step_hashes[1]", stored=OTHER, recomputed=EXPECTED["step_hashes"][1]
    )
    assert report.text() == (
        f"case {RUN['name']!r}: step_hashes[1] mismatch (recomputed "
        f"{EXPECTED['step_hashes'][1]}, the file holds {OTHER})"
    )


# --- the ledger's tree and Merkle proofs ---------------------------------------------------


def _entries(count: int) -> list[LedgerEntry]:
    return [
        LedgerEntry(
            seq=i + 1,
            kind="seal",
            tenant_id="tenant-a",
            run_id=f"run-{i}",
            trace_id=f"trace-{i}",
            chain_length=3,
            root_hash=f"{i:064x}",
            recorded_at="2026-02-09T10:00:00.000001Z",
        )
        for i in range(count)
    ]


def test_a_ledger_rewritten_under_a_checkpoint_names_both_roots() -> None:
    signed = LedgerTree(_entries(3))
    rewritten_entries = _entries(4)
    rewritten_entries[1] = rewritten_entries[1].model_copy(update={"root_hash": OTHER})
    rewritten = LedgerTree(rewritten_entries)
    signed_root, recomputed_root = signed.root(), rewritten.root(3)
    assert signed_root != recomputed_root

    mismatch = rewritten.consistency_mismatch(3, signed_root)

    assert mismatch == Mismatch(
        "old root", stored=signed_root.hex(), recomputed=recomputed_root.hex()
    )
    assert not rewritten.extends(3, signed_root)
    assert LedgerTree(_entries(4)).consistency_mismatch(3, signed_root) is None
    head = SignedHead(
        path=Path("checkpoint-3"),
        checkpoint=Checkpoint("run-proof.local/test", 3, signed_root),
        note="",
        key=generate_signing_key("run-proof.local/test").verifier(),
    )
    why = check_extends(rewritten, head)
    assert why is not None
    assert f"(recomputed {recomputed_root.hex()}, the checkpoint holds {signed_root.hex()})" in why


def test_a_merkle_root_mismatch_holds_the_given_root_as_stored() -> None:
    tree = LedgerTree(_entries(4))
    proof = tree.inclusion(1, 4)
    with pytest.raises(RootMismatchError) as raised:
        verify_inclusion(1, 4, tree.leaves[2], proof, tree.root())
    mismatch = raised.value.mismatch
    assert mismatch is not None
    assert (mismatch.field, mismatch.stored) == ("root", tree.root().hex())
    assert mismatch.recomputed == raised.value.calculated.hex() != mismatch.stored


# --- "first bad": one wording in every report ------------------------------------------------


@pytest.mark.parametrize(
    ("location", "step_index", "where"),
    [("step", 17, "step 17"), ("step", 0, "step 0"), ("header", None, "header")]
    + [("seal", None, "seal"), ("ledger", None, "ledger")],
)
def test_first_bad_names_a_step_by_its_index_and_anything_else_by_its_location(
    location: str, step_index: int | None, where: str
) -> None:
    assert first_bad(location, step_index) == where


def test_the_verdict_the_plan_check_the_plan_step_and_the_sweep_name_the_same_step(
    store: DatabaseUrl,
    dagster_instance: DagsterInstance,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("DATABASE_URL", "USE_POSTGRES_TRACES", "RUN_PROOF_ALERT_WEBHOOK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RUN_PROOF_REPORT_DIR", str(tmp_path / "reports"))
    record_run(store, "tenant-a", "run-x", steps=4)
    touched = owner_sql(
        store,
        "UPDATE aos_trace_steps SET skill_name = 'rm_rf' WHERE run_id = %s AND step_index = 2",
        ("run-x",),
        table="aos_trace_steps",
    )
    assert touched == 1

    reason = prove(store, "tenant-a", "run-x").integrity.failure_reason
    plan = run_plan(dagster_instance, trace_store(store), plan_config(tmp_path / "reports"))
    step, stop = stop_of(dagster_instance, plan.run_id)
    passed, check = check_outcomes(dagster_instance, plan.run_id)[HASH_CHAIN_CHECK]
    [swept] = run_sweep(store, SweepOptions(full=True, workers=1)).failed

    assert reason is not None and reason.startswith("step 2: step_hash mismatch")
    assert (step, passed) == ("step_4_integrity_expectations", False)
    said = {reason.split(":")[0], stop.metadata["first_bad"].value, check["first_bad"]}
    assert said | {swept.first_bad} == {"step 2"}
