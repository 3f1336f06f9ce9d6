"""Streaming verification of stored rows: every vector verifies, every tampering is named.

Mutation tests in the style of transparency-dev/merkle: each test is named after the failure
it shows and asserts the status, the location, the step index and expected against found.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

import pytest

from run_proof_pipeline.integrity import (
    LEGACY_TRACE_REASON,
    Anchor,
    ChainVerifier,
    IntegrityFailure,
    IntegrityModel,
    StoredStep,
    StoredTrace,
    Verdict,
    VerificationStatus,
    canonicalize,
    compute_chain,
    header_record,
    parse_stored_json,
    seal_record,
    step_canonical_bytes,
    step_record,
)
from run_proof_pipeline.integrity.vectors import BUNDLED_VECTORS

# The repository's own copy of the normative vectors (compared with ../shared's, when it is
# there, in test_hash_chain_vectors.py).
VECTORS = BUNDLED_VECTORS
TENANT = "tenant-demo"
RUN = "run-0042"
FAILED = VerificationStatus.FAILED


# --- a stored run, built with the write path --------------------------------------------------


@dataclass(frozen=True)
class Run:
    trace: StoredTrace
    steps: list[StoredStep]


def _step_fields(i: int) -> dict[str, Any]:
    return {
        "step_index": i,
        "skill_id": f"skill.s{i % 3}",
        "skill_name": f"s{i % 3}",
        "params": {"i": i, "url": "https://example.invalid/api", "w": [1.0, 0.1 * i]},
        "status": "succeeded" if i % 4 else "failed",
        "outcome_category": "success",
        "outcome_code": "200",
        "outcome_data": None if i % 2 else {"bytes": 1000 + i, "ok": True},
        "cost_cents": 0.5 * i,
        "duration_ms": 227.6 + i,
        "retry_count": i % 3,
        "timestamp": f"2026-02-09T10:00:{i:02d}.123456Z",
    }


def build_run(
    n_steps: int = 5,
    *,
    sealed: bool = True,
    tenant_id: str = TENANT,
    run_id: str = RUN,
    plan: Any = None,
    steps: list[dict[str, Any]] | None = None,
) -> Run:
    header = {
        "tenant_id": tenant_id,
        "run_id": run_id,
        "trace_id": "trace-0042",
        "agent_id": "agent-7",
        "plan_id": "plan-42",
        "plan": {"goal": "fetch", "steps": ["s0", "s1"]} if plan is None else plan,
        "started_at": "2026-02-09T10:00:00.000000Z",
    }
    fields = steps if steps is not None else [_step_fields(i) for i in range(n_steps)]
    ids = {"tenant_id": tenant_id, "run_id": run_id}
    seal = {"status": "succeeded", "completed_at": "2026-02-09T10:05:00Z"}
    chain = compute_chain(
        header_record(**header),
        [step_record(**ids, **f) for f in fields],
        seal_record(**ids, **seal, chain_length=len(fields)) if sealed else None,
    )
    trace = StoredTrace(
        **header,
        status=seal["status"] if sealed else "running",
        completed_at=seal["completed_at"] if sealed else None,
        genesis_hash=chain.genesis_hash,
        root_hash=chain.root_hash,
        chain_length=len(fields) if sealed else None,
    )
    prevs = [chain.genesis_hash, *chain.step_hashes][: len(fields)]
    stored = [
        StoredStep(**f, prev_hash=p, step_hash=h)
        for f, p, h in zip(fields, prevs, chain.step_hashes, strict=True)
    ]
    return Run(trace, stored)


def verify(trace: StoredTrace, steps: list[StoredStep], anchor: Anchor | None = None) -> Verdict:
    verifier = ChainVerifier(trace)
    for step in steps:
        if verifier.feed(step) is not None:
            break
    return verifier.finish(anchor)


def anchor_of(run: Run) -> Anchor:
    assert run.trace.root_hash is not None and run.trace.chain_length is not None
    return Anchor(root_hash=run.trace.root_hash, chain_length=run.trace.chain_length)


def recomputed_step_hash(run: Run, step: StoredStep, prev_hex: str) -> str:
    """What an honest verifier computes for `step`: independent of the verifier's code path."""
    record = step_record(
        tenant_id=run.trace.tenant_id,
        run_id=run.trace.run_id,
        **{k: getattr(step, k) for k in _step_fields(0)},
    )
    return hashlib.sha256(bytes.fromhex(prev_hex) + canonicalize(record, strict=False)).hexdigest()


def recomputed_genesis(trace: StoredTrace) -> str:
    header = header_record(
        **{k: getattr(trace, k) for k in ("tenant_id", "run_id", "trace_id", "agent_id")},
        plan_id=trace.plan_id,
        plan=trace.plan,
        started_at=trace.started_at,
    )
    return hashlib.sha256(canonicalize(header)).hexdigest()


def recomputed_root(run: Run, chain_length: int | None = None) -> str:
    trace = run.trace
    seal = seal_record(
        tenant_id=trace.tenant_id,
        run_id=trace.run_id,
        status=trace.status,
        completed_at=trace.completed_at,
        chain_length=len(run.steps) if chain_length is None else chain_length,
    )
    head = run.steps[-1].step_hash if run.steps else trace.genesis_hash
    assert head is not None
    return hashlib.sha256(bytes.fromhex(head) + canonicalize(seal)).hexdigest()


def assert_failure(
    verdict: Verdict,
    *,
    location: str,
    step_index: int | None,
    rule: int,
    expected: str | None,
    found: str | None,
) -> IntegrityFailure:
    assert verdict.status is FAILED
    failure = verdict.failure
    assert failure is not None
    assert (failure.location, failure.step_index, failure.rule) == (location, step_index, rule)
    assert (failure.expected, failure.found) == (expected, found)
    assert verdict.failure_reason == failure.reason
    where = f"step {step_index}" if location == "step" else location
    assert failure.reason.startswith(where)
    for value in (expected, found):
        if value is not None and len(value) == 64:
            assert value in failure.reason  # full hashes, never abbreviated
    return failure


# --- every vector verifies ----------------------------------------------------------------------


def _vector_cases() -> list[dict[str, Any]]:
    return json.loads(VECTORS.read_text(encoding="utf-8"))["cases"]


@pytest.mark.parametrize("case", _vector_cases(), ids=lambda c: c["name"])
def test_vector_case_verifies_from_its_stored_hashes(case: dict[str, Any]) -> None:
    expected, seal = case["expected"], case["seal"]
    trace = StoredTrace(
        **case["header"],
        status=None if seal is None else seal["status"],
        completed_at=None if seal is None else seal["completed_at"],
        genesis_hash=expected["genesis_hash"],
        root_hash=expected["root_hash"],
        chain_length=None if seal is None else len(case["steps"]),
    )
    prevs = [expected["genesis_hash"], *expected["step_hashes"]][: len(case["steps"])]
    steps = [
        StoredStep(**s, prev_hash=p, step_hash=h)
        for s, p, h in zip(case["steps"], prevs, expected["step_hashes"], strict=True)
    ]
    verdict = verify(trace, steps)
    assert verdict.status is (
        VerificationStatus.UNSEALED if seal is None else VerificationStatus.VERIFIED
    )
    assert verdict.model is IntegrityModel.HASH_CHAIN
    assert verdict.failure is None and verdict.failure_reason is None
    assert verdict.chain_length == len(steps)
    assert verdict.genesis_hash == expected["genesis_hash"]
    assert verdict.head_hash == expected["head_hash"]
    assert verdict.root_hash == expected["root_hash"]
    assert verdict.sealed is (seal is not None)
    if seal is not None:
        anchored = verify(trace, steps, Anchor(expected["root_hash"], len(steps)))
        assert anchored.status is VerificationStatus.VERIFIED


def test_valid_run_verifies() -> None:
    run = build_run()
    verdict = verify(run.trace, run.steps)
    assert verdict.status is VerificationStatus.VERIFIED
    assert verdict.chain_length == 5 and verdict.root_hash == run.trace.root_hash
    assert verify(run.trace, run.steps, anchor_of(run)).status is VerificationStatus.VERIFIED


def test_rows_as_postgres_returns_them_verify() -> None:
    # timestamptz text with TimeZone=UTC, jsonb text with numbers rewritten (1e21 -> 10^21).
    fields = [_step_fields(0), _step_fields(1)]
    fields[1]["params"] = {"big": 1e21, "f": 1e16, "tiny": 1e-7}
    run = build_run(steps=fields)
    stored_params = ['{"i": 0, "url": "https://example.invalid/api", "w": [1, 0.0]}']
    stored_params.append('{"f": 10000000000000000, "big": 1000000000000000000000, "tiny": 1E-7}')
    steps = [
        replace(
            s,
            params=parse_stored_json(text),
            timestamp=f"2026-02-09 10:00:{i:02d}.123456+00",
        )
        for i, (s, text) in enumerate(zip(run.steps, stored_params, strict=True))
    ]
    trace = replace(run.trace, started_at="2026-02-09 10:00:00+00")
    assert verify(trace, steps).status is VerificationStatus.VERIFIED


def test_unsealed_run_whose_prefix_verifies_is_unsealed() -> None:
    run = build_run(sealed=False)
    verdict = verify(run.trace, run.steps)
    assert verdict.status is VerificationStatus.UNSEALED
    assert verdict.sealed is False and verdict.root_hash is None
    assert verdict.head_hash == run.steps[-1].step_hash


def test_zero_step_sealed_run_verifies() -> None:
    run = build_run(0)
    verdict = verify(run.trace, [])
    assert verdict.status is VerificationStatus.VERIFIED
    assert verdict.chain_length == 0
    assert verdict.head_hash == run.trace.genesis_hash
    assert verdict.root_hash == run.trace.root_hash


def test_legacy_trace_without_genesis_hash_is_unsupported() -> None:
    run = build_run()
    legacy = replace(run.trace, genesis_hash=None, root_hash=None, chain_length=None)
    verdict = verify(legacy, run.steps)
    assert verdict.status is VerificationStatus.UNSUPPORTED
    assert verdict.model is IntegrityModel.NONE
    assert verdict.failure is None
    assert verdict.failure_reason == LEGACY_TRACE_REASON


# --- rule 1: the header ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tenant_id", "tenant-other"),
        ("run_id", "run-other"),
        ("trace_id", "trace-other"),
        ("agent_id", None),
        ("plan_id", "plan-43"),
        ("plan", {"goal": "fetch", "steps": ["s0"]}),
        ("plan", {"goal": "fetch", "steps": ["s0", "s1"], "extra": None}),
        ("started_at", "2026-02-09T10:00:00.000001Z"),
    ],
)
def test_edited_header_field_fails_genesis(field: str, value: Any) -> None:
    run = build_run()
    tampered = replace(run.trace, **{field: value})
    assert_failure(
        verify(tampered, run.steps),
        location="header",
        step_index=None,
        rule=1,
        expected=recomputed_genesis(tampered),
        found=run.trace.genesis_hash,
    )


def test_edited_genesis_hash_column_fails_header() -> None:
    run = build_run()
    tampered = replace(run.trace, genesis_hash="0" * 64)
    assert_failure(
        verify(tampered, run.steps),
        location="header",
        step_index=None,
        rule=1,
        expected=run.trace.genesis_hash,
        found="0" * 64,
    )


def test_uppercase_genesis_hash_is_a_mismatch() -> None:
    run = build_run()
    assert run.trace.genesis_hash is not None
    upper = run.trace.genesis_hash.upper()
    failure = assert_failure(
        verify(replace(run.trace, genesis_hash=upper), run.steps),
        location="header",
        step_index=None,
        rule=1,
        expected=run.trace.genesis_hash,
        found=upper,
    )
    assert "not 64 lowercase hex" in failure.reason


def test_header_that_cannot_be_hashed_fails_header() -> None:
    run = build_run()
    verdict = verify(replace(run.trace, plan={"x": float("inf")}), run.steps)
    assert_failure(verdict, location="header", step_index=None, rule=1, expected=None, found=None)
    assert "plan.x" in (verdict.failure_reason or "")


# --- rules 2 and 3: the steps --------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("skill_id", "skill.other"),
        ("skill_name", "other"),
        ("params", {"i": 2, "url": "https://evil.invalid/api", "w": [1.0, 0.2]}),
        ("params", {"i": 2, "url": "https://example.invalid/api", "w": [1.0, 0.2], "x": None}),
        ("status", "succeeded-ish"),
        ("outcome_category", "error"),
        ("outcome_code", None),
        ("outcome_data", {"bytes": 1002, "ok": False}),
        ("outcome_data", None),
        ("cost_cents", 0.0),
        ("duration_ms", 229.7),
        ("retry_count", 0),
        ("timestamp", "2026-02-09T10:00:02.123457Z"),
    ],
)
def test_edited_step_field_fails_step_hash(field: str, value: Any) -> None:
    run = build_run()
    steps = list(run.steps)
    assert getattr(steps[2], field) != value
    steps[2] = replace(steps[2], **{field: value})
    assert_failure(
        verify(run.trace, steps),
        location="step",
        step_index=2,
        rule=3,
        expected=recomputed_step_hash(run, steps[2], run.steps[1].step_hash or ""),
        found=run.steps[2].step_hash,
    )


def test_edited_step_hash_column_fails_that_step() -> None:
    run = build_run()
    steps = list(run.steps)
    steps[2] = replace(steps[2], step_hash="0" * 64)
    failure = assert_failure(
        verify(run.trace, steps),
        location="step",
        step_index=2,
        rule=3,
        expected=run.steps[2].step_hash,
        found="0" * 64,
    )
    assert failure.reason == (
        f"step 2: step_hash mismatch (expected {run.steps[2].step_hash}, found {'0' * 64})"
    )


def test_edited_prev_hash_column_fails_that_step() -> None:
    run = build_run()
    steps = list(run.steps)
    steps[3] = replace(steps[3], prev_hash="f" * 64)
    failure = assert_failure(
        verify(run.trace, steps),
        location="step",
        step_index=3,
        rule=3,
        expected=run.steps[2].step_hash,
        found="f" * 64,
    )
    assert failure.field == "prev_hash"


@pytest.mark.parametrize("bad", ["upper", "short", "non-hex", "null"])
def test_malformed_stored_step_hash_is_a_mismatch(bad: str) -> None:
    run = build_run()
    good = run.steps[1].step_hash
    assert good is not None
    value = {"upper": good.upper(), "short": good[:63], "non-hex": "g" * 64, "null": None}[bad]
    steps = list(run.steps)
    steps[1] = replace(steps[1], step_hash=value)
    failure = assert_failure(
        verify(run.trace, steps), location="step", step_index=1, rule=3, expected=good, found=value
    )
    assert ("null" if value is None else "not 64 lowercase hex") in failure.reason


def test_first_step_prev_hash_must_be_the_genesis_hash() -> None:
    run = build_run()
    steps = list(run.steps)
    steps[0] = replace(steps[0], prev_hash=None)
    assert_failure(
        verify(run.trace, steps),
        location="step",
        step_index=0,
        rule=3,
        expected=run.trace.genesis_hash,
        found=None,
    )


def test_removed_middle_step_fails_at_the_gap() -> None:
    run = build_run()
    steps = run.steps[:2] + run.steps[3:]
    failure = assert_failure(
        verify(run.trace, steps), location="step", step_index=2, rule=2, expected="2", found="3"
    )
    assert "gap" in failure.reason


def test_duplicated_step_fails_at_the_duplicate() -> None:
    run = build_run()
    steps = run.steps[:3] + [run.steps[2]] + run.steps[3:]
    failure = assert_failure(
        verify(run.trace, steps), location="step", step_index=3, rule=2, expected="3", found="2"
    )
    assert "duplicate" in failure.reason


def test_renumbered_step_fails_step_index() -> None:
    run = build_run()
    steps = list(run.steps)
    steps[4] = replace(steps[4], step_index=5)
    assert_failure(
        verify(run.trace, steps), location="step", step_index=4, rule=2, expected="4", found="5"
    )


def test_extra_step_beyond_the_seal_fails_at_its_index() -> None:
    run = build_run()
    longer = build_run(6)  # the same first five steps, plus a properly chained sixth
    assert [s.step_hash for s in longer.steps[:5]] == [s.step_hash for s in run.steps]
    steps = [*run.steps, longer.steps[5]]
    failure = assert_failure(
        verify(run.trace, steps),
        location="step",
        step_index=5,
        rule=2,
        expected="chain_length 5",
        found="step_index 5",
    )
    assert "extra step" in failure.reason


def test_extra_step_on_an_unsealed_run_is_just_a_longer_prefix() -> None:
    run = build_run(sealed=False)
    longer = build_run(6, sealed=False)
    assert verify(run.trace, longer.steps).status is VerificationStatus.UNSEALED


def test_swapped_steps_fail_at_the_first_swapped_position() -> None:
    run = build_run()
    steps = list(run.steps)
    # Rows keep their hash columns; only their step_index values were exchanged.
    steps[1] = replace(run.steps[2], step_index=1)
    steps[2] = replace(run.steps[1], step_index=2)
    assert_failure(
        verify(run.trace, steps),
        location="step",
        step_index=1,
        rule=3,
        expected=run.steps[0].step_hash,
        found=run.steps[1].step_hash,
    )


def test_step_moved_from_another_run_fails() -> None:
    run = build_run()
    other = build_run(run_id="run-other")
    steps = [*run.steps[:2], other.steps[2], *run.steps[3:]]
    assert_failure(
        verify(run.trace, steps),
        location="step",
        step_index=2,
        rule=3,
        expected=run.steps[1].step_hash,
        found=other.steps[1].step_hash,
    )


def test_step_relabelled_with_the_right_hashes_from_another_tenant_fails() -> None:
    # Same contents and the victim's hash columns, but hashed under the other tenant's ids.
    run = build_run()
    other = build_run(tenant_id="tenant-other")
    steps = [*run.steps[:2], replace(other.steps[2], prev_hash=run.steps[1].step_hash)]
    assert_failure(
        verify(run.trace, steps + run.steps[3:]),
        location="step",
        step_index=2,
        rule=3,
        expected=run.steps[2].step_hash,
        found=other.steps[2].step_hash,
    )


def test_stored_number_that_is_not_a_finite_double_fails_its_step() -> None:
    run = build_run()
    steps = list(run.steps)
    steps[3] = replace(steps[3], outcome_data=parse_stored_json('{"n": 1' + "0" * 400 + "}"))
    verdict = verify(run.trace, steps)
    assert_failure(verdict, location="step", step_index=3, rule=3, expected=None, found=None)
    assert "outcome_data.n" in (verdict.failure_reason or "")


def test_unparseable_step_timestamp_fails_its_step() -> None:
    run = build_run()
    steps = list(run.steps)
    steps[1] = replace(steps[1], timestamp="infinity")
    verdict = verify(run.trace, steps)
    assert_failure(verdict, location="step", step_index=1, rule=3, expected=None, found=None)


def test_feed_after_a_failure_keeps_returning_it_without_work() -> None:
    run = build_run()
    steps = list(run.steps)
    steps[1] = replace(steps[1], step_hash="0" * 64)
    verifier = ChainVerifier(run.trace)
    assert verifier.feed(steps[0]) is None
    first = verifier.feed(steps[1])
    assert first is not None
    # Garbage after the failure is not even looked at.
    assert verifier.feed(replace(steps[2], params={"x": float("nan")})) is first
    assert verifier.feed_canonical(99, b"junk", None, None) is first
    assert verifier.finish().failure is first


def test_feed_canonical_is_what_feed_does() -> None:
    run = build_run()
    verifier = ChainVerifier(run.trace)
    for step in run.steps:
        canonical = step_canonical_bytes(
            tenant_id=TENANT,
            run_id=RUN,
            **{k: getattr(step, k) for k in _step_fields(0)},
        )
        assert (
            verifier.feed_canonical(step.step_index, canonical, step.prev_hash, step.step_hash)
            is None
        )
    assert verifier.finish(anchor_of(run)).status is VerificationStatus.VERIFIED


def test_feed_unverifiable_names_the_step() -> None:
    run = build_run()
    verifier = ChainVerifier(run.trace)
    verifier.feed(run.steps[0])
    failure = verifier.feed_unverifiable(1, "cost_cents: nan is not a finite number")
    assert (failure.location, failure.step_index, failure.rule) == ("step", 1, 3)
    assert failure.reason == (
        "step 1: stored values cannot be hashed (cost_cents: nan is not a finite number)"
    )


# --- rule 4: the seal ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status", "failed"),
        ("completed_at", "2026-02-09T10:05:00.000001Z"),
        ("completed_at", None),
    ],
)
def test_edited_seal_field_fails_root(field: str, value: Any) -> None:
    run = build_run()
    tampered = replace(run.trace, **{field: value})
    assert_failure(
        verify(tampered, run.steps),
        location="seal",
        step_index=None,
        rule=4,
        expected=recomputed_root(Run(tampered, run.steps)),
        found=run.trace.root_hash,
    )


def test_edited_root_hash_column_fails_seal() -> None:
    run = build_run()
    tampered = replace(run.trace, root_hash="0" * 64)
    assert_failure(
        verify(tampered, run.steps),
        location="seal",
        step_index=None,
        rule=4,
        expected=run.trace.root_hash,
        found="0" * 64,
    )


def test_uppercase_root_hash_is_a_mismatch() -> None:
    run = build_run()
    assert run.trace.root_hash is not None
    upper = run.trace.root_hash.upper()
    assert_failure(
        verify(replace(run.trace, root_hash=upper), run.steps),
        location="seal",
        step_index=None,
        rule=4,
        expected=run.trace.root_hash,
        found=upper,
    )


@pytest.mark.parametrize("chain_length", [4, 6, 0, -1])
def test_edited_chain_length_fails_seal(chain_length: int) -> None:
    run = build_run()
    failure = assert_failure(
        verify(replace(run.trace, chain_length=chain_length), run.steps),
        location="seal",
        step_index=None,
        rule=4,
        expected="5",
        found=str(chain_length),
    )
    assert "chain_length mismatch" in failure.reason


def test_root_hash_without_chain_length_fails_seal() -> None:
    run = build_run()
    verdict = verify(replace(run.trace, chain_length=None), run.steps)
    failure = assert_failure(
        verdict, location="seal", step_index=None, rule=4, expected=None, found=None
    )
    assert "chain_length" in failure.reason


def test_chain_length_without_root_hash_fails_seal() -> None:
    run = build_run()
    verdict = verify(replace(run.trace, root_hash=None), run.steps)
    failure = assert_failure(
        verdict, location="seal", step_index=None, rule=4, expected=None, found=None
    )
    assert "root_hash" in failure.reason


def test_removed_tail_fails_at_the_first_missing_step() -> None:
    run = build_run()
    failure = assert_failure(
        verify(run.trace, run.steps[:3]),
        location="step",
        step_index=3,
        rule=2,
        expected="step_index 3",
        found="end of steps",
    )
    assert "missing" in failure.reason


# --- rule 5: the anchor ------------------------------------------------------------------
# As in rules 1-4 (docs/aos-compat.md): expected = the recomputed root or length, found = the
# ledger's, and the reason says which is which.


def test_removed_tail_with_recomputed_seal_passes_1_to_4_and_fails_the_anchor() -> None:
    run = build_run()
    shorter = build_run(3)
    assert [s.step_hash for s in shorter.steps] == [s.step_hash for s in run.steps[:3]]
    assert verify(shorter.trace, shorter.steps).status is VerificationStatus.VERIFIED
    failure = assert_failure(
        verify(shorter.trace, shorter.steps, anchor_of(run)),
        location="ledger",
        step_index=None,
        rule=5,
        expected=shorter.trace.root_hash,
        found=run.trace.root_hash,
    )
    assert failure.reason == (
        f"ledger: root_hash mismatch (recomputed {shorter.trace.root_hash}, "
        f"the ledger holds {run.trace.root_hash})"
    )


def test_whole_run_recomputed_passes_1_to_4_and_fails_the_anchor() -> None:
    run = build_run()
    fields = [_step_fields(i) for i in range(5)]
    fields[2]["params"] = {"url": "https://evil.invalid/api"}
    rewritten = build_run(steps=fields)
    assert verify(rewritten.trace, rewritten.steps).status is VerificationStatus.VERIFIED
    assert_failure(
        verify(rewritten.trace, rewritten.steps, anchor_of(run)),
        location="ledger",
        step_index=None,
        rule=5,
        expected=rewritten.trace.root_hash,
        found=run.trace.root_hash,
    )


def test_anchor_with_another_chain_length_fails_the_anchor() -> None:
    run = build_run()
    anchor = replace(anchor_of(run), chain_length=4)
    failure = assert_failure(
        verify(run.trace, run.steps, anchor),
        location="ledger",
        step_index=None,
        rule=5,
        expected="5",
        found="4",
    )
    assert failure.reason == "ledger: chain_length mismatch (recomputed 5, the ledger holds 4)"


def test_anchored_run_that_was_unsealed_again_fails_the_anchor() -> None:
    run = build_run()
    unsealed = replace(run.trace, root_hash=None, chain_length=None)
    assert verify(unsealed, run.steps).status is VerificationStatus.UNSEALED
    failure = assert_failure(
        verify(unsealed, run.steps, anchor_of(run)),
        location="ledger",
        step_index=None,
        rule=5,
        expected=None,
        found=run.trace.root_hash,
    )
    assert failure.reason == (
        f"ledger: root_hash mismatch (the trace is unsealed, the ledger holds "
        f"{run.trace.root_hash})"
    )


def test_anchor_source_is_named_in_the_reason() -> None:
    run = build_run()
    anchor = Anchor(root_hash="1" * 64, chain_length=5, source="transparency log")
    verdict = verify(run.trace, run.steps, anchor)
    assert (verdict.failure_reason or "").startswith("ledger (transparency log): root_hash")
    assert (verdict.failure_reason or "").endswith(f"the transparency log holds {'1' * 64})")
