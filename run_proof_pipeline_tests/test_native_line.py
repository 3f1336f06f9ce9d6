"""The compiled fast path (store/_native_line.c, store/native_line.py) against the pure one.

Every line the compiled path takes must give the pure decoder's (step_index, C(step),
prev_hash, step_hash) byte for byte; its JSON output must be rfc8785's on jsonb text as
PostgreSQL prints it (or the line refused); its walk must leave a chain exactly where
feeding the same rows one by one leaves it.  RUN_PROOF_REQUIRE_NATIVE=1 (CI, .ci/run) makes
a missing build a failure instead of a skip.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.bench_decode import _lines as bench_lines
from run_proof_pipeline.integrity import ChainSegment, ChainVerifier
from run_proof_pipeline.integrity.vectors import BUNDLED_VECTORS
from run_proof_pipeline.store import native_line
from run_proof_pipeline.store.line_walk import LineWalk
from run_proof_pipeline.store.step_rows import StepLineDecoder
from run_proof_pipeline_tests.test_streaming_scale import CASES, _copy_text, _row

VECTOR_CASES: list[dict[str, Any]] = json.loads(BUNDLED_VECTORS.read_text(encoding="utf-8"))[
    "cases"
]
BUILT = native_line.canonical_line is not None and native_line.walk is not None
needs_native = pytest.mark.skipif(not BUILT, reason="the compiled path is not built here")


def test_the_compiled_path_is_built_where_ci_requires_it() -> None:
    if os.environ.get("RUN_PROOF_REQUIRE_NATIVE") != "1":
        pytest.skip("RUN_PROOF_REQUIRE_NATIVE is not set")
    assert BUILT, native_line.native_status()


def test_run_proof_native_0_forces_the_pure_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUN_PROOF_NATIVE", "0")
    assert native_line.native_status() == "pure (RUN_PROOF_NATIVE=0)"
    assert not StepLineDecoder().native
    monkeypatch.delenv("RUN_PROOF_NATIVE")
    assert StepLineDecoder().native is BUILT
    assert not StepLineDecoder(native=False).native


def _line(row: tuple[str | None, ...]) -> bytes:
    return ("\t".join(_copy_text(v) for v in row) + "\n").encode()


def _pure(line: bytes) -> tuple[Any, ...]:
    step = StepLineDecoder(native=False).decode(line)
    return (step.step_index, step.canonical, step.prev_hash, step.step_hash, step.error)


def _native(line: bytes) -> tuple[int, bytes, str, str] | None:
    assert native_line.canonical_line is not None
    return native_line.canonical_line(line)


# The regression rows of the pure decoder (test_streaming_scale.py) and more edges.
MORE_CASES: dict[str, dict[str, str | None]] = {
    "numeric scale": {"params": '{"a": 1.50, "b": 100.0, "c": 0.000001, "d": -2.250}'},
    "tiny fraction": {"params": '{"a": 0.0000001}'},
    "16 digits": {"outcome_data": '{"x": 0.1234567890123456, "y": 1234567.890123456}'},
    "18 digits": {"outcome_data": '{"x": 0.123456789012345678}'},
    "negative zero": {"params": '{"z": -0}'},
    "negative zero fraction": {"params": '{"z": -0.0}'},
    "huge integer": {"params": '{"n": 1000000000000000000000}'},
    "15-digit integer": {"params": '{"n": 999999999999999, "m": -999999999999999}'},
    "16-digit integer": {"params": '{"n": 9007199254740993}'},
    "duplicate key": {"params": '{"a": 1, "a": 2}'},
    "nested": {"params": '{"a": [{"bb": [], "a": {}}, [[["x"]]]], "é": null, "z": false}'},
    "deep": {"params": "[" * 70 + "]" * 70},
    "scalar json": {"params": '"just text"', "outcome_data": "12.5"},
    "bmp keys": {"params": '{"\uff21": 1, "\u00e9": 2, "z": 3, "\ue000": 4}'},
    "astral value": {"params": '{"k": "\U0001f600"}'},
    "control in text": {"skill_name": "a\x01b\x1fc\x7fd", "status": 'q"uote'},
    "float column integral": {"cost_cents": "100", "duration_ms": "-3"},
    "float column exponent": {"duration_ms": "1e-07"},
    "float column 17 digits": {"duration_ms": "0.30000000000000004"},
    "float column negative zero": {"cost_cents": "-0"},
    "int leading zero": {"retry_count": "007"},
    "int negative zero": {"retry_count": "-0"},
    "big retry": {"retry_count": "9007199254740993"},
    "index leading zero": {"step_index": "007"},
    "negative index": {"step_index": "-1"},
    "year zero": {"timestamp": "0000-01-01 00:00:00+00"},
    "leap day": {"timestamp": "2024-02-29 23:59:59.999999+00"},
    "not a leap day": {"timestamp": "2100-02-29 00:00:00+00"},
    "hour 24": {"timestamp": "2026-02-09 24:00:00+00"},
    "seven digits": {"timestamp": "2026-02-09 10:00:00.1234567+00"},
    "uppercase hash": {"prev_hash": "A" * 64, "step_hash": "B" * 64},
    "short hash": {"step_hash": "ab"},
    "empty text": {"skill_name": "", "outcome_code": ""},
    "invalid utf-8 json": {"params": '{"a": "\udcff"}'},
}

ALL_CASES = {**CASES, **MORE_CASES}
# Rows the compiled path must take (so that the comparison is not empty).
TAKEN = {
    "plain",
    "unicode text",
    "numeric scale",
    "16 digits",
    "15-digit integer",
    "nested",
    "scalar json",
    "bmp keys",
    "astral value",
    "control in text",
    "float column integral",
    "float column 17 digits",
    "leap day",
    "uppercase hash",
    "short hash",
    "empty text",
    "index leading zero",
    "short fraction",
    "no fraction",
}


def _encoded(row: tuple[str | None, ...]) -> bytes | None:
    try:
        return _line(row)
    except UnicodeEncodeError:
        return None


@needs_native
@pytest.mark.parametrize("name", list(ALL_CASES))
def test_a_line_the_compiled_path_takes_is_the_pure_paths(name: str) -> None:
    line = _encoded(_row(**ALL_CASES[name]))
    if line is None:  # a lone surrogate: written as raw invalid UTF-8 instead
        line = _line(_row()).replace(b'"n": 1', b'"n": "\xed\xb3\xbf"')
    got = _native(line)
    if name in TAKEN:
        assert got is not None, name
    if got is not None:
        assert (*got, None) == _pure(line)


# --- JSON as jsonb prints it, against the rfc8785 oracle ---------------------------------


def _numeric_text(value: float | int, extra_zeros: int) -> str:
    """A number as numeric_out prints it: plain decimal, never an exponent, with its scale."""
    if isinstance(value, int):
        return str(value)
    text = format(Decimal(repr(value)), "f")
    if extra_zeros:
        text += ("" if "." in text else ".") + "0" * extra_zeros
    return text


def _jsonb_text(value: Any, zeros: int) -> str:
    """`value` as jsonb output prints it: keys by length then bytes, `, ` and `: `."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        inner = ", ".join(
            f"{json.dumps(k, ensure_ascii=False)}: " + _jsonb_text(value[k], zeros) for k in keys
        )
        return "{" + inner + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_jsonb_text(v, zeros) for v in value) + "]"
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return _numeric_text(value, zeros)


_keys = st.text(
    st.one_of(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        st.characters(min_codepoint=0xE000, max_codepoint=0xFFFF, exclude_categories=["Cs"]),
        st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF),
        st.characters(min_codepoint=0x01, exclude_categories=["Cs"]),
    ),
    max_size=5,
)
_numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(10**17), 10**17),
    st.sampled_from([0.5, 1.25, 100.0, 0.1, 1e-6, 1e-7, 1e20, 1e21, 123456.789, -0.0, 0.0]),
)
_values = st.recursive(
    st.none() | st.booleans() | _numbers | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=5),
    max_leaves=25,
)
_PLAIN_LINE = _line(_row(params="{}", outcome_data="{}"))


def _params_jcs(line: bytes) -> bytes | None:
    """The `params` part of the compiled C(step) of `line` (None: refused)."""
    got = _native(line)
    if got is None:
        return None
    assert (*got, None) == _pure(line)
    base = _native(_PLAIN_LINE)
    assert base is not None
    head, _, tail = base[1].partition(b'"params":{}')
    canonical = got[1]
    assert canonical.startswith(head + b'"params":') and canonical.endswith(tail)
    return canonical[len(head) + len(b'"params":') : len(canonical) - len(tail)]


@needs_native
@settings(max_examples=400, deadline=None, database=None)
@given(_values, st.integers(0, 2))
def test_jsonb_text_canonicalizes_as_rfc8785_or_is_refused(value: Any, zeros: int) -> None:
    text = _jsonb_text(value, zeros)
    line = _line(_row(params=text, outcome_data="{}"))
    got = _params_jcs(line)
    if got is None:
        return
    as_doubles = json.loads(text, parse_int=lambda s: int(s) if abs(int(s)) < 2**53 else float(s))
    assert got == rfc8785.dumps(as_doubles)


@needs_native
def test_the_property_reaches_the_compiled_json_path() -> None:
    value = {"a": [1.5, {"bb": None, "c": "é"}], "zz": 0.30000000000000004, "b": 12.50}
    got = _params_jcs(_line(_row(params=_jsonb_text(value, 1), outcome_data="{}")))
    assert got == rfc8785.dumps(value)


# --- the walk ----------------------------------------------------------------------------


def _chained(count: int, genesis: bytes) -> list[bytes]:
    lines, prev = [], genesis
    for i in range(count):
        row = list(_row(step_index=str(i), prev_hash=prev.hex(), step_hash="0" * 64))
        canonical = StepLineDecoder(native=False).decode(_line(tuple(row))).canonical
        assert canonical is not None
        digest = hashlib.sha256(prev + canonical).digest()
        row[-1] = digest.hex()
        lines.append(_line(tuple(row)))
        prev = digest
    return lines


def _segment_state(chain: ChainSegment) -> tuple[Any, ...]:
    return (chain.walk_state(), chain.steps_seen, chain.result())


@needs_native
@pytest.mark.parametrize("sealed", [None, 3, 6, 40])
@pytest.mark.parametrize("bad", [None, 0, 1, 4, 7])
@pytest.mark.parametrize("how", ["step_hash", "prev_hash", "index", "refused"])
def test_the_walk_leaves_a_segment_where_feeding_each_row_does(
    sealed: int | None, bad: int | None, how: str
) -> None:
    lines = _chained(10, b"\x11" * 32)
    if bad is not None:
        fields = lines[bad].decode().rstrip("\n").split("\t")
        if how == "step_hash":
            fields[-1] = "f" * 64
        elif how == "prev_hash":
            fields[-2] = "e" * 64
        elif how == "index":
            fields[0] = "99"
        else:
            fields[10] = "1e+300"  # a float8 column in exponent form: the pure path's
        lines[bad] = ("\t".join(fields) + "\n").encode()
    pure, native = ChainSegment(sealed), ChainSegment(sealed)
    seen: list[int | None] = []
    for line in lines:
        if StepLineDecoder(native=False).decode(line).feed_to(pure):
            break
    walker = LineWalk(native, StepLineDecoder(), on_step=lambda s: seen.append(s.step_index))
    stopped = walker.feed(lines[:5]) or walker.feed(lines[5:])
    assert stopped == (pure.result().failure is not None or pure.result().head is None)
    assert walker.read == pure.steps_seen
    assert _segment_state(native) == _segment_state(pure)
    assert seen  # a segment's first row always takes the decoder


@needs_native
@pytest.mark.parametrize("sealed", [False, True])
def test_the_walk_advances_a_verifier_as_feeding_each_row_does(sealed: bool) -> None:
    lines, _, trace, _ = bench_lines(300)
    if sealed:
        # A seal claiming 200 steps: the head at the sealed length must be the 200th digest.
        trace = replace(trace, root_hash="0" * 64, chain_length=200, status="completed")
    pure, native = ChainVerifier(trace), ChainVerifier(trace)
    for line in lines:
        if StepLineDecoder(native=False).decode(line).feed_to(pure):
            break
    walker = LineWalk(native, StepLineDecoder(), pure_first=2)
    for start in range(0, len(lines), 128):
        if walker.feed(lines[start : start + 128]):
            break
    assert walker.read == pure.steps_seen == 300
    assert native.finish() == pure.finish()


# --- the hash-chain vectors, as COPY lines ---------------------------------------------


def _float8_text(value: float | None) -> str | None:
    if value is None:
        return None
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _vector_lines(case: dict[str, Any]) -> list[bytes]:
    """The case's steps as COPY lines of their rows (jsonb and float8 as PostgreSQL prints
    them, timestamptz under TimeZone UTC), chained with the case's expected hashes."""
    header, expected = case["header"], case["expected"]
    prev, lines = expected["genesis_hash"], []
    for step, step_hash in zip(case["steps"], expected["step_hashes"], strict=True):
        texts: dict[str, str | None] = {
            "step_index": str(step["step_index"]),
            "tenant_id": header["tenant_id"],
            "run_id": header["run_id"],
            "params": None if step["params"] is None else _jsonb_text(step["params"], 0),
            "outcome_data": None
            if step["outcome_data"] is None
            else _jsonb_text(step["outcome_data"], 0),
            "cost_cents": _float8_text(step["cost_cents"]),
            "duration_ms": _float8_text(step["duration_ms"]),
            "retry_count": None if step["retry_count"] is None else str(step["retry_count"]),
            "timestamp": step["timestamp"].replace("T", " ").replace("Z", "+00"),
            "prev_hash": prev,
            "step_hash": step_hash,
        }
        for name in ("skill_id", "skill_name", "status", "outcome_category", "outcome_code"):
            texts[name] = step[name]
        lines.append(_line(_row(**texts)))
        prev = step_hash
    return lines


@needs_native
@pytest.mark.parametrize("case", VECTOR_CASES, ids=[c["name"] for c in VECTOR_CASES])
def test_the_vectors_pass_on_the_compiled_path(case: dict[str, Any]) -> None:
    lines = _vector_lines(case)
    expected = case["expected"]
    taken: list[bool] = []
    for line, canonical in zip(lines, expected["canonical_steps"], strict=True):
        assert _pure(line)[1] == canonical.encode()
        got = _native(line)
        taken.append(got is not None)
        if got is not None:
            assert got[1] == canonical.encode()
    assert native_line.walk is not None
    genesis = bytes.fromhex(expected["genesis_hash"])
    consumed, head = native_line.walk(lines, 0, genesis, expected["genesis_hash"], 0, -1)
    # The walk takes the steps up to the first one it refuses (a NULL, an escape).
    assert consumed == (taken + [False]).index(False)
    hashes = [expected["genesis_hash"], *expected["step_hashes"]]
    assert head.hex() == hashes[consumed]
    if case["name"] == "three_steps_sealed":
        assert taken == [True, True, False]  # step 2's outcome_data is NULL
