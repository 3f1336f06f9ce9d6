"""RFC 8785 (JCS) canonical JSON, exact, at close to orjson speed.

orjson does the structural work: its string escaping is byte-identical to JCS (checked for
every code point in the tests) and, for keys without astral characters, its key order
(code points) equals JCS's UTF-16 order.  A Python walk replaces only the numbers orjson
prints differently from ES6 -- integral floats (`1.0`, `1e16`), fractions in [1e-6, 1e-5),
and on the read path integers beyond 2^53 -- by an int or an `orjson.Fragment`.  A dict
whose keys hold astral characters is rendered by the pure-Python path, because UTF-16 puts
surrogate pairs (U+D800..) before U+E000..U+FFFF while code point order does not.

Nesting is bounded (docs/json-nesting.md): every walk here counts the levels it enters and
refuses a document deeper than MAX_RECORD_DEPTH before recursing further, so no stored value
can make canonicalization hit Python's recursion limit, and the verdict on a value never
depends on how deep the caller's own stack is.
"""

from __future__ import annotations

import json
import math
import re
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal
from itertools import accumulate
from typing import Any

import orjson

from run_proof_pipeline.errors import RunProofError

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_RECORD_DEPTH",
    "MAX_SAFE_INTEGER",
    "MAX_SIGNIFICANT_DIGITS",
    "CanonicalizationError",
    "FastPathRefused",
    "UnrepresentableNesting",
    "UnrepresentableNumber",
    "canonicalize",
    "canonicalize_at",
    "canonicalize_stored_json",
    "needs_utf16_key_order",
    "prepare_for_orjson",
    "es6_number",
    "json_depth",
    "json_text_depth",
    "nesting_problem",
    "parse_stored_json",
    "stored_nesting_problem",
    "stored_number_problem",
]

MAX_SAFE_INTEGER = 2**53 - 1

# JSON nesting (docs/json-nesting.md): a hashed JSON value (`plan`, `params`, `outcome_data`)
# nests at most MAX_JSON_DEPTH arrays/objects; the record around it adds one level.  Well
# inside every encoder the values pass through (orjson writes 254 levels, pydantic 254 with
# its own wrappers, Python's json and recursive walks ~1000 minus the caller's stack).
MAX_JSON_DEPTH = 128
MAX_RECORD_DEPTH = MAX_JSON_DEPTH + 1
# A Python value is measured up to this many levels (a value that contains itself has no
# depth); deeper ones are reported as "more than".
_DEPTH_MEASURED_UP_TO = 100_000

_SORT = orjson.OPT_SORT_KEYS
_Fragment = orjson.Fragment
_dumps = orjson.dumps
_ASTRAL = "\U00010000"
_ASTRAL_UTF8 = re.compile(b"[\xf0-\xf4]")  # lead bytes of 4-byte UTF-8 sequences


class CanonicalizationError(RunProofError, ValueError):
    """A value cannot be represented in RFC 8785 canonical JSON (the message names its path)."""


def es6_number(value: float) -> str:
    """ECMAScript Number::toString of a finite double, as RFC 8785 requires.

    repr() already yields the shortest round-tripping digits (the same digit string ES6
    picks); only the layout differs: ES6 switches to exponent form at 1e21 / 1e-7, Python
    at 1e16 / 1e-5, and ES6 writes no ".0" and no leading zeros in the exponent.
    """
    if value == 0.0:
        return "0"  # also -0.0: JCS serializes negative zero as 0
    if value - value != 0.0:  # nan for both infinities and nan
        raise CanonicalizationError(f"{value!r} is not a finite number")
    r = repr(value)
    if "e" not in r:
        return r[:-2] if r.endswith(".0") else r
    mantissa, _, exp_text = r.partition("e")
    sign = ""
    if mantissa[0] == "-":
        sign = "-"
        mantissa = mantissa[1:]
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).rstrip("0") or "0"
    k = len(digits)
    n = int(exp_text) + len(int_part)  # value = 0.digits * 10^n
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    exp_sign = "+" if e >= 0 else "-"
    if k == 1:
        return f"{sign}{digits}e{exp_sign}{abs(e)}"
    return f"{sign}{digits[0]}.{digits[1:]}e{exp_sign}{abs(e)}"


class FastPathRefused(Exception):
    """Internal signal: the fast walk met something it will not encode; take the slow path
    (which either encodes it exactly or raises CanonicalizationError naming its path)."""


def _float_text(value: float) -> str:
    if value - value != 0.0:
        raise FastPathRefused
    return es6_number(value)


def _orjson_prints_fractions_like_es6() -> bool:
    """orjson 3.11 prints every finite non-integral double outside [1e-6, 1e-5) exactly as
    ES6 does (measured over millions of values, and held to the rfc8785 oracle by the
    tests).  Should another orjson version differ on any probe, every float becomes a
    Fragment instead: slower, still exact."""
    probes = [0.5, -0.5, 227.6, 0.1, 1.25, 123456789.125, 1e15 + 0.5, 4503599627370495.5]
    probes += [0.00001, 0.000015, -2.5e-5, 0.0001, 0.001, 0.00009999999999999999]
    probes += [1e-7, 9.99e-7, 1.5e-7, 5e-324, 2.2250738585072014e-308, -1e-300, 3.14159e-100]
    probes += [x / 7 for x in range(1, 200)] + [10.0**e / 3 for e in range(-4, 16)]
    return all(_dumps(p) == es6_number(p).encode() for p in probes if not p.is_integer())


NATIVE_FRACTIONS = _orjson_prints_fractions_like_es6()
_LOW = 1e-5 if NATIVE_FRACTIONS else math.inf  # disables the native path when False
_TINY = 1e-6 if NATIVE_FRACTIONS else 0.0
_EXACT_INT_FLOAT = float(2**53)


def _float_value(value: float) -> Any:
    """What to hand orjson for a float it would not print as ES6 does."""
    if value.is_integer() and -_EXACT_INT_FLOAT <= value <= _EXACT_INT_FLOAT:
        return int(value)  # same digits, and orjson prints ints natively (-0.0 -> 0)
    return _Fragment(_float_text(value))


def prepare_for_orjson(value: Any, strict: bool, check_keys: bool = False, depth: int = 0) -> Any:
    """Return `value` with every number orjson would misprint replaced (int or Fragment).

    `depth` is the number of arrays/objects around `value` (1 for a record's field): an
    array or object that would sit deeper than MAX_RECORD_DEPTH raises FastPathRefused
    before it is entered, and canonicalize() then names the field and its depth.

    Also used by encoders in this package that assemble a larger value around `value`:
    they dump the result with OPT_SORT_KEYS, check the output with needs_utf16_key_order(),
    and on FastPathRefused or TypeError fall back to canonicalize() of the whole record.

    Containers are copied only when something inside them changed.  Strings and keys are
    not inspected unless check_keys: orjson rejects non-str keys and lone surrogates itself,
    and canonicalize() looks at its output for U+0000 and for astral characters (only then
    is the walk repeated with check_keys, to find dicts that need UTF-16 key order).
    Anything else unexpected raises FastPathRefused.
    """
    t = type(value)
    if t is dict:
        if depth >= MAX_RECORD_DEPTH:
            raise FastPathRefused
        if check_keys:
            for k in value:
                if type(k) is not str:
                    raise FastPathRefused
                if not k.isascii() and max(k) >= _ASTRAL:
                    return _Fragment(_encode_py(value, strict, depth))
        changed: dict[str, Any] | None = None
        for k, v in value.items():
            tv = type(v)
            if tv is str or v is None or tv is bool:
                continue
            if tv is int:
                if -MAX_SAFE_INTEGER <= v <= MAX_SAFE_INTEGER:
                    continue
            elif tv is float:
                a = -v if v < 0.0 else v
                if (_LOW <= a < 1e16 or 0.0 < a < _TINY) and not v.is_integer():
                    continue
            nv = prepare_for_orjson(v, strict, check_keys, depth + 1)
            if nv is not v:
                if changed is None:
                    changed = dict(value)
                changed[k] = nv
        return value if changed is None else changed
    if t is list or t is tuple:
        if depth >= MAX_RECORD_DEPTH:
            raise FastPathRefused
        out: list[Any] | None = None
        for i, v in enumerate(value):
            tv = type(v)
            if tv is str or v is None or tv is bool:
                continue
            if tv is int:
                if -MAX_SAFE_INTEGER <= v <= MAX_SAFE_INTEGER:
                    continue
            elif tv is float:
                a = -v if v < 0.0 else v
                if (_LOW <= a < 1e16 or 0.0 < a < _TINY) and not v.is_integer():
                    continue
            nv = prepare_for_orjson(v, strict, check_keys, depth + 1)
            if nv is not v:
                if out is None:
                    out = list(value)
                out[i] = nv
        if out is None:
            return value
        return out
    if t is str or value is None or t is bool:
        return value
    if t is float:
        a = -value if value < 0.0 else value
        if (_LOW <= a < 1e16 or 0.0 < a < _TINY) and not value.is_integer():
            return value
        return _float_value(value)
    if t is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return value
        if strict:
            raise FastPathRefused
        return _big_int_fragment(value)
    return prepare_for_orjson(_coerce_subclass(value, strict), strict, check_keys, depth)


def _big_int_text(value: int) -> str:
    # Read path: the stored integer denotes a double (jsonb keeps 1e21 as 10^21).
    try:
        as_float = float(value)
    except OverflowError:
        raise FastPathRefused from None
    return es6_number(as_float)


def _big_int_fragment(value: int) -> Any:
    return _Fragment(_big_int_text(value))


def _coerce_subclass(value: Any, strict: bool) -> Any:
    """Plain-type view of subclasses (str enums, OrderedDict, ...); FastPathRefused for other types.

    Decimal is accepted on the read path only: PostgreSQL numeric columns arrive as
    Decimal, and on read every number is taken as the double it denotes.
    """
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, (UnrepresentableNumber, UnrepresentableNesting)):
        raise FastPathRefused  # _diagnose names it
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    if not strict and isinstance(value, Decimal):
        if not value.is_finite():
            raise FastPathRefused
        return float(value)
    raise FastPathRefused


def needs_utf16_key_order(out: bytes) -> bool:
    """True when orjson output holds astral characters, so some key order may be wrong."""
    return not out.isascii() and _ASTRAL_UTF8.search(out) is not None


def canonicalize(value: object, *, strict: bool = True) -> bytes:
    """RFC 8785 canonical JSON of `value` as UTF-8 bytes.

    strict=True is the write path: values JCS cannot represent exactly are rejected.
    strict=False is the read path (values parsed back from jsonb): any integer is taken as
    the double it denotes; non-finite numbers are still rejected.
    Either way a document nested deeper than MAX_RECORD_DEPTH (a record whose JSON values
    nest deeper than MAX_JSON_DEPTH) is rejected, naming the field and its depth.
    """
    return canonicalize_at(value, strict=strict, path="")


def canonicalize_at(value: object, *, strict: bool, path: str) -> bytes:
    """canonicalize() of a value that sits at `path` in a larger record (for error messages)."""
    try:
        out = _dumps(prepare_for_orjson(value, strict, False), option=_SORT)
        if needs_utf16_key_order(out):
            # An astral character somewhere: keys holding one need UTF-16 order.
            out = _dumps(prepare_for_orjson(value, strict, True), option=_SORT)
    except (FastPathRefused, TypeError, CanonicalizationError):
        # The value is invalid (too deep, or diagnose names the path and raises), or orjson
        # refused something valid: pure Python then.  No RecursionError is caught: the walk
        # is bounded by MAX_RECORD_DEPTH, so one could only come from the caller's own
        # stack, and must not decide a verdict.
        _check_depth(value, path)
        _diagnose(value, strict, path)
        return _encode_py(value, strict)
    if strict and b"\\u0000" in out:
        _diagnose(value, strict, path)
    return out


# --- pure-Python path ---------------------------------------------------------------------


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _encode_py(value: Any, strict: bool, depth: int = 0) -> bytes:
    parts: list[bytes] = []
    try:
        _emit(value, strict, parts, depth)
    except (FastPathRefused, TypeError) as exc:
        _check_depth(value, "", depth)
        _diagnose(value, strict, "")
        raise CanonicalizationError(f"cannot canonicalize value: {exc}") from exc
    return b"".join(parts)


def _emit(value: Any, strict: bool, parts: list[bytes], depth: int) -> None:
    """Append the JCS bytes of `value`, which sits inside `depth` arrays/objects."""
    t = type(value)
    if t is str or value is None or t is bool:
        parts.append(_dumps(value))
    elif t is float:
        parts.append(_float_text(value).encode())
    elif t is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            parts.append(b"%d" % value)
        elif strict:
            raise FastPathRefused
        else:
            parts.append(_big_int_text(value).encode())
    elif t is dict:
        if depth >= MAX_RECORD_DEPTH:
            raise FastPathRefused  # checked before recursing: _check_depth names it
        for k in value:
            if not isinstance(k, str):
                raise FastPathRefused
        parts.append(b"{")
        first = True
        for k in sorted(value, key=_utf16_key):
            if not first:
                parts.append(b",")
            first = False
            parts.append(_dumps(k))
            parts.append(b":")
            _emit(value[k], strict, parts, depth + 1)
        parts.append(b"}")
    elif t is list or t is tuple:
        if depth >= MAX_RECORD_DEPTH:
            raise FastPathRefused
        parts.append(b"[")
        for i, v in enumerate(value):
            if i:
                parts.append(b",")
            _emit(v, strict, parts, depth + 1)
        parts.append(b"]")
    else:
        _emit(_coerce_subclass(value, strict), strict, parts, depth)


# --- diagnosis: slow, only runs once something has already gone wrong ----------------------


def _join(path: str, key: str) -> str:
    if key.isidentifier():
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key, ensure_ascii=True)}]"


def _where(path: str) -> str:
    return path or "(root)"


def _check_str(s: str, strict: bool, path: str, what: str) -> None:
    if strict and "\x00" in s:
        raise CanonicalizationError(f"{_where(path)}: {what} contains U+0000")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise CanonicalizationError(
            f"{_where(path)}: {what} contains a lone surrogate (not valid Unicode text)"
        ) from None


def _diagnose(value: Any, strict: bool, path: str) -> None:
    """Raise CanonicalizationError naming the first invalid value's path; return if none."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        v, p = stack.pop()
        if v is None or isinstance(v, bool):
            continue
        if isinstance(v, UnrepresentableNesting):
            raise CanonicalizationError(f"{_where(p)}: {v.problem}")
        if isinstance(v, str):
            _check_str(v, strict, p, "string")
        elif isinstance(v, UnrepresentableNumber):
            raise CanonicalizationError(f"{_where(p)}: {v.problem}")
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise CanonicalizationError(f"{_where(p)}: {v!r} is not a finite number")
        elif isinstance(v, int):
            if strict and not -MAX_SAFE_INTEGER <= v <= MAX_SAFE_INTEGER:
                raise CanonicalizationError(
                    f"{_where(p)}: integer {v} is outside +-(2^53-1) and would lose precision"
                )
            if not strict:
                try:
                    float(v)
                except OverflowError:
                    raise CanonicalizationError(
                        f"{_where(p)}: integer {v} is not a finite double"
                    ) from None
        elif isinstance(v, dict):
            children: list[tuple[Any, str]] = []
            for k, child in v.items():
                if not isinstance(k, str):
                    raise CanonicalizationError(
                        f"{_where(p)}: object key {k!r} ({type(k).__name__}) is not a string"
                    )
                _check_str(k, strict, p, f"key {k!r}")
                children.append((child, _join(p, k)))
            stack.extend(reversed(children))
        elif isinstance(v, (list, tuple)):
            stack.extend(reversed([(child, f"{p}[{i}]") for i, child in enumerate(v)]))
        elif not strict and isinstance(v, Decimal):
            if not v.is_finite():
                raise CanonicalizationError(f"{_where(p)}: {v} is not a finite number")
        else:
            raise CanonicalizationError(
                f"{_where(p)}: unsupported type {type(v).__name__} (JSON values only)"
            )


# --- nesting (docs/json-nesting.md) -------------------------------------------------------


def nesting_problem(depth: int, *, record: bool = False, measured: bool = True) -> str:
    """Why a JSON value (or with `record`, a whole record) nested `depth` levels deep is
    refused; `measured=False` when json_depth() stopped counting (then depth is a floor)."""
    shown = str(depth) if measured else f"more than {depth - 1}"
    allowed = (
        f"the {MAX_RECORD_DEPTH} levels of a format-v1 record"
        if record
        else f"the {MAX_JSON_DEPTH} levels format v1 allows"
    )
    return f"JSON nested {shown} levels deep, more than {allowed} (docs/json-nesting.md)"


def _containers(value: Any) -> Any:
    """The children of an array/object (plain or subclass), or None for anything else."""
    if isinstance(value, dict):
        return value.values()
    if isinstance(value, (list, tuple)):
        return value
    return None


def json_depth(value: Any, stop_above: int = _DEPTH_MEASURED_UP_TO) -> int:
    """How many arrays/objects nest in `value` (`1` and `"x"`: 0, `[]` and `{}`: 1,
    `{"a": [1]}`: 2), without recursion.  Stops once past `stop_above` (a value that
    contains itself would never end) and returns stop_above + 1 then."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, level = stack.pop()
        children = _containers(v)
        if children is None:
            continue
        if level > deepest:
            deepest = level
            if deepest > stop_above:
                return deepest
        stack.extend((c, level + 1) for c in children if _containers(c) is not None)
    return deepest


def _check_depth(value: Any, path: str, depth: int = 0) -> None:
    """Raise CanonicalizationError when `value`, inside `depth` arrays/objects, takes the
    document past MAX_RECORD_DEPTH; it names the record field whose JSON value is too deep
    (the deepest one) with that value's own depth, or the root for any other document."""
    own = json_depth(value)
    if depth + own <= MAX_RECORD_DEPTH:
        return
    if depth == 0 and isinstance(value, dict):
        key, child = max(
            ((k, json_depth(v)) for k, v in value.items() if isinstance(k, str)),
            key=lambda kv: kv[1],
            default=(None, 0),
        )
        if key is not None and child > MAX_JSON_DEPTH:
            problem = nesting_problem(child, measured=child <= _DEPTH_MEASURED_UP_TO)
            raise CanonicalizationError(f"{_join(path, key)}: {problem}")
    problem = nesting_problem(depth + own, record=True, measured=own <= _DEPTH_MEASURED_UP_TO)
    raise CanonicalizationError(f"{_where(path)}: {problem}")


# JSON text: strings are cut out (a bracket inside one is not nesting), then every bracket
# becomes +1 or -1 and the deepest running sum is the depth: C loops only (re, translate,
# accumulate over a signed-byte view), no parse, so any depth is measured.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_text_depth(text: str | bytes) -> int:
    """json_depth() of the value JSON `text` holds, measured on the text (any depth)."""
    source = _source_bytes(text)
    if b'"' in source:
        source = _JSON_STRING.sub(b"", source)
    steps = source.translate(_BRACKET_STEPS, _NOT_BRACKETS)
    return max(accumulate(memoryview(steps).cast("b")), default=0)


def _may_nest_too_deep(text: str | bytes) -> bool:
    """False when `text` certainly nests at most MAX_JSON_DEPTH levels (it has no more
    opening brackets than that, strings included): two C counts on the common path."""
    if isinstance(text, bytes):
        return text.count(b"[") + text.count(b"{") > MAX_JSON_DEPTH
    return text.count("[") + text.count("{") > MAX_JSON_DEPTH


def stored_nesting_problem(text: str | bytes) -> str | None:
    """Why the stored JSON `text` breaks the nesting rule, or None when it keeps it."""
    if not _may_nest_too_deep(text):
        return None
    depth = json_text_depth(text)
    return nesting_problem(depth) if depth > MAX_JSON_DEPTH else None


class UnrepresentableNesting(str):
    """A stored JSON value nested deeper than MAX_JSON_DEPTH, as parse_stored_json returns
    it (unparsed: some are too deep for any Python parser).  It reads as a short text saying
    so (summaries show it); canonicalize() refuses it, naming its path, so the step or
    header holding it fails instead of crashing the read."""

    __slots__ = ("problem",)
    problem: str

    def __new__(cls, problem: str) -> UnrepresentableNesting:
        self = super().__new__(cls, f"(not read: {problem})")
        self.problem = problem
        return self


# --- read path ----------------------------------------------------------------------------

# Stored numbers (docs/stored-numbers.md).  A JSON number denotes the double nearest to it,
# so many texts denote one double; the rule keeps the texts honest writers produce and
# refuses the rest, which would let a stored value change while its hash stays the same.
MAX_SIGNIFICANT_DIGITS = 17  # enough for every double (%.17g, shortest round trip)
_JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?")


_ABOUT = Context(prec=7, Emin=MIN_EMIN, Emax=MAX_EMAX)


def _shown(text: str) -> str:
    """The number as stored, shortened when long (jsonb writes 1e-400 as 0.000...0001)."""
    if len(text) <= 48:
        return text
    about = Decimal(text).normalize(_ABOUT)
    return f"{text[:24]}...{text[-12:]} ({len(text)} characters, ~{about:E})"


def stored_number_problem(text: str) -> str | None:
    """Why the JSON number `text` (as stored) breaks the stored-number rule; None if it keeps it.

    A stored number is accepted when it is finite as a double, does not round a non-zero
    value to zero, and either has at most 17 significant digits or is the exact decimal
    value of a double.
    """
    match = _JSON_NUMBER.fullmatch(text)
    if match is None:
        return f"{_shown(text)!r} is not a JSON number"
    value = float(text)  # correctly rounded, like every conforming JSON reader
    if value - value != 0.0:
        return f"number {_shown(text)} is not a finite double (it overflows to {value})"
    digits = (match.group(1) + (match.group(2) or "")).strip("0")
    if value == 0.0:
        if digits:
            return f"number {_shown(text)} is not zero but underflows to zero as a double"
        return None  # 0, -0, 0.0, 0e5: zero written as zero
    if len(digits) > MAX_SIGNIFICANT_DIGITS and Decimal(text) != Decimal(value):
        return (
            f"number {_shown(text)} has {len(digits)} significant digits and is not the exact"
            f" value of a double (at most {MAX_SIGNIFICANT_DIGITS}, or a double's exact"
            f" decimal value; it reads as {es6_number(value)})"
        )
    return None


class UnrepresentableNumber(float):
    """A stored number that breaks the stored-number rule, as parse_stored_json returns it.

    It is the double the text denotes (so displays and summaries still work), and carries
    the text and the reason; canonicalize() refuses it, naming its path and the reason, so
    the step holding it fails instead of hashing as the double it rounds to.
    """

    __slots__ = ("problem", "text")
    problem: str
    text: str

    def __new__(cls, text: str, problem: str) -> UnrepresentableNumber:
        self = super().__new__(cls, float(text))
        self.text = text
        self.problem = problem
        return self

    def __repr__(self) -> str:
        return f"UnrepresentableNumber({self.text!r})"


def _checked_number(text: str) -> Any:
    problem = stored_number_problem(text)
    if problem is not None:
        return UnrepresentableNumber(text, problem)
    if "." in text or "e" in text or "E" in text:
        return float(text)
    return int(text)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_checked(text: str | bytes) -> object:
    """The exact parse: every number token is checked against the rule (slow, rare)."""
    return json.loads(
        text,
        parse_float=_checked_number,
        parse_int=_checked_number,
        parse_constant=_reject_constant,
    )


# Which stored texts may hold a number the rule refuses, found without tokenizing.  A refused
# number without an exponent has 18 or more digits from its first non-zero digit on (more
# than 17 significant), or hundreds of leading zeros (an underflow); either way its token is
# a run of at least 18 bytes of [0-9.].  One translate() finds such runs; only a run whose
# digits from the first non-zero one number 18 or more, or one of 300 bytes or more, makes
# the text suspect, so the common 17-digit fraction `0.30000000000000004` stays fast.
# A refused number with fewer digits has an exponent: overflowing ones orjson refuses;
# underflowing ones read as 0.0 and need a negative exponent of two digits or more (with
# one digit, the 300 leading zeros it would take make a long run).  Strings can trip these
# tests; that only costs the exact parse, never a wrong verdict.
def _digit_run_classes() -> bytes:
    table = bytearray(b" " * 256)
    for byte in b"0123456789.":
        table[byte] = ord("0")
    return bytes(table)


_DIGIT_RUN = _digit_run_classes()
_RUN = b"0" * (MAX_SIGNIFICANT_DIGITS + 1)
_UNDERFLOW_RUN = 300  # [0-9.] bytes; a double's smallest non-zero value needs 324 digits
_LONG_EXPONENT = re.compile(rb"[0-9][eE]-[0-9]{2}")


def _source_bytes(text: str | bytes) -> bytes:
    return text if type(text) is bytes else str(text).encode("utf-8", "surrogatepass")


def _long_digit_run(source: bytes) -> bool:
    classes = source.translate(_DIGIT_RUN)
    start = classes.find(_RUN)
    while start >= 0:
        end = classes.find(b" ", start)
        if end < 0:
            end = len(classes)
        if end - start >= _UNDERFLOW_RUN:
            return True
        digits = source[start:end].replace(b".", b"").lstrip(b"0")
        if len(digits) > MAX_SIGNIFICANT_DIGITS:
            return True
        start = classes.find(_RUN, end)
    return False


def _negative_long_exponent(source: bytes) -> bool:
    return (b"e-" in source or b"E-" in source) and _LONG_EXPONENT.search(source) is not None


def _may_break_number_rule(source: bytes) -> bool:
    return _long_digit_run(source) or _negative_long_exponent(source)


def parse_stored_json(text: str | bytes) -> object:
    """Parse JSON text as PostgreSQL returns it (jsonb text output).

    orjson handles nearly everything (it reads integers beyond 64 bits as doubles, which is
    what they denote).  When it refuses -- an overflowing number such as 1e400, or an
    escaped lone surrogate -- or when the text may hold a number the stored-number rule
    refuses, the standard library parses it with every number checked: a refused number
    becomes an UnrepresentableNumber, which canonicalize() rejects, so the step is reported
    as unverifiable (naming the value) instead of crashing the read or hashing a look-alike.
    A text nested deeper than MAX_JSON_DEPTH is not parsed at all: it becomes an
    UnrepresentableNesting, which canonicalize() rejects in the same way.
    """
    problem = stored_nesting_problem(text)
    if problem is not None:
        return UnrepresentableNesting(problem)
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _parse_checked(text)
    if _may_break_number_rule(_source_bytes(text)):
        return _parse_checked(text)
    return value


# Where orjson's output of a parsed JSON value may differ from JCS: an exponent or an
# integral float (`1e+16`, `1.0`, `1e-6`), an integer of 16+ digits (beyond 2^53 it denotes
# a rounded double), or an astral character (UTF-16 key order).  Strings can trip these
# checks too ("v1.0", "re-3e-5"); that only costs the exact walk, never a wrong byte.
# One translate() makes the first three plain substring tests: digits become '0', the bytes
# that can start a number token or an exponent sign become ':', 4-byte UTF-8 leads 0xF0.
def _token_classes() -> bytes:
    table = bytearray(range(256))
    for byte in b"0123456789":
        table[byte] = ord("0")
    for byte in b",[-+:":
        table[byte] = ord(":")
    for byte in range(0xF0, 0xF5):
        table[byte] = 0xF0
    return bytes(table)


_CLASSES = _token_classes()
_EXPONENT = b"0e:0"
_BIG_INTEGER = b":" + b"0" * 16  # a long fraction follows '.', not ':'
_INTEGRAL_FLOAT = re.compile(rb"\.0(?![0-9])")
_FRACTION = b"0.0"  # in _CLASSES terms: a digit, a point, a digit
_orjson_loads = orjson.loads


# An integral double below 1e16 is the one form left that orjson writes unlike JCS: `12.0`
# where JCS writes `12`.  In orjson's compact output a number token ends at `,` `}` or `]`,
# so dropping `.0` before those is right for numbers; the same bytes in a string would
# change the string, which re-parsing the result shows (12 == 12.0 in Python, but no edited
# string equals its original).  -0.0 (JCS: `0`) is left to the walk.


def jcs_from_orjson(out: bytes, value: object, source: bytes | None = None) -> bytes | None:
    """JCS bytes of `value` from orjson's sorted output `out`, or None when only the walk
    can tell (exponents, big integers, astral keys, -0.0, `.0` inside a string).

    `source` is the stored text `value` was parsed from: None also when it may hold a number
    the stored-number rule refuses (orjson's output of such a number is the double it rounds
    to, so `out` alone cannot show it).  A refused number with a short mantissa underflows
    (to 0.0 or -0.0, which `out` shows) or overflows (orjson refuses it), so the exponent
    test runs only when `out` holds a zero.  Without `source`, any double in `out` might
    stand for such a number: None then for every output holding a fraction (slower, exact).
    """
    if source is not None and (
        _long_digit_run(source) or (b"0.0" in out and _negative_long_exponent(source))
    ):
        return None
    classes = out.translate(_CLASSES)
    if (
        (source is None and _FRACTION in classes)
        or _EXPONENT in classes
        or _BIG_INTEGER in classes
        or b"\xf0" in classes
        or classes[0] == 0x30  # a bare top-level number...
        or out[0] == 0x2D  # ...or a negative one
    ):
        return None
    if _INTEGRAL_FLOAT.search(out) is None:
        return out
    if b"-0.0" in out:
        return None
    fixed = out.replace(b".0,", b",").replace(b".0}", b"}").replace(b".0]", b"]")
    return fixed if _orjson_loads(fixed) == value else None


def canonicalize_stored_json(text: bytes | str) -> bytes:
    """canonicalize(parse_stored_json(text), strict=False), for JSON text read from storage.

    A parsed value holds only dict, list, str, int, float, bool and None, so orjson's output
    is JCS unless it shows one of the forms above, or the text may hold a number the
    stored-number rule refuses; only then does the exact path run (which raises
    CanonicalizationError naming a refused number).  A text nested deeper than
    MAX_JSON_DEPTH raises CanonicalizationError before it is parsed.
    """
    problem = stored_nesting_problem(text)
    if problem is not None:
        raise CanonicalizationError(problem)
    try:
        value = _orjson_loads(text)
    except orjson.JSONDecodeError:
        return canonicalize(parse_stored_json(text), strict=False)
    source = _source_bytes(text)
    if NATIVE_FRACTIONS:
        try:
            out = _dumps(value, option=_SORT)
        except orjson.JSONEncodeError:  # not expected (nesting is bounded above): exact path
            return canonicalize(parse_stored_json(text), strict=False)
        exact = jcs_from_orjson(out, value, source)
        if exact is not None:
            return exact
    if _may_break_number_rule(source):
        value = _parse_checked(text)
    return canonicalize(value, strict=False)
