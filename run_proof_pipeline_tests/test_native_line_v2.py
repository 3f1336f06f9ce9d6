"""The compiled fast path of format v2 (store/_native_line.c canonical_line_v2 / walk_v2)
against the pure decoder (store/step_rows_v2.py StepV2Decoder, docs/hash-chain-v2.md).

Every v2 line the compiled path takes must give the pure decoder's (step_index, C2(step),
chain_position, prev_hash, step_hash) byte for byte, whatever its numbers (format v2 hashes
them exactly: a number the compiled path cannot be sure of is refused, never rounded); its
walk must leave a chain exactly where feeding the same rows one by one leaves it.  The v2
vectors, as COPY lines, pass on it.  RUN_PROOF_REQUIRE_NATIVE=1 (CI, .ci/run) makes a
missing build a failure instead of a skip.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.bench_decode import _SPEC
from benchmarks.bench_decode import _lines as bench_lines
from run_proof_pipeline.integrity import ChainSegment, ChainVerifier
from run_proof_pipeline.integrity.vectors import BUNDLED_VECTORS_V2, load_vectors_v2
from run_proof_pipeline.store import native_line
from run_proof_pipeline.store.line_walk import LineWalk
from run_proof_pipeline.store.step_columns import STEP_V2_COLUMNS
from run_proof_pipeline.store.step_rows_v2 import StepV2Decoder
from run_proof_pipeline_tests.test_streaming_scale import _copy_text

BUILT = native_line.canonical_line_v2 is not None and native_line.walk_v2 is not None
needs_native = pytest.mark.skipif(not BUILT, reason="the compiled path is not built here")

TENANT, RUN, TRACE = "tenant-a", "run-1", "trace-1"
IDS = (b'"tenant-a"', b'"run-1"', b'"trace-1"')
VECTOR_CASES: list[dict[str, Any]] = load_vectors_v2(
    BUNDLED_VECTORS_V2.read_text(encoding="utf-8")
)["cases"]


def test_the_compiled_v2_path_is_built_where_ci_requires_it() -> None:
    if os.environ.get("RUN_PROOF_REQUIRE_NATIVE") != "1":
        pytest.skip("RUN_PROOF_REQUIRE_NATIVE is not set")
    assert BUILT, native_line.native_status(2)


def test_run_proof_native_0_forces_the_pure_v2_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUN_PROOF_NATIVE", "0")
    assert native_line.native_status(2) == "pure (RUN_PROOF_NATIVE=0)"
    decoder = StepV2Decoder(TENANT, RUN, TRACE)
    assert not decoder.native and decoder.line_walk is None
    monkeypatch.delenv("RUN_PROOF_NATIVE")
    assert StepV2Decoder(TENANT, RUN, TRACE).native is BUILT
    assert not StepV2Decoder(TENANT, RUN, TRACE, native=False).native


def test_ids_that_are_not_plain_text_leave_the_line_to_the_pure_path() -> None:
    assert native_line.id_texts("t", None, "x") == (b'"t"', b"null", b'"x"')
    assert native_line.id_texts("t", "\ud800", "x") is None  # a lone surrogate
    assert native_line.id_texts("t", 7, "x") is None
    assert not StepV2Decoder(TENANT, "\ud800", TRACE).native


# --- one line ----------------------------------------------------------------------------

BASE: dict[str, str | None] = {
    "step_index": "7",
    "skill_id": "skill.http",
    "skill_name": "http_call",
    "params": '{"n": 1, "url": "https://x.invalid/a", "ratio": 0.25}',
    "status": "succeeded",
    "outcome_category": "success",
    "outcome_code": "200",
    "outcome_data": '{"ok": true, "score": 0.30000000000000004}',
    "cost_cents": "0.5",
    "duration_ms": "227.6",
    "retry_count": "0",
    "timestamp": "2026-02-09 10:00:00.123456+00",
    "input_hash": "in-7",
    "output_hash": None,
    "rng_state_before": None,
    "idempotency_key": "key-7",
    "replay_behavior": "execute",
    "source": "engine",
    "level": "INFO",
    "is_synthetic": "f",
    "synthetic_scenario_id": None,
    "chain_position": "7",
    "prev_hash": "a" * 64,
    "step_hash": "b" * 64,
}
assert tuple(BASE) == STEP_V2_COLUMNS


def v2_line(**overrides: str | None) -> bytes:
    fields = {**BASE, **overrides}
    return ("\t".join(_copy_text(fields[c]) for c in STEP_V2_COLUMNS) + "\n").encode(
        "utf-8", "surrogatepass"
    )


def _pure(line: bytes) -> tuple[Any, ...]:
    step = StepV2Decoder(TENANT, RUN, TRACE, native=False).decode_line(line)
    return (
        step.step_index,
        step.canonical,
        step.chain_position,
        step.prev_hash,
        step.step_hash,
        step.error,
    )


def _native(line: bytes) -> tuple[int, bytes, int, str, str] | None:
    assert native_line.canonical_line_v2 is not None
    return native_line.canonical_line_v2(line, *IDS)


def _agrees(line: bytes) -> tuple[int, bytes, int, str, str] | None:
    """The compiled result of `line` (None: refused), checked against the pure path's."""
    got = _native(line)
    if got is not None:
        assert (*got, None) == _pure(line), line
    return got


CASES: dict[str, dict[str, str | None]] = {
    "plain": {},
    "nulls everywhere allowed": {
        name: None
        for name in BASE
        if name not in ("step_index", "chain_position", "prev_hash", "step_hash")
    },
    "numeric scale": {"params": '{"a": 1.50, "b": 100.0, "c": 0.000001, "d": -2.250}'},
    "negative zero": {"params": '{"z": -0, "y": -0.0, "x": 0.00}'},
    "2^53": {"params": '{"n": 9007199254740992, "m": -9007199254740992}'},
    "above 2^53": {"params": '{"n": 9007199254740993}'},
    "2^64": {"params": '{"n": 18446744073709551616}'},
    "1e400": {"params": '{"n": 1' + "0" * 400 + "}"},
    "1e-400": {"params": '{"n": 0.' + "0" * 399 + "1}"},
    "17 digits, not its double": {"params": '{"x": 0.10000000000000001}'},
    "17 digits, its double": {"params": '{"x": 0.30000000000000004, "y": -1.2345678901234567}'},
    "17 digits with zeros": {"params": '{"x": 0.300000000000000040}'},
    "huge integer": {"params": '{"n": 123456789012345678901234567890}'},
    "tiny fraction": {"params": '{"a": 0.0000001}'},
    "exponent": {"params": '{"a": 1e5}'},
    "duplicate key": {"params": '{"a": 1, "a": 2}'},
    "nested": {"params": '{"a": [{"bb": [], "a": {}}, [[["x"]]]], "é": null, "z": false}'},
    "deep": {"params": "[" * 70 + "]" * 70},
    "scalar json": {"params": '"just text"', "outcome_data": "12.5"},
    "bmp keys": {"params": '{"\uff21": 1, "\u00e9": 2, "z": 3, "\ue000": 4}'},
    "astral key": {"params": '{"\U0001f600": 1, "\uff61": 2}'},
    "astral value": {"params": '{"k": "\U0001f600"}'},
    "escaped json": {"params": '{"k": "a\\"b"}'},
    "control in text": {"skill_name": "a\x01b\x1fc\x7fd", "status": 'q"uote'},
    "tab in text": {"skill_name": "a\tb"},
    "backslash in text": {"level": "a\\b"},
    "text that reads \\N": {"source": "\\N"},
    "float column integral": {"cost_cents": "100", "duration_ms": "-3"},
    "float column exponent": {"duration_ms": "1e-07"},
    "float column 17 digits": {"duration_ms": "0.30000000000000004"},
    "float column negative zero": {"cost_cents": "-0"},
    "float column NaN": {"cost_cents": "NaN"},
    "int leading zero": {"retry_count": "007"},
    "big retry": {"retry_count": "9007199254740993"},
    "boolean true": {"is_synthetic": "t"},
    "boolean odd": {"is_synthetic": "true"},
    "index leading zero": {"step_index": "007", "chain_position": "007"},
    "negative index": {"step_index": "-1"},
    "null index": {"step_index": None},
    "null position": {"chain_position": None},
    "position elsewhere": {"chain_position": "3"},
    "null prev_hash": {"prev_hash": None},
    "year zero": {"timestamp": "0000-01-01 00:00:00+00"},
    "leap day": {"timestamp": "2024-02-29 23:59:59.999999+00"},
    "not a leap day": {"timestamp": "2100-02-29 00:00:00+00"},
    "BC": {"timestamp": "0044-03-15 12:00:00+00 BC"},
    "hour 24": {"timestamp": "2026-02-09 24:00:00+00"},
    "seven digits": {"timestamp": "2026-02-09 10:00:00.1234567+00"},
    "infinity": {"timestamp": "infinity"},
    "uppercase hash": {"prev_hash": "A" * 64, "step_hash": "B" * 64},
    "short hash": {"step_hash": "ab"},
    "empty text": {"skill_name": "", "outcome_code": ""},
}
# Lines the compiled path must take (so that the comparison is not empty).
TAKEN = {
    "plain",
    "nulls everywhere allowed",
    "numeric scale",
    "negative zero",
    "2^53",
    "17 digits, its double",
    "17 digits with zeros",
    "nested",
    "scalar json",
    "bmp keys",
    "astral value",
    "control in text",
    "float column integral",
    "float column 17 digits",
    "boolean true",
    "index leading zero",
    "leap day",
    "uppercase hash",
    "short hash",
    "empty text",
}
# Lines it must refuse: an exact-form number, or a value the pure path must word.
REFUSED = {
    "above 2^53",
    "2^64",
    "1e400",
    "1e-400",
    "17 digits, not its double",
    "huge integer",
    "exponent",
    "duplicate key",
    "astral key",
    "escaped json",
    "tab in text",
    "backslash in text",
    "text that reads \\N",
    "float column NaN",
    "boolean odd",
    "negative index",
    "null index",
    "null position",
    "null prev_hash",
    "year zero",
    "BC",
    "hour 24",
    "seven digits",
    "infinity",
}


@needs_native
@pytest.mark.parametrize("name", list(CASES))
def test_a_v2_line_the_compiled_path_takes_is_the_pure_paths(name: str) -> None:
    got = _agrees(v2_line(**CASES[name]))
    if name in TAKEN:
        assert got is not None, name
    if name in REFUSED:
        assert got is None, name


@needs_native
def test_invalid_utf8_is_refused() -> None:
    line = v2_line(params='{"k": "x"}').replace(b'"x"', b'"\xed\xb3\xbf"')
    assert _native(line) is None
    assert _native(v2_line(skill_name="a").replace(b"\ta\t", b"\t\xff\t")) is None


@needs_native
def test_a_line_with_more_or_fewer_fields_is_refused() -> None:
    line = v2_line()
    assert _native(line[:-1] + b"\tx\n") is None
    assert _native(line.rsplit(b"\t", 1)[0] + b"\n") is None


# --- generated rows: jsonb text as PostgreSQL prints it ----------------------------------


class Num:
    """A JSON number by its text (jsonb prints numeric exactly, never an exponent)."""

    def __init__(self, text: str) -> None:
        self.text = text


def _plain_decimal(value: Decimal, zeros: int) -> str:
    text = format(value, "f")
    if zeros:
        text += ("" if "." in text else ".") + "0" * zeros
    return text


_number_texts = st.one_of(
    st.integers(-(10**25), 10**25).map(str),
    st.integers(-(2**63), 2**64).map(str),
    st.builds(
        _plain_decimal,
        st.floats(allow_nan=False, allow_infinity=False).map(lambda f: Decimal(repr(f))),
        st.integers(0, 2),
    ),
    st.builds(
        _plain_decimal,
        st.decimals(allow_nan=False, allow_infinity=False, places=None),
        st.integers(0, 1),
    ),
    st.sampled_from(
        [
            "1.50",
            "1" + "0" * 400,
            "0." + "0" * 399 + "1",
            str(2**64),
            str(2**53),
            str(2**53 + 1),
            "0.10000000000000001",
            "0.30000000000000004",
            "-0",
            "-0.0",
            "0",
            "100.0",
            "1000000000000000000000",
            "100000000000000000000.0",
            "0.000001",
            "0.0000001",
            "123456789012345678901234567890",
            "1e5",
            "5E-324",
        ]
    ),
).map(Num)
_keys = st.text(
    st.one_of(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        st.characters(min_codepoint=0xE000, max_codepoint=0xFFFF, exclude_categories=["Cs"]),
        st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF),
        st.characters(min_codepoint=0x01, exclude_categories=["Cs"]),
    ),
    max_size=5,
)
_json_values = st.recursive(
    st.none() | st.booleans() | _number_texts | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=5),
    max_leaves=25,
)


def jsonb_text(value: Any) -> str:
    """`value` as jsonb output prints it: keys by length then bytes, `, ` and `: `."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        inner = ", ".join(
            f"{json.dumps(k, ensure_ascii=False)}: " + jsonb_text(value[k]) for k in keys
        )
        return "{" + inner + "}"
    if isinstance(value, list):
        return "[" + ", ".join(jsonb_text(v) for v in value) + "]"
    if isinstance(value, Num):
        return value.text
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, bool) or value is None or isinstance(value, str) or type(value) is int:
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(type(value))


def _float8_text(value: float) -> str:
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


_texts = st.none() | st.text(max_size=6) | st.sampled_from(["succeeded", "é ✓", "", "a\tb"])
_doubles = (
    st.none()
    | st.floats(allow_nan=False, allow_infinity=False).map(_float8_text)
    | st.sampled_from(["0.25", "100", "-0", "1e+21", "1e-07", "NaN", "Infinity", "0.1"])
)
_moments = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)


def _timestamp_text(moment: datetime, digits: int) -> str:
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    fraction = f"{moment.microsecond:06d}"[:digits]
    return text + ("." + fraction if digits else "") + "+00"


_timestamps = st.none() | st.builds(_timestamp_text, _moments, st.integers(0, 6))
_hashes = st.sampled_from(["a" * 64, "0" * 63 + "1", "", "F" * 64, "not a hash"])


@st.composite
def v2_rows(draw: st.DrawFn) -> bytes:
    index = draw(st.integers(0, 10**6))
    fields: dict[str, str | None] = {
        "step_index": str(index),
        "params": draw(st.none() | _json_values.map(jsonb_text)),
        "outcome_data": draw(st.none() | _json_values.map(jsonb_text)),
        "cost_cents": draw(_doubles),
        "duration_ms": draw(_doubles),
        "retry_count": draw(st.none() | st.integers(-(2**31), 2**31 - 1).map(str)),
        "timestamp": draw(_timestamps),
        "is_synthetic": draw(st.sampled_from([None, "t", "f"])),
        "chain_position": draw(st.sampled_from([str(index), str(index + 1), None])),
        "prev_hash": draw(_hashes),
        "step_hash": draw(_hashes),
    }
    for name in (
        "skill_id",
        "skill_name",
        "status",
        "outcome_category",
        "outcome_code",
        "input_hash",
        "output_hash",
        "rng_state_before",
        "idempotency_key",
        "replay_behavior",
        "source",
        "level",
        "synthetic_scenario_id",
    ):
        fields[name] = draw(_texts)
    return v2_line(**fields)


@needs_native
@settings(max_examples=500, deadline=None, database=None)
@given(v2_rows())
def test_generated_v2_rows_give_the_pure_bytes_or_are_refused(line: bytes) -> None:
    _agrees(line)


@needs_native
@settings(max_examples=400, deadline=None, database=None)
@given(_json_values)
def test_generated_jsonb_numbers_give_the_pure_bytes_or_are_refused(value: Any) -> None:
    """The JSON columns alone (the rest of the line plain), so that most lines are taken."""
    text = jsonb_text(value)
    _agrees(v2_line(params=text, outcome_data=text))


@needs_native
def test_the_properties_reach_the_compiled_json_path() -> None:
    value = {
        "a": [Num("1.50"), {"bb": None, "c": "é"}],
        "zz": Num("0.30000000000000004"),
        "big": Num(str(2**53)),
        "z": Num("-0.0"),
    }
    got = _agrees(v2_line(params=jsonb_text(value)))
    assert got is not None
    assert b'"params":{"a":[1.5,{"bb":null,"c":"\xc3\xa9"}],"big":9007199254740992,' in got[1]


# --- the v2 vectors, as COPY lines -------------------------------------------------------


def _column_text(name: str, value: Any) -> str | None:
    """A step field of a vector case as COPY prints its column (jsonb exactly as stored,
    float8 the shortest way, timestamptz under TimeZone UTC, boolean t/f)."""
    if value is None:
        return None
    if name in ("params", "outcome_data"):
        return jsonb_text(value)
    if name in ("cost_cents", "duration_ms"):
        return _float8_text(float(value))
    if name == "timestamp":
        return str(value).replace("T", " ").replace("Z", "+00")
    if name == "is_synthetic":
        return "t" if value else "f"
    return str(value)


def vector_lines(case: dict[str, Any]) -> list[bytes]:
    expected = case["expected"]
    prev, lines = expected["genesis_hash"], []
    for position, (step, step_hash) in enumerate(
        zip(case["steps"], expected["step_hashes"], strict=True)
    ):
        texts = {name: _column_text(name, step[name]) for name in STEP_V2_COLUMNS[:21]}
        chain = {"chain_position": str(position), "prev_hash": prev, "step_hash": step_hash}
        lines.append(v2_line(**texts, **chain))
        prev = step_hash
    return lines


def _vector_ids(case: dict[str, Any]) -> tuple[bytes, bytes, bytes]:
    header = case["header"]
    ids = native_line.id_texts(header["tenant_id"], header["run_id"], header["trace_id"])
    assert ids is not None
    return ids


@needs_native
@pytest.mark.parametrize("case", VECTOR_CASES, ids=[c["name"] for c in VECTOR_CASES])
def test_the_v2_vectors_pass_on_the_compiled_path(case: dict[str, Any]) -> None:
    header, expected = case["header"], case["expected"]
    lines, ids = vector_lines(case), _vector_ids(case)
    pure = StepV2Decoder(header["tenant_id"], header["run_id"], header["trace_id"], native=False)
    taken: list[bool] = []
    for line, canonical in zip(lines, expected["canonical_steps"], strict=True):
        assert pure.decode_line(line).canonical == canonical.encode()
        assert native_line.canonical_line_v2 is not None
        got = native_line.canonical_line_v2(line, *ids)
        taken.append(got is not None)
        if got is not None:
            assert got[1] == canonical.encode()
    assert native_line.walk_v2 is not None
    genesis = bytes.fromhex(expected["genesis_hash"])
    consumed, head = native_line.walk_v2(lines, 0, genesis, expected["genesis_hash"], 0, -1, *ids)
    # The walk takes the steps up to the first one it refuses.
    assert consumed == (taken + [False]).index(False)
    assert head.hex() == [expected["genesis_hash"], *expected["step_hashes"]][consumed]
    if case["name"] == "exact_numbers":
        assert taken[0] is False  # 2^64, 1e400...: the exact form is the pure path's
    if case["name"] == "aos_start_trace_three_steps_completed":
        assert all(taken)


# --- the walk ----------------------------------------------------------------------------


def chained_v2(count: int, genesis: bytes) -> list[bytes]:
    """`count` v2 lines of this module's trace, chained from `genesis` by the pure path."""
    lines, prev = [], genesis
    moment = datetime(2026, 2, 9, 10, tzinfo=UTC)
    for i in range(count):
        fields = {
            "step_index": str(i),
            "chain_position": str(i),
            "prev_hash": prev.hex(),
            "timestamp": _timestamp_text(moment + timedelta(seconds=i), 6),
            "outcome_data": None if i % 3 == 0 else f'{{"bytes": {10 * i}, "ok": true}}',
        }
        canonical = _pure(v2_line(**fields))[1]
        assert canonical is not None
        digest = hashlib.sha256(prev + canonical).digest()
        lines.append(v2_line(**fields, step_hash=digest.hex()))
        prev = digest
    return lines


def _tampered(lines: list[bytes], bad: int | None, how: str) -> list[bytes]:
    if bad is None:
        return lines
    column = {
        "step_hash": "step_hash",
        "prev_hash": "prev_hash",
        "index": "step_index",
        "position": "chain_position",
        "position-null": "chain_position",
        "refused": "duration_ms",
        "exact": "params",
    }[how]
    value = {
        "step_hash": "f" * 64,
        "prev_hash": "e" * 64,
        "index": "99",
        "position": "42",
        "position-null": "\\N",
        "refused": "1e+300",  # a float8 column in exponent form: the pure path's
        "exact": '{"n": 18446744073709551616}',  # hashed in its exact form: the pure path's
    }[how]
    fields = lines[bad].decode().rstrip("\n").split("\t")
    fields[STEP_V2_COLUMNS.index(column)] = value
    return [*lines[:bad], ("\t".join(fields) + "\n").encode(), *lines[bad + 1 :]]


def _segment_state(chain: ChainSegment) -> tuple[Any, ...]:
    return (chain.walk_state(True), chain.steps_seen, chain.result())


HOWS = ["step_hash", "prev_hash", "index", "position", "position-null", "refused", "exact"]


@needs_native
@pytest.mark.parametrize("sealed", [None, 3, 6, 40])
@pytest.mark.parametrize("bad", [None, 0, 1, 4, 7])
@pytest.mark.parametrize("how", HOWS)
def test_the_v2_walk_leaves_a_segment_where_feeding_each_row_does(
    sealed: int | None, bad: int | None, how: str
) -> None:
    lines = _tampered(chained_v2(10, b"\x11" * 32), bad, how)
    pure = ChainSegment(sealed, check_positions=True)
    native = ChainSegment(sealed, check_positions=True)
    decoder = StepV2Decoder(TENANT, RUN, TRACE, native=False)
    for line in lines:
        if decoder.decode_line(line).feed_to(pure):
            break
    seen: list[int | None] = []
    walker = LineWalk(
        native, StepV2Decoder(TENANT, RUN, TRACE), on_step=lambda s: seen.append(s.step_index)
    )
    stopped = walker.feed(lines[:5]) or walker.feed(lines[5:])
    assert stopped == (pure.result().failure is not None or pure.result().head is None)
    assert walker.read == pure.steps_seen
    assert _segment_state(native) == _segment_state(pure)
    assert seen  # a segment's first row always takes the decoder


@needs_native
def test_a_v2_chain_is_never_walked_by_the_v1_walk() -> None:
    """walk_state(positions): the v1 walk (no chain positions) gets no state from a v2 chain,
    the v2 walk none from a v1 chain."""
    _, _, v1_trace, v2_trace = bench_lines(1)
    assert ChainVerifier(v2_trace).walk_state() is None
    assert ChainVerifier(v2_trace).walk_state(True) is not None
    assert ChainVerifier(v1_trace).walk_state(True) is None


@needs_native
@pytest.mark.parametrize("sealed", [False, True])
@pytest.mark.parametrize("bad", [None, 150])
def test_the_v2_walk_advances_a_verifier_as_feeding_each_row_does(
    sealed: bool, bad: int | None
) -> None:
    _, lines, _, trace = bench_lines(300)
    lines = _tampered(lines, bad, "exact")
    if sealed:
        # A seal claiming 200 steps: the head at the sealed length must be the 200th digest.
        trace = replace(trace, root_hash="0" * 64, chain_length=200, status="completed")
    pure, native = ChainVerifier(trace), ChainVerifier(trace)
    decoder = StepV2Decoder(_SPEC.tenant_id, _SPEC.run_id, _SPEC.trace_id, native=False)
    for line in lines:
        if decoder.decode_line(line).feed_to(pure):
            break
    walked: list[int] = []
    walker = LineWalk(
        native,
        StepV2Decoder(_SPEC.tenant_id, _SPEC.run_id, _SPEC.trace_id),
        pure_first=2,
        on_walked=walked.append,
    )
    for start in range(0, len(lines), 128):
        if walker.feed(lines[start : start + 128]):
            break
    assert walker.read == pure.steps_seen
    assert native.finish() == pure.finish()
    assert sum(walked) >= (150 if bad else 298) - 2  # the walk took the rows, not the decoder
