"""Streaming verification: the raw-line fast path equals the general path byte for byte, and
a long run verifies (or fails at its first bad step) without holding its steps."""

from __future__ import annotations

import json
import math

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from run_proof_pipeline.integrity import canonicalize, parse_stored_json
from run_proof_pipeline.integrity.canonical import canonicalize_stored_json
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.step_rows import (
    StepLineDecoder,
    StepRowDecoder,
    unescape_copy_field,
)
from run_proof_pipeline_tests.support.stores import owner_sql, prove

# --- the fast JSON path against the exact one and the rfc8785 oracle -----------------------

_finite = st.floats(allow_nan=False, allow_infinity=False)
# Strings that hold what the integral-float repair edits in numbers ("12.0" -> "12").
_tricky = st.sampled_from(["v1.0", "a:12.0,b", "1.0", "-0.0", "[3.0]", "x 0.0}", "7.05"])
_keys = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")) | _tricky
_json = st.recursive(
    st.none()
    | st.booleans()
    | _finite
    # Integers a writer can store: at most 17 digits, or a double's exact value
    # (docs/stored-numbers.md); anything else is refused by design.
    | st.integers(-(10**17), 10**17)
    | st.sampled_from([2**64, -(2**70), 10**21])
    | st.sampled_from([1.0, -0.0, 1e16, 1e21, 1e-7, 1.5e-6, 1e15 + 0.5, 2.0**53, 5e-324])
    | st.sampled_from([0.0, 12.0, -3.0, 1e15, 9007199254740991.0, 123456.0])
    | _keys,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(_json)
def test_stored_json_fast_path_equals_the_exact_walk_and_rfc8785(value: object) -> None:
    texts = [json.dumps(value), json.dumps(value, indent=1, ensure_ascii=False)]
    try:
        texts.append(orjson.dumps(value).decode())
    except TypeError:
        pass  # integers beyond 64 bits: orjson does not write them
    for text in texts:
        fast = canonicalize_stored_json(text.encode())
        assert fast == canonicalize(parse_stored_json(text), strict=False)
        # rfc8785 wants the doubles the read path denotes (it rejects big ints).
        as_doubles = json.loads(
            text, parse_int=lambda s: int(s) if abs(int(s)) < 2**53 else float(s)
        )
        assert fast == rfc8785.dumps(as_doubles)


@pytest.mark.parametrize(
    "text",
    [
        "-1.0",
        "12.0",
        "[1.0, -0.0, 0.0]",
        '{"a": "x.0,", "b": 2.0}',
        '{"k.0}": 1.0, "v": ["3.0]", 3.0]}',
        '{"n": -12.0, "z": -0.0}',
        '[9007199254740991.0, 1e15, "1.0"]',
    ],
)
def test_integral_floats_near_look_alike_strings_are_exact(text: str) -> None:
    as_doubles = json.loads(text)
    assert canonicalize_stored_json(text.encode()) == rfc8785.dumps(as_doubles)


# --- raw COPY lines against the row decoder ------------------------------------------------


def _copy_text(value: str | None) -> str:
    if value is None:
        return "\\N"
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def _row(**overrides: str | None) -> tuple[str | None, ...]:
    fields: dict[str, str | None] = {
        "step_index": "7",
        "tenant_id": "tenant-a",
        "run_id": "run-1",
        "skill_id": "skill.http",
        "skill_name": "http_call",
        "params": '{"url": "https://x.invalid/a", "n": 1, "ratio": 0.25}',
        "status": "succeeded",
        "outcome_category": "success",
        "outcome_code": "200",
        "outcome_data": '{"ok": true, "score": 0.30000000000000004}',
        "cost_cents": "0.5",
        "duration_ms": "227.6",
        "retry_count": "0",
        "timestamp": "2026-02-09 10:00:00.123456+00",
        "prev_hash": "a" * 64,
        "step_hash": "b" * 64,
    }
    fields.update(overrides)
    return tuple(fields.values())


CASES = {
    "plain": {},
    "nulls": {"skill_id": None, "outcome_code": None, "params": None, "cost_cents": None},
    "null_retry": {"retry_count": None, "outcome_data": None},
    "escapes": {"skill_name": 'tab\there "q" back\\slash\nnl', "params": '{"a": "x\\ny\\\\z"}'},
    "integral floats": {"params": '{"a": 1.0, "b": -0.0, "c": 10000000000000000}'},
    "exponent float column": {"cost_cents": "1e+16", "duration_ms": "1.5e-07"},
    "big int": {"outcome_data": '{"n": 123456789012345678901}'},
    "astral keys": {"params": '{"\U0001f600": 1, "\uff21": 2, "a": [1.5, "\U0001f600"]}'},
    "short fraction": {"timestamp": "2026-02-09 10:00:00.5+00"},
    "no fraction": {"timestamp": "2026-02-09 10:00:00+00"},
    "other offset": {"timestamp": "2026-02-09 12:00:00.25+02"},
    "impossible date": {"timestamp": "2026-02-30 10:00:00+00"},
    "leap second": {"timestamp": "2026-02-09 10:00:60+00"},
    "naive": {"timestamp": "2026-02-09 10:00:00"},
    "null timestamp": {"timestamp": None},
    "nan": {"duration_ms": "NaN"},
    "overflow json": {"outcome_data": '{"x": 1e400}'},
    "unicode text": {"skill_name": "café ✓ \U0001f600", "status": "\x01ctl"},
    "null hashes": {"prev_hash": None},
}


SUMMARY = ("skill_name", "status", "duration_ms", "cost_cents", "params", "outcome_data")


@pytest.mark.parametrize("overrides", CASES.values(), ids=list(CASES))
def test_line_decoder_equals_row_decoder(overrides: dict[str, str | None]) -> None:
    row = _row(**overrides)
    line = ("\t".join(_copy_text(v) for v in row) + "\n").encode()
    fast = StepLineDecoder()
    expected = StepRowDecoder().decode(row)
    for _ in range(2):  # the second time from the caches
        got = fast.decode(line)
        assert (got.canonical, got.error, got.prev_hash, got.step_hash) == (
            expected.canonical,
            expected.error,
            expected.prev_hash,
            expected.step_hash,
        )
        # Summary fields too, decoded lazily (repr: a NaN equals itself there).
        assert [repr(getattr(got, f)) for f in SUMMARY] == [
            repr(getattr(expected, f)) for f in SUMMARY
        ]
    if overrides.get("timestamp") == "2026-02-30 10:00:00+00":
        assert expected.error is not None and "timestamp" in expected.error


def test_copy_unescape_covers_what_postgresql_writes() -> None:
    assert unescape_copy_field(b"\\N") is None
    assert unescape_copy_field(b"a\\tb\\nc\\\\d\\re\\bf\\vg\\fh") == b"a\tb\nc\\d\re\bf\vg\fh"
    assert unescape_copy_field(b"\\101\\x42") == b"AB"


# --- a long run, streamed -------------------------------------------------------------------


@pytest.mark.slow
def test_a_50k_step_run_streams_verifies_and_fails_at_its_first_bad_step(
    store: DatabaseUrl,
) -> None:
    from benchmarks.dataset import build, run_specs

    [spec] = run_specs(1, 50_000, tenants=1, prefix="scale")
    assert build(store.libpq(), [spec]) == 50_000

    result = prove(store, spec.tenant_id, spec.run_id, step_summary_limit=0)
    assert result.integrity.verification_status == "VERIFIED"
    assert (result.steps_read, result.integrity.chain_length) == (50_000, 50_000)
    assert result.aos_trace_steps == [] and result.step_summaries_truncated

    touched = owner_sql(
        store,
        "UPDATE aos_trace_steps SET duration_ms = duration_ms + 1"
        " WHERE run_id = %s AND step_index = 37123",
        (spec.run_id,),
        table="aos_trace_steps",
    )
    assert touched == 1
    failed = prove(store, spec.tenant_id, spec.run_id, step_summary_limit=0)
    assert failed.integrity.verification_status == "FAILED"
    assert failed.integrity.failure is not None
    assert failed.integrity.failure.step_index == 37123
    assert failed.steps_read == 37124  # stopped at the first failure
    assert not math.isnan(failed.elapsed_seconds)
