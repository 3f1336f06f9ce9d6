"""C2, the canonical JSON of hash-chain v2 (docs/hash-chain-v2.md, "Primitives").

On values holding only doubles (and integers within +-(2^53-1)) C2 is RFC 8785: the
`rfc8785` package is the oracle.  Exact numbers (int, Decimal) are held to the spec's rule:
the text's decimal value is always the number's, so the rule is injective; the exact branch
has no exponent and no superfluous zeros; the ES6 branch is ES6 of the nearest double.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from run_proof_pipeline.integrity import (
    CanonicalizationError,
    canonicalize_stored_json_v2,
    canonicalize_v2,
    es6_number,
    number_v2,
    parse_stored_json_v2,
    step_canonical_v2,
    step_record_v2,
)
from run_proof_pipeline.integrity.canonical import MAX_JSON_DEPTH, MAX_RECORD_DEPTH
from run_proof_pipeline.integrity.canonical_v2 import _encode_py, exact_form
from run_proof_pipeline.integrity.vectors import json_text_exact

SAFE = 2**53 - 1
FAST = settings(max_examples=300, deadline=None, database=None)
LIGHT = settings(max_examples=100, deadline=None, database=None)

# --- strategies ----------------------------------------------------------------------------

# Astral characters and U+E000..U+FFFF are where UTF-16 order and code point order disagree.
key_chars = st.one_of(
    st.characters(min_codepoint=0x01, max_codepoint=0x7F),
    st.characters(min_codepoint=0xE000, max_codepoint=0xFFFF, exclude_categories=["Cs"]),
    st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF),
    st.characters(min_codepoint=0x00, exclude_categories=["Cs"]),
)
keys = st.text(key_chars, max_size=6)
strings = st.text(st.characters(min_codepoint=0x00, exclude_categories=["Cs"]), max_size=12)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
safe_ints = st.integers(min_value=-SAFE, max_value=SAFE)


def _json(scalars: st.SearchStrategy[Any], leaves: int = 40) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=5), st.dictionaries(keys, children, max_size=6)
        ),
        max_leaves=leaves,
    )


double_json = _json(st.one_of(st.none(), st.booleans(), safe_ints, finite_floats, strings))

# Decimals of every kind: short and long coefficients, tiny and huge exponents (beyond the
# doubles' range both ways), trailing zeros, negative zero.
decimals = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False),
    st.builds(
        lambda digits, exp, neg: Decimal(f"{'-' if neg else ''}{digits}e{exp}"),
        st.integers(min_value=0, max_value=10**40),
        st.integers(min_value=-420, max_value=420),
        st.booleans(),
    ),
    finite_floats.map(lambda f: Decimal(repr(f))),  # what JSON encoders write
    finite_floats.map(Decimal),  # a double's exact decimal value
)
big_ints = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.integers(min_value=0, max_value=1200).map(lambda e: 10**e),
    st.integers(min_value=53, max_value=1100).map(lambda e: 2**e + st_offset(e)),
)


def st_offset(e: int) -> int:
    return e % 3 - 1  # 2^e - 1, 2^e, 2^e + 1


exact_numbers = st.one_of(decimals, big_ints)
exact_json = _json(
    st.one_of(st.none(), st.booleans(), exact_numbers, finite_floats, strings), leaves=20
)


# --- double-only values are RFC 8785 -----------------------------------------------------------


@FAST
@given(double_json)
def test_double_only_values_are_rfc8785(value: Any) -> None:
    assert canonicalize_v2(value) == rfc8785.dumps(value)


@LIGHT
@given(double_json)
def test_double_only_values_pure_python_path_is_rfc8785(value: Any) -> None:
    assert _encode_py(value, 0) == rfc8785.dumps(value)


@FAST
@given(finite_floats)
def test_a_double_written_as_json_is_the_es6_branch(f: float) -> None:
    """Everything a JSON encoder writes for a double takes the ES6 branch (spec)."""
    for text in (repr(f), json.dumps(f), orjson.dumps(f).decode()):
        assert number_v2(Decimal(text)) == es6_number(f) == rfc8785.dumps(f).decode()


# --- the exact-number rule ---------------------------------------------------------------------

_EXACT = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?")


def _branch_holds(x: int | Decimal, text: str) -> None:
    assert Decimal(text) == x  # nothing rounded: the text's value is the number's
    d = float(Decimal(x))
    if d - d == 0.0 and d != 0.0 and Decimal(es6_number(d)) == x:
        assert text == es6_number(d)  # the ES6 branch, plain RFC 8785
        assert float(text) == d  # and it round-trips to the nearest double
    elif x == 0:
        assert text == "0"
    else:
        assert _EXACT.fullmatch(text), text  # no exponent, no leading/trailing zeros
        assert text == exact_form(x)


@FAST
@given(exact_numbers)
def test_number_v2_follows_the_rule(x: int | Decimal) -> None:
    _branch_holds(x, number_v2(x))


@FAST
@given(exact_numbers, exact_numbers)
def test_number_v2_is_injective(x: int | Decimal, y: int | Decimal) -> None:
    assume(Decimal(x) != Decimal(y))
    assert number_v2(x) != number_v2(y)


@FAST
@given(exact_numbers)
def test_equal_values_write_alike(x: int | Decimal) -> None:
    """1.50 and 1.5 (and an int and its Decimal) are the same value, written alike."""
    as_decimal = Decimal(x)
    sign, digits, exponent = as_decimal.as_tuple()
    assert isinstance(exponent, int)
    padded = Decimal((sign, (*digits, 0, 0), exponent - 2))  # two more trailing zeros
    assert padded == as_decimal
    assert number_v2(padded) == number_v2(as_decimal) == number_v2(x)
    if as_decimal == as_decimal.to_integral_value() and as_decimal.adjusted() < 1500:
        assert number_v2(int(as_decimal)) == number_v2(x)


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        (9007199254740993, "9007199254740993"),  # v1 hashed 9007199254740992
        (2**53, "9007199254740992"),
        (2**64, "18446744073709551616"),  # ES6 writes 18446744073709552000
        (18446744073709552000, "18446744073709552000"),  # that one is ES6's text: ES6 branch
        (10**22, "1e+22"),
        (10**21, "1e+21"),
        (10**23, "1e+23"),
        (9223372036854775807, "9223372036854775807"),
        (-(2**63), "-9223372036854775808"),
        (Decimal("1e400"), "1" + "0" * 400),
        (Decimal("-1e400"), "-1" + "0" * 400),
        (Decimal("1e-400"), "0." + "0" * 399 + "1"),
        (Decimal("0.10000000000000001"), "0.10000000000000001"),
        (Decimal("0.1"), "0.1"),
        (Decimal("1.50"), "1.5"),
        (Decimal("1.500000000000000000000000000000"), "1.5"),
        (Decimal("-0.0"), "0"),
        (Decimal("-0"), "0"),
        (Decimal("0E+10"), "0"),
        (Decimal("1e21"), "1e+21"),
        (Decimal("1e-7"), "1e-7"),
        (Decimal("5e-324"), "5e-324"),
        (Decimal("2e-324"), "0." + "0" * 323 + "2"),  # rounds to 0.0 as a double: exact
        (Decimal("1.8e308"), "18" + "0" * 307),  # beyond the largest double: exact
        (Decimal("100"), "100"),
        (Decimal("1E+2"), "100"),
        (Decimal("123.4500"), "123.45"),
        (Decimal("0.30000000000000004"), "0.30000000000000004"),
        (Decimal("0.3000000000000000444"), "0.3000000000000000444"),
    ],
)
def test_spec_examples(x: int | Decimal, expected: str) -> None:
    assert number_v2(x) == expected
    _branch_holds(x, expected)


def test_huge_integers_beyond_the_interpreter_digit_cap() -> None:
    big = 10**5000 + 7
    assert number_v2(big) == "1" + "0" * 4999 + "7"
    assert number_v2(-big) == "-1" + "0" * 4999 + "7"
    text = "[" + "9" * 6000 + "]"
    assert canonicalize_stored_json_v2(text) == text.encode()
    assert parse_stored_json_v2(text) == [10**6000 - 1]


@pytest.mark.parametrize("bad", [Decimal("NaN"), Decimal("-Infinity"), Decimal("sNaN")])
def test_non_finite_decimals_are_refused(bad: Decimal) -> None:
    with pytest.raises(CanonicalizationError):
        number_v2(bad)
    with pytest.raises(CanonicalizationError, match=r"^x\[1\]: "):
        canonicalize_v2({"x": [1, bad]})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_doubles_are_refused_naming_the_path(bad: float) -> None:
    with pytest.raises(CanonicalizationError, match=r"^a\.b\[0\]: .* is not a finite number"):
        canonicalize_v2({"a": {"b": [bad]}})


def test_booleans_are_not_numbers() -> None:
    assert canonicalize_v2([True, False, 1, 0]) == b"[true,false,1,0]"
    with pytest.raises(CanonicalizationError):
        number_v2(True)


# --- the whole value ---------------------------------------------------------------------------


@LIGHT
@given(exact_json)
def test_fast_and_pure_python_paths_agree(value: Any) -> None:
    assert canonicalize_v2(value) == _encode_py(value, 0)


@LIGHT
@given(exact_json)
def test_output_is_json_holding_the_same_values(value: Any) -> None:
    out = canonicalize_v2(value)
    back = json.loads(out, parse_float=Decimal, parse_int=int)
    assert canonicalize_v2(back) == out  # idempotent on its own output
    assert _numbers(back) == _numbers(value)


def _numbers(value: Any) -> list[Decimal]:
    """Every number of a value as an exact Decimal (floats: the double's exact value
    written by ES6, i.e. what C2 says it is), in document order."""
    out: list[Decimal] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, bool) or v is None or isinstance(v, str):
            continue
        if isinstance(v, float):
            out.append(Decimal(es6_number(v)))
        elif isinstance(v, (int, Decimal)):
            out.append(Decimal(v))
        elif isinstance(v, dict):
            stack.extend(v[k] for k in sorted(v, key=lambda k: k.encode("utf-16-be")))
        else:
            stack.extend(v)
    return sorted(out)


def test_keys_are_in_utf16_order() -> None:
    value = {"\uff61": 1, "\U0001f600": 2, "a": 3, "\u00e9": 4}
    assert canonicalize_v2(value) == '{"a":3,"é":4,"😀":2,"｡":1}'.encode()


def test_strings_are_escaped_as_rfc8785() -> None:
    value = {"s": 'q"b\\\t\n\x00\x1f\u2028\U0001f600'}
    assert canonicalize_v2(value) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"a": {1: 2}}, "a"),
        ({"a": ["\ud800"]}, r"a\[0\]"),
        ({"a": [object()]}, r"a\[0\]"),
        ({"\udc00": 1}, r"\(root\)"),
    ],
)
def test_invalid_values_are_refused_naming_their_path(value: Any, path: str) -> None:
    with pytest.raises(CanonicalizationError, match=f"^{path}: "):
        canonicalize_v2(value)


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_limit() -> None:
    assert canonicalize_v2({"params": _nested(MAX_JSON_DEPTH)})  # a record: 129 levels
    with pytest.raises(CanonicalizationError, match=r"^params: JSON nested 129 levels deep"):
        canonicalize_v2({"params": _nested(MAX_JSON_DEPTH + 1)})
    assert canonicalize_v2(_nested(MAX_RECORD_DEPTH))
    with pytest.raises(CanonicalizationError, match=r"^\(root\): JSON nested 130 levels"):
        canonicalize_v2(_nested(MAX_RECORD_DEPTH + 1))


def test_ten_thousand_levels_never_hit_the_recursion_limit() -> None:
    with pytest.raises(CanonicalizationError, match=r"^params: JSON nested 10000 levels"):
        canonicalize_v2({"params": _nested(10_000)})
    text = "[" * 10_000 + "]" * 10_000
    for parse in (parse_stored_json_v2, canonicalize_stored_json_v2):
        with pytest.raises(CanonicalizationError, match="JSON nested 10000 levels deep"):
            parse(text)


# --- stored JSON -------------------------------------------------------------------------------


def test_parse_keeps_numbers_exact() -> None:
    value = parse_stored_json_v2('{"a": 1.50, "b": 9007199254740993, "c": 1e400, "d": -0}')
    assert value == {"a": Decimal("1.50"), "b": 9007199254740993, "c": Decimal("1e400"), "d": 0}
    assert type(value["b"]) is int and type(value["a"]) is Decimal  # type: ignore[index]
    assert parse_stored_json_v2(b"[0.1]") == [Decimal("0.1")]


@pytest.mark.parametrize("text", ["[NaN]", "[Infinity]", '{"a": -Infinity}', "[1,", "nope", ""])
def test_parse_refuses_what_is_not_json(text: str) -> None:
    with pytest.raises(CanonicalizationError):
        parse_stored_json_v2(text)
    with pytest.raises(CanonicalizationError):
        canonicalize_stored_json_v2(text)


@LIGHT
@given(exact_json)
def test_stored_text_canonicalizes_as_its_parse(value: Any) -> None:
    for text in (json_text_exact(value), json_text_exact(value, indent=2)):
        parsed = parse_stored_json_v2(text)
        assert canonicalize_stored_json_v2(text) == canonicalize_v2(parsed)
        assert canonicalize_v2(parsed) == canonicalize_v2(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # as PostgreSQL prints jsonb: no exponents, numeric's own scale
        ('{"b": 1.50, "a": 12.0}', '{"a":12,"b":1.5}'),
        ("[0.10000000000000001]", "[0.10000000000000001]"),
        ("[0.1000000000000000055511151231257827]", "[0.1000000000000000055511151231257827]"),
        ("[1" + "0" * 400 + "]", "[1" + "0" * 400 + "]"),
        ("[0.0000001]", "[1e-7]"),
        ("[1" + "0" * 21 + "]", "[1e+21]"),
        ("[-0.0, -0]", "[0,0]"),
        ("[9007199254740993]", "[9007199254740993]"),
        ("[123456789012345.6]", "[123456789012345.6]"),
        ('["1e400 in a string", 1e400]', '["1e400 in a string",1' + "0" * 400 + "]"),
    ],
)
def test_stored_texts(text: str, expected: str) -> None:
    assert canonicalize_stored_json_v2(text) == expected.encode()
    assert canonicalize_v2(parse_stored_json_v2(text)) == expected.encode()


# --- the fast step encoder ------------------------------------------------------------------

_STEP = {
    "tenant_id": "t",
    "run_id": "r",
    "trace_id": "trace_r",
    "step_index": 0,
    "skill_id": "s",
    "skill_name": "s",
    "params": {"a": 1},
    "status": "succeeded",
    "outcome_category": "success",
    "outcome_code": None,
    "outcome_data": None,
    "cost_cents": 0.5,
    "duration_ms": 1.0,
    "retry_count": 0,
    "timestamp": "2026-02-09 10:00:00.5+00",
    "input_hash": None,
    "output_hash": None,
    "rng_state_before": None,
    "idempotency_key": None,
    "replay_behavior": "execute",
    "source": "engine",
    "level": "INFO",
    "is_synthetic": False,
    "synthetic_scenario_id": None,
}


@LIGHT
@given(exact_json, exact_json, st.one_of(finite_floats, safe_ints, decimals))
def test_step_canonical_v2_is_c2_of_the_record(params: Any, data: Any, cost: Any) -> None:
    fields = {**_STEP, "params": params, "outcome_data": data, "cost_cents": cost}
    try:
        double = float(cost)
    except OverflowError:
        double = float("inf")
    if double - double != 0.0:
        with pytest.raises(CanonicalizationError, match="^cost_cents: .* beyond the range"):
            step_canonical_v2(**fields)
        return
    expected = canonicalize_v2(step_record_v2(**fields))
    assert step_canonical_v2(**fields) == expected


def test_double_columns_are_the_double_they_hold() -> None:
    """A double precision column holds a double: an int or Decimal given for one is written
    as ES6 of that double, as the database would (9007199254740993 is stored ...992)."""
    as_int = step_canonical_v2(**{**_STEP, "cost_cents": 9007199254740993})
    as_float = step_canonical_v2(**{**_STEP, "cost_cents": 9007199254740992.0})
    assert as_int == as_float
    assert b'"cost_cents":9007199254740992,' in as_int
    with pytest.raises(CanonicalizationError, match="^cost_cents: "):
        step_canonical_v2(**{**_STEP, "cost_cents": float("nan")})
