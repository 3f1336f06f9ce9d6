"""Canonical JSON (RFC 8785), stored-JSON parsing, timestamps and the fast step encoder.

The `rfc8785` package is the oracle: our encoder must agree with it byte for byte on any JSON
value it accepts.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from run_proof_pipeline.integrity import (
    CanonicalizationError,
    InvalidTimestamp,
    UnrepresentableNumber,
    canonical_timestamp,
    canonicalize,
    es6_number,
    parse_stored_json,
    parse_timestamp,
    step_canonical_bytes,
    step_record,
    stored_number_problem,
)
from run_proof_pipeline.integrity.canonical import MAX_RECORD_DEPTH, canonicalize_stored_json

SAFE = 2**53 - 1

# --- strategies ----------------------------------------------------------------------------

# Astral characters and U+E000..U+FFFF are where UTF-16 order and code point order disagree.
key_chars = st.one_of(
    st.characters(min_codepoint=0x01, max_codepoint=0x7F),
    st.characters(min_codepoint=0xE000, max_codepoint=0xFFFF, exclude_categories=["Cs"]),
    st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF),
    st.characters(min_codepoint=0x01, exclude_categories=["Cs"]),
)
keys = st.text(key_chars, max_size=6)
strings = st.text(st.characters(min_codepoint=0x01, exclude_categories=["Cs"]), max_size=12)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
safe_ints = st.integers(min_value=-SAFE, max_value=SAFE)
scalars = st.one_of(st.none(), st.booleans(), safe_ints, finite_floats, strings)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(keys, children, max_size=6),
    ),
    max_leaves=40,
)
FAST = settings(max_examples=300, deadline=None, database=None)
LIGHT = settings(max_examples=150, deadline=None, database=None)


# --- spec examples -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, "1"),
        (1e16, "10000000000000000"),
        (-0.0, "0"),
        (0.0, "0"),
        (1e-7, "1e-7"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (0.00001, "0.00001"),
        (0.000001, "0.000001"),
        (123456789.125, "123456789.125"),
        (0.1, "0.1"),
        (227.6, "227.6"),
        (1500.0, "1500"),
        (-1.5e-9, "-1.5e-9"),
        (1.2345e21, "1.2345e+21"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (9007199254740993.0, "9007199254740992"),
    ],
)
def test_numbers_print_in_ecmascript_shortest_form(value: float, expected: str) -> None:
    assert es6_number(value) == expected
    assert canonicalize(value) == expected.encode()
    assert rfc8785.dumps(value) == expected.encode()


def test_keys_sort_by_utf16_code_units_not_code_points() -> None:
    # U+1F600 is D83D DE00 in UTF-16, which sorts before U+E000; in code points it is after.
    value = {"\ue000": 1, "\U0001f600": 2, "a": 3, "\uffff": 4}
    assert canonicalize(value) == '{"a":3,"\U0001f600":2,"\ue000":1,"\uffff":4}'.encode()
    assert canonicalize(value) == rfc8785.dumps(value)


def test_astral_keys_deep_inside_fast_structure() -> None:
    value = {"outer": [{"x": 1.5, "\ue001": [1.0], "\U00010000": {"b": 2, "a": 1e21}}], "n": 2}
    assert canonicalize(value) == rfc8785.dumps(value)


def test_strings_escape_only_quote_backslash_and_controls() -> None:
    s = 'über "quoted" \\ back/slash\nnewline\ttab\x08\x0c\r\x01\x1f\x7f\u2028'
    expected = (
        '"über \\"quoted\\" \\\\ back/slash\\nnewline\\ttab\\b\\f\\r\\u0001\\u001f\x7f\u2028"'
    )
    assert canonicalize(s) == expected.encode()


ESCAPE_EDGES = [
    *range(0x00, 0x21),  # every control character and the space after them
    0x22, 0x2F, 0x5C, 0x7E, 0x7F, 0x80, 0x9F, 0xA0, 0xFF, 0x100,
    0x2028, 0x2029, 0xD7FF, 0xE000, 0xFEFF, 0xFFFD, 0xFFFE, 0xFFFF,
    0x10000, 0x1F600, 0x10FFFF,
]  # fmt: skip


@pytest.mark.parametrize("cp", ESCAPE_EDGES, ids=hex)
def test_orjson_string_escaping_equals_jcs_at_the_edges(cp: int) -> None:
    # The fast subset's share of the sweep below: where an escaping rule changes.
    assert orjson.dumps(chr(cp)) == rfc8785.dumps(chr(cp))


@pytest.mark.slow
def test_orjson_string_escaping_equals_jcs_for_every_code_point() -> None:
    # The fast path relies on this: verified, not assumed (1.1M code points, ~2.2M calls).
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        s = chr(cp)
        assert orjson.dumps(s) == rfc8785.dumps(s), hex(cp)


def test_tuples_and_subclasses_encode_as_plain_json() -> None:
    from collections import OrderedDict
    from enum import Enum, IntEnum

    class Color(str, Enum):  # noqa: UP042 -- a str mixin whose str() is not its value
        RED = "red"

    class Level(IntEnum):
        HIGH = 3

    value = OrderedDict([("b", (1, 2.0)), ("a", [Color.RED, Level.HIGH]), (Color.RED, 1)])
    assert canonicalize(value) == b'{"a":["red",3],"b":[1,2],"red":1}'
    assert canonicalize(value) == rfc8785.dumps(value)


def test_nesting_up_to_the_record_limit_matches_the_oracle() -> None:
    # A record nests at most MAX_RECORD_DEPTH levels (docs/json-nesting.md); deeper ones are
    # refused (test_json_nesting.py).
    value: Any = 1.5
    for i in range(MAX_RECORD_DEPTH):
        value = [value] if i % 2 else {"k": value}
    assert canonicalize(value) == rfc8785.dumps(value)


# --- strict-mode rejections ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "path", "why"),
    [
        ({"params": {"floats": [1.0, 2.0, 3.0, math.nan]}}, "params.floats[3]", "finite"),
        ({"params": {"floats": [math.inf]}}, "params.floats[0]", "finite"),
        ({"x": -math.inf}, "x", "finite"),
        ({"n": 2**53}, "n", "2^53"),
        ({"n": -(2**53)}, "n", "2^53"),
        ({"n": [10**30]}, "n[0]", "2^53"),
        ({True: 1}, "(root)", "not a string"),
        ({"a": {1: "x"}}, "a", "not a string"),
        ({"a": {None: "x"}}, "a", "not a string"),
        ({"s": "nul\x00here"}, "s", "U+0000"),
        ({"k\x00": 1}, "(root)", "U+0000"),
        ({"s": ["ok", "lone \ud800"]}, "s[1]", "lone surrogate"),
        ({"\udfff": 1}, "(root)", "lone surrogate"),
        ({"when": datetime(2026, 2, 9, tzinfo=UTC)}, "when", "unsupported type datetime"),
        ({"d": Decimal("1.5")}, "d", "unsupported type Decimal"),
        ({"b": b"bytes"}, "b", "unsupported type bytes"),
        ({"s": {1, 2}}, "s", "unsupported type set"),
        ({"u": UUID(int=1)}, "u", "unsupported type UUID"),
        ({"weird key": [float("nan")]}, '["weird key"][0]', "finite"),
        ({"\U0001f600": {"x": math.nan}}, "x", "finite"),
    ],
)
def test_strict_mode_rejects_what_jcs_cannot_represent(value: Any, path: str, why: str) -> None:
    with pytest.raises(CanonicalizationError) as info:
        canonicalize(value)
    message = str(info.value)
    assert why in message
    assert path in message


def test_rejection_names_the_full_path_of_the_offending_value() -> None:
    with pytest.raises(CanonicalizationError, match=r"^params\.floats\[3\]: nan"):
        canonicalize({"params": {"floats": [1.0, 100.0, 0.1, math.nan]}})


def test_canonicalization_error_is_a_value_error() -> None:
    assert issubclass(CanonicalizationError, ValueError)


# --- read path (strict=False) ----------------------------------------------------------------


def test_read_path_takes_any_integer_as_the_double_it_denotes() -> None:
    assert canonicalize(9007199254740993, strict=False) == b"9007199254740992"
    assert canonicalize(10**21, strict=False) == b"1e+21"
    assert canonicalize(10**16, strict=False) == b"10000000000000000"
    assert canonicalize({"a": [-(10**30)]}, strict=False) == b'{"a":[-1e+30]}'
    assert canonicalize(Decimal("227.60"), strict=False) == b"227.6"


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, [-math.inf], {"a": 10**400}, Decimal("Infinity")]
)
def test_read_path_still_rejects_non_finite_numbers(value: Any) -> None:
    with pytest.raises(CanonicalizationError, match="finite"):
        canonicalize(value, strict=False)


def test_read_path_rejects_lone_surrogates() -> None:
    with pytest.raises(CanonicalizationError, match="lone surrogate"):
        canonicalize(parse_stored_json('{"a": "\\ud800"}'), strict=False)


@pytest.mark.parametrize(
    ("stored_text", "canonical"),
    [
        ("1000000000000000000000", b"1e+21"),  # jsonb's rewrite of 1e21
        ("10000000000000000", b"10000000000000000"),  # jsonb's rewrite of 1e16
        ("0.0000001", b"1e-7"),
        ("1.0", b"1"),
        ("-0", b"0"),
        ("-0.0", b"0"),
        ("227.60", b"227.6"),
        # A double's exact decimal value is honest, however long (docs/stored-numbers.md).
        (str(int(1.2345678901234568e29)), b"1.2345678901234568e+29"),
        ('{"b": [1, 2.5], "a": {"x": null}}', b'{"a":{"x":null},"b":[1,2.5]}'),
    ],
)
def test_stored_json_rewritten_by_postgres_canonicalizes_as_written(
    stored_text: str, canonical: bytes
) -> None:
    assert canonicalize(parse_stored_json(stored_text), strict=False) == canonical
    assert canonicalize(parse_stored_json(stored_text.encode()), strict=False) == canonical


def test_stored_number_beyond_double_range_parses_but_fails_canonicalization() -> None:
    value = parse_stored_json('{"x": 1' + "0" * 400 + "}")
    with pytest.raises(CanonicalizationError, match="x"):
        canonicalize(value, strict=False)


def test_parse_stored_json_rejects_non_json_constants() -> None:
    with pytest.raises(ValueError):
        parse_stored_json('{"x": NaN}')


# --- property tests against the rfc8785 oracle -----------------------------------------------


@FAST
@given(json_values)
def test_canonicalize_matches_the_rfc8785_oracle(value: Any) -> None:
    assert canonicalize(value) == rfc8785.dumps(value)
    assert canonicalize(value, strict=False) == rfc8785.dumps(value)


@FAST
@given(finite_floats)
def test_floats_across_the_whole_double_range_match_the_oracle(value: float) -> None:
    assert canonicalize([value]) == rfc8785.dumps([value])
    assert canonicalize(value) == rfc8785.dumps(value)
    assert canonicalize({"k": value}) == rfc8785.dumps({"k": value})


@LIGHT
@given(json_values)
def test_without_orjson_native_fractions_every_float_is_a_fragment_and_still_exact(
    value: Any,
) -> None:
    # The fallback taken if a future orjson printed fractions differently from ES6.
    from run_proof_pipeline.integrity import canonical

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(canonical, "_LOW", math.inf)
        patch.setattr(canonical, "_TINY", 0.0)
        assert canonicalize(value) == rfc8785.dumps(value)


@settings(max_examples=50, deadline=None, database=None)
@given(st.integers(min_value=1, max_value=MAX_RECORD_DEPTH), scalars)
def test_deep_nesting_matches_the_oracle(depth: int, leaf: Any) -> None:
    value: Any = leaf
    for i in range(depth):
        value = {"k\U0001f600" if i % 7 == 0 else "k": value} if i % 2 else [value, i]
    assert canonicalize(value) == rfc8785.dumps(value)


@LIGHT
@given(json_values)
def test_round_trip_through_stored_json_keeps_the_bytes(value: Any) -> None:
    canonical = canonicalize(value)
    assert canonicalize(parse_stored_json(canonical), strict=False) == canonical


def _pg_jsonb_text(value: Any) -> str:
    """JSON text the way jsonb prints it: spaces after separators, numbers as plain decimals
    without exponent (jsonb stores numbers as numeric, so 1e21 comes back as 1000...0)."""
    if isinstance(value, dict):
        items = ", ".join(f"{_pg_jsonb_text(k)}: {_pg_jsonb_text(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_pg_jsonb_text(v) for v in value) + "]"
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return format(Decimal(es6_number(float(value)) if isinstance(value, float) else value), "f")


@FAST
@given(json_values)
def test_round_trip_through_postgres_number_rewriting_keeps_the_bytes(value: Any) -> None:
    canonical = canonicalize(value)
    stored = _pg_jsonb_text(parse_stored_json(canonical))
    assert canonicalize(parse_stored_json(stored), strict=False) == canonical


@FAST
@given(st.integers(min_value=-(10**300), max_value=10**300))
def test_a_stored_integer_reads_as_its_nearest_double_or_is_refused(value: int) -> None:
    # The stored-number rule: more than 17 significant digits only for a double's exact value.
    text = str(value)
    honest = len(text.lstrip("-").strip("0")) <= 17 or int(float(value)) == value
    if honest:
        expected = rfc8785.dumps(float(value))
        assert canonicalize(parse_stored_json(text), strict=False) == expected
        assert canonicalize_stored_json(text) == expected
    else:
        with pytest.raises(CanonicalizationError, match="significant digits"):
            canonicalize(parse_stored_json(text), strict=False)
        with pytest.raises(CanonicalizationError, match="significant digits"):
            canonicalize_stored_json(text)


# --- stored numbers (docs/stored-numbers.md) ---------------------------------------------------

HONEST_NUMBERS = [
    ("1000000000000000000000", b"1e+21"),  # jsonb's rewrite of 1e21
    ("1e21", b"1e+21"),
    ("0.10000000000000001", b"0.1"),  # %.17g
    ("0.1000000000000000055511151231257827021181583404541015625", b"0.1"),  # BigDecimal(0.1)
    ("0", b"0"),
    ("-0.0", b"0"),
    ("0e5", b"0"),
    ("5e-324", b"5e-324"),
]
REFUSED_NUMBERS = [
    ("1e-400", "underflows to zero"),
    ("2798.0000000000000000001", "23 significant digits"),
    ("1e400", "not a finite double"),
    ("0.1000000000000000055511151231257827", "34 significant digits"),
]


@pytest.mark.parametrize(("text", "canonical"), HONEST_NUMBERS)
def test_honest_stored_numbers_are_accepted_on_both_paths(text: str, canonical: bytes) -> None:
    assert stored_number_problem(text) is None
    for stored in (text, f'{{"n": {text}}}', f"[1, {text}]"):
        expected = canonicalize(json.loads(stored.replace(text, canonical.decode())))
        assert canonicalize_stored_json(stored.encode()) == expected  # fast path first
        assert canonicalize(parse_stored_json(stored), strict=False) == expected


@pytest.mark.parametrize(("text", "reason"), REFUSED_NUMBERS)
def test_refused_stored_numbers_fail_on_both_paths_naming_path_and_value(
    text: str, reason: str
) -> None:
    problem = stored_number_problem(text)
    assert problem is not None
    assert reason in problem
    assert text in problem
    stored = f'{{"max_tokens": 1, "attempt": {text}}}'
    message = rf"^attempt: number {re.escape(text)} .*{reason}"
    with pytest.raises(CanonicalizationError, match=message):
        canonicalize_stored_json(stored.encode())
    with pytest.raises(CanonicalizationError, match=message):
        canonicalize_stored_json(stored)
    with pytest.raises(CanonicalizationError, match=message):
        canonicalize(parse_stored_json(stored), strict=False)
    # The row decoder's fast record encoder refuses it too, naming the column's path.
    with pytest.raises(CanonicalizationError, match=rf"^params\.attempt: number {re.escape(text)}"):
        step_canonical_bytes(**_step(params=parse_stored_json(stored)))


def test_a_refused_number_is_still_the_double_it_denotes_for_display() -> None:
    value = parse_stored_json('{"attempt": 1e-400, "max_tokens": 2798.0000000000000000001}')
    assert isinstance(value, dict)
    assert value == {"attempt": 0.0, "max_tokens": 2798.0}
    assert isinstance(value["attempt"], UnrepresentableNumber)
    assert value["attempt"].text == "1e-400"
    assert json.dumps(value) == '{"attempt": 0.0, "max_tokens": 2798.0}'


def test_jsonb_long_forms_are_named_shortened() -> None:
    tiny = "0." + "0" * 399 + "1"  # 1e-400 as jsonb prints it
    problem = stored_number_problem(tiny)
    assert problem is not None
    assert "(402 characters, ~1E-400) is not zero but underflows to zero" in problem
    with pytest.raises(CanonicalizationError, match=r"^a\[0\]: number 0\.000.*~1E-400"):
        canonicalize_stored_json(f'{{"a": [{tiny}]}}'.encode())


def test_fast_path_hands_suspect_texts_to_the_exact_path() -> None:
    from run_proof_pipeline.integrity.canonical import jcs_from_orjson

    for text in (b'{"a": 2798.0000000000000000001}', b'{"a": 1e-400}', b'{"a": -1E-0400}'):
        value = orjson.loads(text)
        out = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        assert jcs_from_orjson(out, value, text) is None
        # The output alone cannot show it: without the source, every fraction is suspect.
        assert jcs_from_orjson(out, value) is None
    # A common row stays on the fast path, exponent-like strings included.
    text = b'{"id": "3fe-4012", "n": 0.0, "r": 0.30000000000000004, "m": 12345.000001}'
    value = orjson.loads(text)
    out = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    assert jcs_from_orjson(out, value, text) == out.replace(b"0.0,", b"0,")
    assert jcs_from_orjson(out, value) is None
    assert jcs_from_orjson(b'{"n":12,"s":"x"}', {"n": 12, "s": "x"}) == b'{"n":12,"s":"x"}'


_number_texts = st.builds(
    lambda sign, whole, zeros, fraction, exponent: (
        sign + whole + ("." + "0" * zeros + fraction if fraction or zeros else "") + exponent
    ),
    st.sampled_from(["", "-"]),
    st.one_of(st.just("0"), st.from_regex(r"[1-9][0-9]{0,24}", fullmatch=True)),
    st.one_of(st.just(0), st.integers(0, 30), st.integers(290, 340)),
    st.from_regex(r"([0-9]{0,25}[1-9])?", fullmatch=True),
    st.one_of(
        st.just(""),
        st.builds(
            lambda e, sign, pad, n: e + sign + "0" * pad + str(n),
            st.sampled_from(["e", "E"]),
            st.sampled_from(["", "+", "-"]),
            st.integers(0, 2),
            st.integers(0, 400),
        ),
    ),
)


@FAST
@given(_number_texts, st.sampled_from(['{{"k": {}}}', "[1, {}]", '{{"a": [0.0, {}]}}', "{}"]))
def test_the_fast_path_refuses_exactly_what_the_rule_refuses(number: str, layout: str) -> None:
    from run_proof_pipeline.integrity.canonical import jcs_from_orjson

    text = layout.format(number)
    problem = stored_number_problem(number)
    if problem is None:
        # The number as the double it denotes (an integral one past 2^53 included).
        as_double = json.loads(layout.format(es6_number(float(number))), parse_int=float)
        expected = canonicalize(as_double)
        assert canonicalize_stored_json(text.encode()) == expected
        assert canonicalize(parse_stored_json(text), strict=False) == expected
        return
    with pytest.raises(CanonicalizationError, match="number "):
        canonicalize_stored_json(text.encode())
    with pytest.raises(CanonicalizationError, match="number "):
        canonicalize(parse_stored_json(text), strict=False)
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return  # overflow: orjson refuses it itself
    out = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    assert jcs_from_orjson(out, value, text.encode()) is None
    assert jcs_from_orjson(out, value) is None


@FAST
@given(finite_floats)
def test_every_double_written_as_writers_write_it_is_accepted(value: float) -> None:
    """Shortest form, jsonb's plain decimal, %.17g and the exact decimal value: all honest."""
    expected = rfc8785.dumps(value)
    for text in (
        repr(value),
        format(Decimal(es6_number(value)), "f"),
        "%.17g" % value,  # noqa: UP031 - the C writer's format
        format(Decimal(value), "f"),
    ):
        assert stored_number_problem(text) is None, text
        assert canonicalize_stored_json(f'{{"x": {text}}}') == b'{"x":' + expected + b"}"
        assert canonicalize(parse_stored_json(f"[{text}]"), strict=False) == b"[" + expected + b"]"


# --- timestamps --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-02-09T10:00:00.000000Z", "2026-02-09T10:00:00.000000Z"),
        ("2026-02-09T11:00:00+02:00", "2026-02-09T09:00:00.000000Z"),
        ("2026-02-09T10:00:02.5Z", "2026-02-09T10:00:02.500000Z"),
        ("2026-02-09 10:00:00.123456+00", "2026-02-09T10:00:00.123456Z"),
        ("2026-02-09 10:00:00+00", "2026-02-09T10:00:00.000000Z"),
        ("2026-02-09 10:00:02.5+00", "2026-02-09T10:00:02.500000Z"),
        ("2026-02-09 10:00:02.5+00:00", "2026-02-09T10:00:02.500000Z"),
        ("2026-02-09 15:30:00+05:30", "2026-02-09T10:00:00.000000Z"),
        ("2026-02-09 05:00:00-05", "2026-02-09T10:00:00.000000Z"),
        ("2026-02-09T10:00:00+0000", "2026-02-09T10:00:00.000000Z"),
        ("2026-01-01T00:30:00+01:00", "2025-12-31T23:30:00.000000Z"),
        ("1900-01-01 00:00:00+00:53:28", "1899-12-31T23:06:32.000000Z"),
        ("2026-02-09T10:00:00.1234560Z", "2026-02-09T10:00:00.123456Z"),
        ("0001-01-01 00:00:00+00", "0001-01-01T00:00:00.000000Z"),
        ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
        ("2024-02-29 12:00:00+00", "2024-02-29T12:00:00.000000Z"),
        (datetime(2026, 2, 9, 10, 0, 2, 500000, UTC), "2026-02-09T10:00:02.500000Z"),
        (
            datetime(2026, 2, 9, 12, 0, tzinfo=timezone(timedelta(hours=2))),
            "2026-02-09T10:00:00.000000Z",
        ),
    ],
)
def test_timestamps_normalise_to_utc_with_six_fraction_digits(
    value: str | datetime, expected: str
) -> None:
    assert canonical_timestamp(value) == expected
    assert parse_timestamp(value) == datetime.fromisoformat(expected)
    assert parse_timestamp(value).tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("2026-02-09T10:00:00", "no UTC offset"),
        ("2026-02-09 10:00:00.123456", "no UTC offset"),
        (datetime(2026, 2, 9, 10, 0), "no UTC offset"),
        ("2026-02-09T10:00:00.1234567Z", "finer than a microsecond"),
        ("2026-02-09 10:00:00.0000001+00", "finer than a microsecond"),
        ("infinity", "not a point in time"),
        ("-infinity", "not a point in time"),
        ("0000-01-01 00:00:00+00", "year"),
        ("10000-01-01 00:00:00+00", "year"),
        ("0001-01-01 00:00:00+00 BC", "year"),
        ("0001-01-01T00:30:00+01:00", "year"),
        ("9999-12-31T23:30:00-01:00", "year"),
        ("2026-02-30 10:00:00+00", "not a valid date"),
        ("2026-02-09 24:00:00+00", "not a valid date"),
        ("2026-02-09 10:00:60+00", "not a valid date"),
        ("2026-02-09", "no UTC offset"),
        ("yesterday", "not an ISO-8601"),
        ("2026-02-09 10:00:00.+00", "not an ISO-8601"),
        ("２０２６-02-09 10:00:00+00", "not an ISO-8601"),
        ("2026-02-09 10:00:00.１+00", "not an ISO-8601"),
        ("2026-02-09T10:00:00+24:00", "impossible UTC offset"),
        (1770631200, "must be a str or datetime"),
    ],
)
def test_timestamps_the_spec_rejects(value: Any, why: str) -> None:
    with pytest.raises(InvalidTimestamp, match=why):
        canonical_timestamp(value)


def test_invalid_timestamp_is_a_value_error() -> None:
    assert issubclass(InvalidTimestamp, ValueError)


_aware_datetimes = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)


@FAST
@given(_aware_datetimes)
def test_postgres_text_output_and_datetime_agree(value: datetime) -> None:
    # What psql/COPY print for timestamptz with TimeZone=UTC: fraction trimmed, "+00".
    date = f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
    frac = f".{value.microsecond:06d}".rstrip("0").rstrip(".")
    pg_text = f"{date} {value:%H:%M:%S}{frac}+00"
    expected = f"{date}T{value:%H:%M:%S}.{value.microsecond:06d}Z"
    assert canonical_timestamp(pg_text) == expected
    assert canonical_timestamp(value) == expected
    assert canonical_timestamp(value.isoformat()) == expected
    assert canonical_timestamp(expected) == expected


# --- the fast step encoder -----------------------------------------------------------------


def _step(**overrides: Any) -> dict[str, Any]:
    step: dict[str, Any] = {
        "tenant_id": "tenant-demo",
        "run_id": "run-0001",
        "step_index": 0,
        "skill_id": "skill.http_call",
        "skill_name": "http_call",
        "params": {"url": "https://example.invalid/api", "method": "GET"},
        "status": "succeeded",
        "outcome_category": "success",
        "outcome_code": "200",
        "outcome_data": {"bytes": 1234, "ok": True},
        "cost_cents": 0.5,
        "duration_ms": 227.6,
        "retry_count": 0,
        "timestamp": "2026-02-09 10:00:00.123456+00",
    }
    step.update(overrides)
    return step


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"outcome_data": None, "outcome_code": None, "params": None},
        {"cost_cents": 10**21, "duration_ms": 9007199254740993, "retry_count": 2.0},
        {"cost_cents": Decimal("0.50"), "duration_ms": -0.0},
        {"run_id": UUID(int=7), "tenant_id": UUID(int=8)},
        {"skill_name": 'quote " and \\ and \n', "status": "ok\U0001f600"},
        {"timestamp": None},
        {"timestamp": datetime(2026, 2, 9, 10, 0, tzinfo=UTC)},
        {"params": {"\U0001f600": 1, "\ue000": [1.0, 1e-7]}},
    ],
)
def test_step_canonical_bytes_equals_canonicalized_step_record(overrides: dict[str, Any]) -> None:
    step = _step(**overrides)
    assert step_canonical_bytes(**step) == canonicalize(step_record(**step), strict=False)


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"cost_cents": math.nan}, "cost_cents"),
        ({"duration_ms": math.inf}, "duration_ms"),
        ({"params": {"x": [math.inf]}}, r"params\.x\[0\]"),
        ({"outcome_data": {"big": 10**400}}, r"outcome_data\.big"),
        ({"status": "lone \ud800"}, "status"),
    ],
)
def test_step_canonical_bytes_names_the_field_that_is_not_canonicalizable(
    overrides: dict[str, Any], where: str
) -> None:
    with pytest.raises(CanonicalizationError, match=where):
        step_canonical_bytes(**_step(**overrides))


_steps = st.fixed_dictionaries(
    {
        "tenant_id": strings,
        "run_id": strings,
        "step_index": st.integers(min_value=0, max_value=SAFE),
        "skill_id": st.one_of(st.none(), strings),
        "skill_name": st.one_of(st.none(), strings),
        "params": json_values,
        "status": st.one_of(st.none(), strings),
        "outcome_category": st.one_of(st.none(), strings),
        "outcome_code": st.one_of(st.none(), strings),
        "outcome_data": json_values,
        "cost_cents": st.one_of(st.none(), finite_floats, safe_ints),
        "duration_ms": st.one_of(st.none(), finite_floats, st.integers()),
        "retry_count": st.one_of(st.none(), safe_ints),
        "timestamp": _aware_datetimes,
    }
)


@LIGHT
@given(_steps)
def test_step_canonical_bytes_equals_the_record_path_on_random_steps(step: dict[str, Any]) -> None:
    expected = canonicalize(step_record(**step), strict=False)
    assert step_canonical_bytes(**step) == expected
    duration = step["duration_ms"]
    if not isinstance(duration, int) or abs(duration) <= SAFE:  # else the oracle refuses
        assert expected == rfc8785.dumps(step_record(**step))
