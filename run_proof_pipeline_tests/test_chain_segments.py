"""ChainSegment + ChainVerifier.feed_segment: a trace cut into ranges, each checked on its
own and merged in order, gives exactly the sequential verdict (status, first failure,
chain_length, hashes) for intact and tampered runs alike."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from run_proof_pipeline.integrity import (
    CanonicalizationError,
    ChainSegment,
    ChainVerifier,
    InvalidTimestamp,
    SegmentResult,
    StoredStep,
    StoredTrace,
    Verdict,
    VerificationStatus,
)
from run_proof_pipeline.integrity.verdicts import stored_step_canonical
from run_proof_pipeline.proof.segment_worker import feed_rows, result_from_json, result_to_json
from run_proof_pipeline.store.step_rows import DecodedStep
from run_proof_pipeline_tests.test_chain_verifier import build_run, verify

OTHER_HASH = "ab" * 32


def _decoded(trace: StoredTrace, step: StoredStep) -> DecodedStep:
    """The row as a segment worker holds it after decoding (store.decoded_step.DecodedStep): its
    canonical form, or why it has none."""
    try:
        canonical: bytes | None = stored_step_canonical(trace, step)
        error = None
    except (CanonicalizationError, InvalidTimestamp) as exc:
        canonical, error = None, str(exc)
    return DecodedStep(step.step_index, canonical, step.prev_hash, step.step_hash, error=error)


def segment(trace: StoredTrace, steps: list[StoredStep]) -> SegmentResult:
    """A segment worker's check of its rows: the ChainSegment it builds (with the sealed
    length the coordinator passes it, ChainVerifier.sealed_length), its rows fed by the
    worker's own loop (proof.segment_worker.feed_rows, which stops where feed_to says reading
    on cannot change the finding), and the result as it crosses the worker's pipe
    (result_to_json / result_from_json). The rows come from memory here; verify_segment's
    COPY read around the same loop runs on the server in test_parallel_proof.py."""
    chain = ChainSegment(ChainVerifier(trace).sealed_length)
    feed_rows(chain, (_decoded(trace, step) for step in steps))
    return result_from_json(json.loads(json.dumps(result_to_json(chain.result()))))


def test_feed_rows_stops_at_the_first_failure_and_counts_the_rows_it_read() -> None:
    run = build_run(9)
    steps = list(run.steps)
    steps[4] = replace(steps[4], params={"edited": True})
    chain = ChainSegment(ChainVerifier(run.trace).sealed_length)
    offered = [_decoded(run.trace, step) for step in steps]
    taken: list[int | None] = []

    def rows() -> Iterator[DecodedStep]:
        for row in offered:
            taken.append(row.step_index)
            yield row

    assert feed_rows(chain, rows()) == 5  # steps 0-4: the edited one is the last read
    assert taken == [0, 1, 2, 3, 4]
    assert chain.result().failure is not None and chain.result().failure.step_index == 4
    intact = ChainSegment(ChainVerifier(run.trace).sealed_length)
    assert feed_rows(intact, [_decoded(run.trace, step) for step in run.steps]) == 9
    assert intact.result().failure is None and intact.result().steps == 9


def verify_in_segments(trace: StoredTrace, steps: list[StoredStep], cuts: list[int]) -> Verdict:
    bounds = [0, *sorted(c for c in cuts if 0 <= c <= len(steps)), len(steps)]
    verifier = ChainVerifier(trace)
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        if verifier.feed_segment(segment(trace, steps[lo:hi])) is not None:
            break
    return verifier.finish()


# --- named cases ------------------------------------------------------------------------------


def test_intact_run_in_three_segments_verifies_like_one() -> None:
    run = build_run(9)
    verdict = verify_in_segments(run.trace, run.steps, [3, 6])
    assert verdict == verify(run.trace, run.steps)
    assert verdict.status is VerificationStatus.VERIFIED
    assert verdict.chain_length == 9


def test_edited_row_inside_second_segment_names_its_step() -> None:
    run = build_run(9)
    steps = list(run.steps)
    steps[7] = replace(steps[7], params={"edited": True})
    verdict = verify_in_segments(run.trace, steps, [4])
    assert verdict.status is VerificationStatus.FAILED
    assert verdict.failure is not None and verdict.failure.step_index == 7
    assert verdict.failure.field == "step_hash"
    assert verdict == verify(run.trace, steps)


def test_edited_first_row_of_a_segment_fails_at_the_border() -> None:
    # The segment trusts its first row's stored step_hash only until the merge checks it.
    run = build_run(9)
    steps = list(run.steps)
    steps[4] = replace(steps[4], status="edited")
    verdict = verify_in_segments(run.trace, steps, [4])
    assert verdict.failure is not None and verdict.failure.step_index == 4
    assert verdict.failure.field == "step_hash"
    assert verdict == verify(run.trace, steps)


def test_row_deleted_at_the_border_is_a_gap() -> None:
    run = build_run(9)
    steps = run.steps[:4] + run.steps[5:]
    verdict = verify_in_segments(run.trace, steps, [4])
    assert verdict.failure is not None and verdict.failure.step_index == 4
    assert verdict.failure.field == "step_index"
    assert verdict == verify(run.trace, steps)


def test_earlier_segment_failure_wins_over_a_later_one() -> None:
    run = build_run(9)
    steps = list(run.steps)
    steps[2] = replace(steps[2], prev_hash=OTHER_HASH)
    steps[8] = replace(steps[8], step_hash=OTHER_HASH)
    verdict = verify_in_segments(run.trace, steps, [5])
    assert verdict.failure is not None and verdict.failure.step_index == 2
    assert verdict.chain_length == 3  # as a stream that stops at its first failure
    assert verdict == verify(run.trace, steps)


def test_extra_steps_beyond_the_seal_found_across_segments() -> None:
    sealed = build_run(6)
    longer = build_run(9)
    verdict = verify_in_segments(sealed.trace, longer.steps, [3, 7])
    assert verdict.failure is not None and verdict.failure.step_index == 6
    assert "extra step" in verdict.failure.reason
    assert verdict == verify(sealed.trace, longer.steps)


def test_empty_segments_change_nothing() -> None:
    run = build_run(4)
    assert verify_in_segments(run.trace, run.steps, [0, 2, 2, 4]) == verify(run.trace, run.steps)


# --- every split of every tampered run ----------------------------------------------------------


def _mutate(steps: list[StoredStep], kind: str, at: int) -> list[StoredStep]:
    if not steps:
        return steps
    i = at % len(steps)
    out = list(steps)
    step = out[i]
    if kind == "edit_field":
        out[i] = replace(step, skill_name="edited")
    elif kind == "step_hash_other":
        out[i] = replace(step, step_hash=OTHER_HASH)
    elif kind == "step_hash_not_hex":
        out[i] = replace(step, step_hash="not-a-hash")
    elif kind == "step_hash_null":
        out[i] = replace(step, step_hash=None)
    elif kind == "prev_hash_other":
        out[i] = replace(step, prev_hash=OTHER_HASH)
    elif kind == "unhashable_value":
        out[i] = replace(step, params={"x": math.nan})
    elif kind == "index_shifted":
        out[i] = replace(step, step_index=step.step_index + 5)
    elif kind == "delete":
        del out[i]
    elif kind == "duplicate":
        out.insert(i, step)
    elif kind == "swap" and i + 1 < len(out):
        out[i], out[i + 1] = out[i + 1], out[i]
    return out


MUTATIONS = [
    "none",
    "edit_field",
    "step_hash_other",
    "step_hash_not_hex",
    "step_hash_null",
    "prev_hash_other",
    "unhashable_value",
    "index_shifted",
    "delete",
    "duplicate",
    "swap",
]


@settings(max_examples=400, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=10),
    extra=st.integers(min_value=0, max_value=2),
    sealed=st.booleans(),
    kinds=st.lists(st.sampled_from(MUTATIONS), max_size=2),
    ats=st.lists(st.integers(min_value=0, max_value=20), min_size=2, max_size=2),
    cuts=st.lists(st.integers(min_value=0, max_value=14), max_size=4),
)
def test_any_split_gives_the_sequential_verdict(
    n: int, extra: int, sealed: bool, kinds: list[str], ats: list[int], cuts: list[int]
) -> None:
    # `extra` rows past a seal of n steps: the longer run's prefix has the same hashes.
    trace = build_run(n, sealed=sealed).trace
    steps = build_run(n + extra).steps
    for kind, at in zip(kinds, ats, strict=False):
        steps = _mutate(steps, kind, at)
    assert verify_in_segments(trace, steps, cuts) == verify(trace, steps)
