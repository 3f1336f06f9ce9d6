"""Stored numbers (issue 11, class 10; docs/stored-numbers.md).

A stored number may not change its text while denoting the same double: `attempt` 0 ->
`1e-400` or `max_tokens` 2798 -> `2798.0000000000000000001` would hash as before while SQL
answers differently. The vectors hold the rule; the database tests perform the attack as the
table owner and see the step FAILED, naming the step and the value, on every decoder.
"""

from __future__ import annotations

import json
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest
from typer.testing import CliRunner

from run_proof_pipeline.cli.main import app
from run_proof_pipeline.integrity import (
    MAX_SIGNIFICANT_DIGITS,
    CanonicalizationError,
    canonicalize,
    parse_stored_json,
    stored_number_problem,
)
from run_proof_pipeline.integrity.canonical import canonicalize_stored_json
from run_proof_pipeline.proof import stream as stream_module
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.stores import owner_sql, prove, record_run
from run_proof_pipeline_tests.test_ledger_support import one

# --- the vectors -------------------------------------------------------------------------------

VECTORS = json.loads(
    resources.files("run_proof_pipeline.integrity")
    .joinpath("data/stored-number-vectors.json")
    .read_text(encoding="utf-8")
)
CASES = VECTORS["cases"]
REASONS = {
    "underflow": "underflows to zero",
    "overflow": "is not a finite double",
    "digits": "significant digits",
}


def _independent_verdict(text: str) -> str | None:
    """The rule from its wording alone (Decimal arithmetic, no code shared with the core)."""
    exact = Decimal(text)
    nearest = float(exact)  # correctly rounded
    if nearest in (float("inf"), float("-inf")):
        return "overflow"
    if nearest == 0.0 and exact != 0:
        return "underflow"
    significant = len(exact.as_tuple().digits) if exact else 0
    digits = exact.as_tuple().digits
    while significant and digits[significant - 1] == 0:
        significant -= 1
    if significant > MAX_SIGNIFICANT_DIGITS and Decimal(nearest) != exact:
        return "digits"
    return None


def test_vectors_cover_every_verdict_and_reason() -> None:
    assert VECTORS["max_significant_digits"] == MAX_SIGNIFICANT_DIGITS
    assert {c["verdict"] for c in CASES} == {"accept", "reject"}
    assert {c["because"] for c in CASES if c["verdict"] == "reject"} == set(REASONS)
    assert len({c["name"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_stored_number_vector(case: dict[str, Any]) -> None:
    text = case["stored"]
    problem = stored_number_problem(text)
    assert _independent_verdict(text) == case.get("because")
    documents = [text, f'{{"params": {{"attempt": {text}}}}}', f"[1, 2.5, {text}]"]
    if case["verdict"] == "accept":
        assert problem is None
        canonical = case["canonical"].encode()
        assert canonicalize_stored_json(text.encode()) == canonical
        for document in documents:
            honest = json.loads(document.replace(text, case["canonical"]))
            expected = canonicalize(honest, strict=False)
            assert canonicalize_stored_json(document.encode()) == expected
            assert canonicalize(parse_stored_json(document), strict=False) == expected
        return
    assert problem is not None
    assert REASONS[case["because"]] in problem
    for document in documents:
        with pytest.raises(CanonicalizationError, match=REASONS[case["because"]]):
            canonicalize_stored_json(document.encode())
        with pytest.raises(CanonicalizationError, match=REASONS[case["because"]]):
            canonicalize(parse_stored_json(document), strict=False)


# --- the attack on a real database ---------------------------------------------------------------

TENANT = "tenant-numbers"
EXACT_TENTH = "0.1000000000000000055511151231257827021181583404541015625"  # BigDecimal(0.1)
STEPS = 3


def _record(url: DatabaseUrl, run_id: str, extra: dict[str, Any] | None = None) -> None:
    record_run(
        url,
        TENANT,
        run_id,
        steps=STEPS,
        step_fields=lambda index: {
            "params": {"model": "m", "attempt": index, "max_tokens": 2798, **(extra or {})}
        },
        chain_format=1,
    )


def _row_decoder_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prove through StepRowDecoder (as for a connection whose encoding is not UTF-8)."""

    async def not_utf8(conn: Any) -> bool:
        return False

    monkeypatch.setattr(stream_module, "copies_utf8", not_utf8)


ATTACKS = [
    # (key, step, stored before, stored after, what the failure names)
    ("attempt", 0, "0", "1e-400", "~1E-400) is not zero but underflows to zero"),
    ("max_tokens", 1, "2798", "2798.0000000000000000001", "2798.0000000000000000001 has 23"),
]


@pytest.mark.parametrize("decoder", ["lines", "rows"])
@pytest.mark.parametrize(("key", "step", "before", "after", "named"), ATTACKS)
def test_a_number_rewritten_to_the_same_double_fails_its_step(
    store: DatabaseUrl,
    monkeypatch: pytest.MonkeyPatch,
    decoder: str,
    key: str,
    step: int,
    before: str,
    after: str,
    named: str,
) -> None:
    if decoder == "rows":
        _row_decoder_only(monkeypatch)
    run_id = f"run-{key}-{decoder}"
    _record(store, run_id)
    assert prove(store, TENANT, run_id).integrity.verification_status == "VERIFIED"
    select = "SELECT params -> %s FROM aos_trace_steps WHERE run_id = %s AND step_index = %s"
    assert str(one(store, select, (key, run_id, step))) == before

    touched = owner_sql(
        store,
        "UPDATE aos_trace_steps SET params = jsonb_set(params, ARRAY[%s], %s::jsonb)"
        " WHERE run_id = %s AND step_index = %s",
        (key, after, run_id, step),
        table="aos_trace_steps",
    )

    assert touched == 1
    # The same double, but SQL now answers differently.
    assert float(one(store, select, (key, run_id, step))) == float(before)
    equal = f"SELECT (params ->> %s)::numeric = {before} FROM aos_trace_steps"
    assert (
        one(store, equal + " WHERE run_id = %s AND step_index = %s", (key, run_id, step)) is False
    )
    integrity = prove(store, TENANT, run_id).integrity
    assert integrity.verification_status == "FAILED"
    failure = integrity.failure
    assert failure is not None
    assert (failure.location, failure.step_index) == ("step", step), failure.reason
    assert f"params.{key}: number " in failure.reason
    assert named in failure.reason


def test_verify_names_the_step_and_the_value(
    store: DatabaseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    _record(store, "run-cli")
    owner_sql(
        store,
        "UPDATE aos_trace_steps SET params = jsonb_set(params, '{max_tokens}',"
        " '2798.0000000000000000001') WHERE run_id = 'run-cli' AND step_index = 2",
        table="aos_trace_steps",
    )
    monkeypatch.setenv("DATABASE_URL", store.libpq())
    monkeypatch.delenv("USE_POSTGRES_TRACES", raising=False)

    result = CliRunner().invoke(app, ["verify", "--tenant-id", TENANT, "--run-id", "run-cli"])

    assert result.exit_code == 1, result.output
    assert "verification_status: FAILED" in result.output
    assert "step 2" in result.output
    assert "params.max_tokens: number 2798.0000000000000000001" in result.output


def test_honest_writers_long_forms_still_verify(store: DatabaseUrl) -> None:
    """jsonb prints 1e21 as 1000000000000000000000; a C writer may print 0.1 as %.17g,
    Java's BigDecimal(double) as its exact value: rows holding those forms verify (they
    denote exactly the recorded doubles; docs/stored-numbers.md names this as accepted)."""
    _record(store, "run-honest", extra={"big": 1e21, "c": 0.1, "j": 0.1})
    big = "SELECT params ->> 'big' FROM aos_trace_steps WHERE run_id = %s AND step_index = 1"
    assert one(store, big, ("run-honest",)) == "1000000000000000000000"
    owner_sql(
        store,
        "UPDATE aos_trace_steps SET params = params || %s::jsonb"
        " WHERE run_id = 'run-honest' AND step_index = 1",
        (f'{{"c": 0.10000000000000001, "j": {EXACT_TENTH}}}',),
        table="aos_trace_steps",
    )

    integrity = prove(store, TENANT, "run-honest").integrity
    assert integrity.verification_status == "VERIFIED", integrity.failure_reason


def test_a_plan_number_rewritten_to_the_same_double_fails_the_header(store: DatabaseUrl) -> None:
    """The header's `plan` is read under the same rule as the step columns (it was read with
    psycopg's json.loads, which rounds to the double: the rewrite went unseen)."""
    record_run(store, TENANT, "run-plan-number", plan={"goal": "g", "n": 2798}, chain_format=1)
    assert prove(store, TENANT, "run-plan-number").integrity.verification_status == "VERIFIED"
    touched = owner_sql(
        store,
        "UPDATE aos_traces SET plan = jsonb_set(plan, '{n}', '2798.0000000000000000001')"
        " WHERE run_id = 'run-plan-number'",
        table="aos_traces",
    )
    assert touched == 1

    integrity = prove(store, TENANT, "run-plan-number").integrity

    assert integrity.verification_status == "FAILED"
    assert integrity.failure is not None and integrity.failure.location == "header"
    assert "plan.n: number 2798.0000000000000000001" in integrity.failure.reason
