"""The streaming verifier on format-v2 traces (docs/hash-chain-v2.md, "Verification"), pure.

Rows are built from the v2 vectors as a reader would pass them.  Every covered header, step
and seal field, edited, fails naming where; chain positions (rule 2), gaps, extra steps
beyond the seal, segments, the unsealed prefix, and format v1's two seal columns.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from run_proof_pipeline.integrity import (
    HEADER_V2_FIELDS,
    SEAL_V2_FIELDS,
    STEP_V2_FIELDS,
    Anchor,
    ChainSegment,
    ChainVerifier,
    IntegrityFailure,
    StoredStep,
    StoredTrace,
    Verdict,
    VerificationStatus,
    parse_stored_json_v2,
    step_canonical_v2,
)
from run_proof_pipeline.integrity.vectors import (
    BUNDLED_VECTORS,
    BUNDLED_VECTORS_V2,
    json_text_exact,
    load_vectors_v2,
    stored_steps_v2,
    stored_trace_v2,
)
from run_proof_pipeline.integrity.verdicts import stored_step_canonical_v2

CASES = {
    c["name"]: c for c in load_vectors_v2(BUNDLED_VECTORS_V2.read_text(encoding="utf-8"))["cases"]
}
RUN = CASES["aos_start_trace_three_steps_completed"]
V1_HEADER = ("tenant_id", "run_id", "trace_id", "agent_id", "plan_id", "plan", "started_at")


def verify(
    trace: StoredTrace, steps: list[StoredStep], anchor: Anchor | None = None, stop: bool = False
) -> Verdict:
    """Feed every step (`stop`: stop reading at the first failure, as a stream does)."""
    verifier = ChainVerifier(trace)
    for step in steps:
        if verifier.feed(step) is not None and stop:
            break
    return verifier.finish(anchor)


def failure_of(verdict: Verdict) -> IntegrityFailure:
    assert verdict.status is VerificationStatus.FAILED, verdict
    assert verdict.failure is not None
    return verdict.failure


def _other(value: Any, field: str) -> Any:
    """A different stored value of the same kind."""
    if field in ("started_at", "created_at", "completed_at", "timestamp"):
        return "2027-01-01T00:00:00.000000Z"
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, Decimal)):
        return value + 1
    if isinstance(value, float):
        return value + 0.25
    if isinstance(value, str):
        return value + "x"
    if value is None:
        return "x"
    return {"edited": value}


# --- verified runs -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_vector_run_verifies(name: str) -> None:
    case = CASES[name]
    verdict = verify(stored_trace_v2(case), stored_steps_v2(case))
    expected = case["expected"]
    sealed = case["seal"] is not None
    assert verdict.status is (
        VerificationStatus.VERIFIED if sealed else VerificationStatus.UNSEALED
    )
    assert verdict.genesis_hash == expected["genesis_hash"]
    assert verdict.head_hash == expected["head_hash"]
    assert verdict.root_hash == expected["seal_hash"]
    assert verdict.chain_length == len(case["steps"])


def test_json_fields_parsed_from_stored_text_verify_and_exact_edits_fail() -> None:
    """params / plan / metadata as a reader parses them from jsonb text: exact numbers."""
    case = CASES["exact_numbers"]
    trace = stored_trace_v2(case)
    trace = replace(
        trace,
        plan=parse_stored_json_v2(json_text_exact(trace.plan)),
        metadata=parse_stored_json_v2(json_text_exact(trace.metadata)),
    )
    steps = [
        replace(s, params=parse_stored_json_v2(json_text_exact(s.params)))
        for s in stored_steps_v2(case)
    ]
    assert verify(trace, steps).status is VerificationStatus.VERIFIED
    # 9007199254740993 -> ...992: the same double, so format v1 could not see it; v2 does.
    edited = json_text_exact(steps[0].params).replace("9007199254740993", "9007199254740992")
    steps[0] = replace(steps[0], params=parse_stored_json_v2(edited))
    failure = failure_of(verify(trace, steps))
    assert (failure.location, failure.step_index, failure.field) == ("step", 0, "step_hash")


def test_a_v2_anchor_is_the_seal_hash() -> None:
    trace, steps = stored_trace_v2(RUN), stored_steps_v2(RUN)
    seal = RUN["expected"]["seal_hash"]
    assert verify(trace, steps, Anchor(seal, 3)).status is VerificationStatus.VERIFIED
    failure = failure_of(verify(trace, steps, Anchor("0" * 64, 3)))
    assert (failure.location, failure.field) == ("ledger", "root_hash")


# --- every covered field, edited -----------------------------------------------------------


def _edit_header(trace: StoredTrace, field: str) -> StoredTrace:
    if field in V1_HEADER:
        return replace(trace, **{field: _other(getattr(trace, field), field)})
    assert trace.header_v2 is not None
    fields = dict(trace.header_v2)
    fields[field] = _other(fields[field], field)
    return replace(trace, header_v2=fields)


@pytest.mark.parametrize("field", HEADER_V2_FIELDS)
def test_an_edited_header_field_fails_at_the_header(field: str) -> None:
    trace = _edit_header(stored_trace_v2(RUN), field)
    failure = failure_of(verify(trace, stored_steps_v2(RUN)))
    assert (failure.location, failure.rule, failure.field) == ("header", 1, "genesis_hash")
    assert failure.expected != RUN["expected"]["genesis_hash"]
    assert failure.found == RUN["expected"]["genesis_hash"]


_TRACE_CARRIED = ("tenant_id", "run_id")  # a step row does not carry them: the trace's


def _edit_step(step: StoredStep, field: str) -> StoredStep:
    if field in step.__dataclass_fields__ and field != "extra":
        return replace(step, **{field: _other(getattr(step, field), field)})
    assert step.extra is not None
    extra = dict(step.extra)
    extra[field] = _other(extra[field], field)
    return replace(step, extra=extra)


@pytest.mark.parametrize("field", [f for f in STEP_V2_FIELDS if f not in _TRACE_CARRIED])
def test_an_edited_step_field_fails_at_that_step(field: str) -> None:
    steps = stored_steps_v2(RUN)
    steps[1] = _edit_step(steps[1], field)
    failure = failure_of(verify(stored_trace_v2(RUN), steps))
    assert (failure.location, failure.step_index) == ("step", 1)
    if field == "step_index":
        assert (failure.rule, failure.field) == (2, "step_index")
        assert "step_index gap" in failure.reason
    else:
        assert (failure.rule, failure.field) == (3, "step_hash")
        assert failure.found == RUN["expected"]["step_hashes"][1]


@pytest.mark.parametrize("field", _TRACE_CARRIED)
def test_a_step_moved_to_another_run_or_tenant_fails(field: str) -> None:
    """The step's tenant_id/run_id are its trace's: stored under a trace of another run (or
    tenant), the very same row hashes differently."""
    assert field in STEP_V2_FIELDS and field in HEADER_V2_FIELDS
    other = CASES["aborted_with_metadata"]
    moved = stored_steps_v2(RUN)[:1]
    own = stored_step_canonical_v2(stored_trace_v2(RUN), moved[0])
    elsewhere = stored_step_canonical_v2(
        replace(stored_trace_v2(RUN), **{field: other["header"][field] + "-x"}), moved[0]
    )
    assert own != elsewhere


def _edit_seal(trace: StoredTrace, field: str) -> StoredTrace:
    if field == "chain_length":
        return replace(trace, chain_length=2)
    if field in ("status", "completed_at", "metadata"):
        return replace(trace, **{field: _other(getattr(trace, field), field)})
    return _edit_header(trace, field)  # tenant_id, run_id, trace_id: the trace's own


@pytest.mark.parametrize("field", SEAL_V2_FIELDS)
def test_an_edited_seal_field_fails(field: str) -> None:
    trace = _edit_seal(stored_trace_v2(RUN), field)
    failure = failure_of(verify(trace, stored_steps_v2(RUN)))
    if field in HEADER_V2_FIELDS:
        assert (failure.location, failure.field) == ("header", "genesis_hash")
    elif field == "chain_length":
        assert (failure.location, failure.field) == ("seal", "chain_length")
        assert "chain_length mismatch (expected 3, found 2)" in failure.reason
    else:
        assert (failure.location, failure.rule, failure.field) == ("seal", 4, "seal_hash")
        assert failure.found == RUN["expected"]["seal_hash"]


def test_the_seal_hash_column_itself_is_checked() -> None:
    trace = replace(stored_trace_v2(RUN), root_hash="f" * 64)
    failure = failure_of(verify(trace, stored_steps_v2(RUN)))
    assert (failure.location, failure.field, failure.found) == ("seal", "seal_hash", "f" * 64)
    # The AOS root_hash column is covered by the header (aos_root_hash), not the seal.
    trace = replace(stored_trace_v2(RUN), root_hash_column="something else")
    assert verify(trace, stored_steps_v2(RUN)).status is VerificationStatus.VERIFIED


# --- rule 2: chain positions, gaps, extra steps ----------------------------------------------


def test_a_step_inserted_out_of_order_fails_naming_it() -> None:
    steps = stored_steps_v2(RUN)
    steps[2] = replace(steps[2], chain_position=3)
    failure = failure_of(verify(stored_trace_v2(RUN), steps))
    assert (failure.location, failure.step_index, failure.rule) == ("step", 2, 2)
    assert failure.field == "chain_position"
    assert failure.reason == "step 2: inserted out of order (chained at position 3, expected 2)"


def test_two_steps_chained_in_swapped_order_fail_at_the_first() -> None:
    steps = stored_steps_v2(RUN)
    steps[0] = replace(steps[0], chain_position=1)
    steps[1] = replace(steps[1], chain_position=0)
    failure = failure_of(verify(stored_trace_v2(RUN), steps))
    assert failure.reason == "step 0: inserted out of order (chained at position 1, expected 0)"


def test_a_step_without_a_chain_position_fails() -> None:
    steps = stored_steps_v2(RUN)
    steps[2] = replace(steps[2], chain_position=None)
    failure = failure_of(verify(stored_trace_v2(RUN), steps))
    assert failure.reason == "step 2: no chain position (the row was not chained by the database)"
    assert (failure.field, failure.found) == ("chain_position", None)


def test_a_gap_keeps_v1s_message() -> None:
    steps = stored_steps_v2(RUN)
    del steps[1]
    failure = failure_of(verify(stored_trace_v2(RUN), steps))
    assert failure.reason == "step 1: step_index gap (expected 1, found 2)"


def test_a_missing_last_step_fails() -> None:
    failure = failure_of(verify(stored_trace_v2(RUN), stored_steps_v2(RUN)[:2]))
    assert failure.reason == "step 2: missing (the seal has chain_length 3, found 2 steps)"


def _late_step(case: dict[str, Any]) -> StoredStep:
    """A step inserted after the seal, chained on by the database (position 3)."""
    trace, last = stored_trace_v2(case), stored_steps_v2(case)[-1]
    assert last.extra is not None
    late = replace(last, step_index=3, chain_position=3, prev_hash=last.step_hash)
    canonical = stored_step_canonical_v2(trace, late)
    digest = hashlib.sha256(bytes.fromhex(str(last.step_hash)) + canonical).hexdigest()
    return replace(late, step_hash=digest)


def test_an_extra_step_beyond_the_seal_is_named() -> None:
    steps = [*stored_steps_v2(RUN), _late_step(RUN)]
    failure = failure_of(verify(stored_trace_v2(RUN), steps))
    assert (
        failure.reason == "step 3: extra step beyond the sealed chain (expected 3 steps, found 4)"
    )
    assert (failure.location, failure.step_index, failure.rule) == ("step", 3, 2)


def test_the_unsealed_prefix_of_a_running_trace() -> None:
    trace = replace(stored_trace_v2(RUN), root_hash=None, chain_length=None, status="running")
    for n in range(4):
        verdict = verify(trace, stored_steps_v2(RUN)[:n])
        assert verdict.status is VerificationStatus.UNSEALED
        assert verdict.chain_length == n and not verdict.sealed
        heads = [RUN["expected"]["genesis_hash"], *RUN["expected"]["step_hashes"]]
        assert verdict.head_hash == heads[n]
    steps = stored_steps_v2(RUN)
    steps[1] = replace(steps[1], chain_position=5)
    assert verify(trace, steps).status is VerificationStatus.FAILED


def test_a_seal_without_chain_length_and_the_reverse_fail() -> None:
    trace = replace(stored_trace_v2(RUN), chain_length=None)
    assert failure_of(verify(trace, stored_steps_v2(RUN))).reason == (
        "seal: seal_hash is set but chain_length is not"
    )
    trace = replace(stored_trace_v2(RUN), root_hash=None)
    assert failure_of(verify(trace, stored_steps_v2(RUN))).reason == (
        "seal: chain_length is set (3) but seal_hash is not"
    )


# --- stored values that cannot be hashed, formats --------------------------------------------


def test_a_v2_trace_without_genesis_is_not_legacy() -> None:
    trace = replace(stored_trace_v2(RUN), genesis_hash=None)
    failure = failure_of(verify(trace, stored_steps_v2(RUN)))
    assert (failure.location, failure.field, failure.found) == ("header", "genesis_hash", None)
    assert "genesis_hash mismatch" in failure.reason


def test_a_v2_header_that_cannot_be_hashed_fails_with_the_reason() -> None:
    trace = replace(stored_trace_v2(RUN), genesis_hash=None, plan={"x": float("nan")})
    failure = failure_of(verify(trace, stored_steps_v2(RUN)))
    assert failure.location == "header"
    assert failure.reason.startswith("header: stored values cannot be hashed (plan.x: nan")


def test_v2_header_fields_not_read_fail() -> None:
    trace = replace(stored_trace_v2(RUN), header_v2=None)
    failure = failure_of(verify(trace, stored_steps_v2(RUN)))
    assert "the v2 header fields were not read: created_at" in failure.reason


def test_a_step_that_cannot_be_hashed_fails_with_the_reason() -> None:
    steps = stored_steps_v2(RUN)
    steps[1] = replace(steps[1], params={"deep": _nested(200)})
    failure = failure_of(verify(stored_trace_v2(RUN), steps))
    assert failure.reason.startswith("step 1: stored values cannot be hashed (params: JSON nested")
    steps = stored_steps_v2(RUN)
    steps[1] = replace(steps[1], extra=None)
    failure = failure_of(verify(stored_trace_v2(RUN), steps))
    assert "step's v2 fields were not read: trace_id" in failure.reason


def test_an_unhashable_step_out_of_order_is_named_for_its_position() -> None:
    steps = stored_steps_v2(RUN)
    steps[1] = replace(steps[1], params={"x": float("inf")}, chain_position=2)
    failure = failure_of(verify(stored_trace_v2(RUN), steps))
    assert failure.field == "chain_position"


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("fmt", [None, 1])
def test_legacy_traces(fmt: int | None) -> None:
    trace = replace(stored_trace_v2(RUN), chain_format=fmt, genesis_hash=None)
    verdict = verify(trace, stored_steps_v2(RUN))
    assert verdict.status is VerificationStatus.UNSUPPORTED


@pytest.mark.parametrize("fmt", [3, 0, "2", True])
def test_an_unknown_chain_format_fails(fmt: Any) -> None:
    trace = replace(stored_trace_v2(RUN), chain_format=fmt)
    failure = failure_of(verify(trace, stored_steps_v2(RUN)))
    assert (failure.location, failure.field) == ("header", "chain_format")


def test_a_v2_trace_read_as_v1_fails() -> None:
    trace = replace(stored_trace_v2(RUN), chain_format=1)
    assert failure_of(verify(trace, stored_steps_v2(RUN))).location == "header"


# --- segments ----------------------------------------------------------------------------------


def _segment(trace: StoredTrace, steps: list[StoredStep], check: bool = True) -> Any:
    chain = ChainSegment(ChainVerifier(trace).sealed_length, check_positions=check)
    for step in steps:
        stop = chain.feed_canonical(
            step.step_index,
            stored_step_canonical_v2(trace, step),
            step.prev_hash,
            step.step_hash,
            step.chain_position,
        )
        if stop:
            break
    return chain.result()


def _merged(trace: StoredTrace, steps: list[StoredStep], cuts: list[int]) -> Verdict:
    verifier = ChainVerifier(trace)
    bounds = [0, *cuts, len(steps)]
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        verifier.feed_segment(_segment(trace, steps[lo:hi]))
    return verifier.finish()


@pytest.mark.parametrize("cuts", [[], [1], [1, 2], [2]])
def test_segments_merge_to_the_sequential_verdict(cuts: list[int]) -> None:
    trace, steps = stored_trace_v2(RUN), stored_steps_v2(RUN)
    assert _merged(trace, steps, cuts) == verify(trace, steps)
    for position in range(3):
        bad = list(steps)
        bad[position] = replace(bad[position], chain_position=position + 7)
        merged = _merged(trace, bad, cuts)
        assert merged == verify(trace, bad, stop=True)
        assert failure_of(merged).field == "chain_position"
        assert failure_of(merged).step_index == position
    late = [*steps, _late_step(RUN)]
    assert _merged(trace, late, [*cuts, 3]) == verify(trace, late, stop=True)


def test_a_segment_checked_without_positions_is_refused_by_a_v2_merger() -> None:
    trace, steps = stored_trace_v2(RUN), stored_steps_v2(RUN)
    verifier = ChainVerifier(trace)
    with pytest.raises(ValueError, match="chain positions"):
        verifier.feed_segment(_segment(trace, steps, check=False))


# --- format v1 after migration 0006: its seal is in both columns -----------------------------


def _v1_run() -> tuple[StoredTrace, list[StoredStep]]:
    data = json.loads(BUNDLED_VECTORS.read_text(encoding="utf-8"))
    case = next(c for c in data["cases"] if c["name"] == "three_steps_sealed")
    expected = case["expected"]
    trace = StoredTrace(
        **case["header"],
        status=case["seal"]["status"],
        completed_at=case["seal"]["completed_at"],
        genesis_hash=expected["genesis_hash"],
        root_hash=expected["root_hash"],
        chain_length=len(case["steps"]),
        chain_format=1,
        root_hash_column=expected["root_hash"],
    )
    prevs = [expected["genesis_hash"], *expected["step_hashes"]]
    steps = [
        StoredStep(**s, prev_hash=prevs[i], step_hash=expected["step_hashes"][i])
        for i, s in enumerate(case["steps"])
    ]
    return trace, steps


def test_v1_seal_columns_agree() -> None:
    trace, steps = _v1_run()
    assert verify(trace, steps).status is VerificationStatus.VERIFIED
    assert verify(replace(trace, root_hash_column=None), steps).status is (
        VerificationStatus.VERIFIED
    )


@pytest.mark.parametrize("column", ["0" * 64, "pending"])
def test_v1_seal_columns_that_disagree_fail_naming_both(column: str) -> None:
    trace, steps = _v1_run()
    failure = failure_of(verify(replace(trace, root_hash_column=column), steps))
    assert (failure.location, failure.field) == ("seal", "root_hash")
    assert trace.root_hash is not None
    assert trace.root_hash in failure.reason and column in failure.reason


def test_v1_seal_copy_cleared_fails() -> None:
    trace, steps = _v1_run()
    failure = failure_of(verify(replace(trace, root_hash=None), steps))
    assert (failure.location, failure.field) == ("seal", "root_hash")


def test_v1_steps_are_not_checked_for_positions() -> None:
    trace, steps = _v1_run()
    assert all(s.chain_position is None for s in steps)
    assert verify(trace, steps).status is VerificationStatus.VERIFIED


def test_step_canonical_v2_of_a_stored_step_matches_the_vector() -> None:
    trace, steps = stored_trace_v2(RUN), stored_steps_v2(RUN)
    for i, step in enumerate(steps):
        assert (
            stored_step_canonical_v2(trace, step).decode()
            == (RUN["expected"]["canonical_steps"][i])
        )
    fields = copy.deepcopy(RUN["steps"][0])
    ids = {"tenant_id": RUN["header"]["tenant_id"], "run_id": RUN["header"]["run_id"]}
    assert step_canonical_v2(**ids, **fields).decode() == RUN["expected"]["canonical_steps"][0]
