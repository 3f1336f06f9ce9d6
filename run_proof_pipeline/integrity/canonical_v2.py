"""C2: RFC 8785 (JCS) canonical JSON with exact numbers, the canonical form of hash-chain v2.

docs/hash-chain-v2.md, "Primitives": strings, keys (UTF-16 order) and nesting are as in
format v1 (integrity/canonical.py, whose helpers this module reuses); only numbers differ.
An `int` or `decimal.Decimal` is an exact decimal value x: it is written ES6(d) of the double
d nearest to x when that text's value equals x, else in its exact form (no exponent, no
trailing fraction zeros).  A `float` is a double (a float8 column) and is written ES6(d).
No finite number is refused; NaN and the infinities are.

orjson does the structural work, as in v1; a walk replaces every number orjson would print
differently by an int or an `orjson.Fragment`.  Nesting is bounded (docs/json-nesting.md)
before anything recurses, so a stored value of any depth is refused with a
CanonicalizationError naming its path, never a RecursionError.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import orjson

from run_proof_pipeline.integrity.canonical import (
    _LOW,
    _TINY,
    MAX_JSON_DEPTH,
    MAX_RECORD_DEPTH,
    MAX_SAFE_INTEGER,
    NATIVE_FRACTIONS,
    CanonicalizationError,
    FastPathRefused,
    UnrepresentableNesting,
    UnrepresentableNumber,
    _float_value,
    _source_bytes,
    es6_number,
    jcs_from_orjson,
    json_depth,
    json_text_depth,
    needs_utf16_key_order,
)

__all__ = [
    "canonicalize_stored_json_v2",
    "canonicalize_v2",
    "exact_form",
    "nesting_problem_v2",
    "number_v2",
    "parse_stored_json_v2",
]

_SORT = orjson.OPT_SORT_KEYS
_Fragment = orjson.Fragment
_dumps = orjson.dumps
_loads = orjson.loads
_ASTRAL = "\U00010000"
# Every integer of at most this magnitude is a double whose ES6 form is its digits.
_EXACT_DOUBLE_INT = 2**53
# int <-> str conversion is capped at sys.get_int_max_str_digits() (4300) digits; longer
# integers (jsonb allows 131072 digits) are converted through Decimal, which has no cap.
_INT_STR_SAFE_BITS = 14_000  # < 4300 decimal digits


# --- numbers --------------------------------------------------------------------------------


def _int_digits(value: int) -> str:
    """str(value) for an int of any size (the interpreter's 4300-digit cap avoided)."""
    if value.bit_length() <= _INT_STR_SAFE_BITS:
        return str(value)
    return format(Decimal(value), "f")


def exact_form(value: int | Decimal) -> str:
    """The spec's exact form of a finite decimal value: an optional `-`, the integer digits
    without leading zeros (`0` when none), then `.` and the fraction digits without trailing
    zeros when the fraction is not zero.  No exponent (docs/hash-chain-v2.md)."""
    if isinstance(value, int):
        return _int_digits(int(value))
    sign, digit_tuple, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        raise CanonicalizationError(f"{value} is not a finite number")
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    if not digits:
        return "0"
    if exponent >= 0:
        integer, fraction = digits + "0" * exponent, ""
    else:
        point = len(digits) + exponent  # digits before the decimal point
        if point > 0:
            integer, fraction = digits[:point], digits[point:]
        else:
            integer, fraction = "", "0" * (-point) + digits
        fraction = fraction.rstrip("0")
    text = (integer or "0") + ("." + fraction if fraction else "")
    return "-" + text if sign else text


def number_v2(x: int | Decimal) -> str:
    """C2 of the exact number x: ES6 of the nearest double when that text's value is x,
    else exact_form(x).  Never raises for a finite x (a nearest double that is infinite, or
    zero for x != 0, gives the exact form); raises CanonicalizationError for NaN/infinity."""
    if isinstance(x, bool):
        raise CanonicalizationError(f"{x!r} is a boolean, not a number")
    if isinstance(x, int):
        x = int(x)
        if -_EXACT_DOUBLE_INT <= x <= _EXACT_DOUBLE_INT:
            return str(x)
        try:
            d = float(x)  # correctly rounded, ties to even
        except OverflowError:
            return _int_digits(x)
        text = es6_number(d)
        # ES6 of a double beyond 2^53 is integral: digits, or `<m>e+<k>` from 1e21 on.
        same = (int(text) == x) if "e" not in text else (Decimal(text) == x)
        return text if same else _int_digits(x)
    if not isinstance(x, Decimal):
        raise CanonicalizationError(f"{type(x).__name__} is not an exact number (int/Decimal)")
    if not x.is_finite():
        raise CanonicalizationError(f"{x} is not a finite number")
    if x.is_zero():
        return "0"  # also -0: JCS writes negative zero as 0, and its value is 0
    d = float(x)  # via the decimal string: correctly rounded; inf / 0.0 beyond the range
    if d - d == 0.0 and d != 0.0:
        text = es6_number(d)
        if Decimal(text) == x:  # Decimal comparison is exact, whatever the context
            return text
    return exact_form(x)


def _float_text(value: float) -> str:
    if value - value != 0.0:
        raise CanonicalizationError(f"{value!r} is not a finite number")
    return es6_number(value)


# --- fast path: orjson with numbers replaced --------------------------------------------------


def _prepare(value: Any, check_keys: bool, depth: int) -> Any:
    """`value` with every number orjson would print unlike C2 replaced (int or Fragment).

    `depth` is the number of arrays/objects around `value`.  An array or object that would
    sit deeper than MAX_RECORD_DEPTH, or anything unexpected, raises FastPathRefused (the
    exact path then names it).  With check_keys, a dict whose keys hold astral characters is
    rendered by the pure-Python path (UTF-16 key order).  Containers are copied only when
    something inside them changed.
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
                    return _Fragment(_encode_py(value, depth))
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
            nv = _prepare(v, check_keys, depth + 1)
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
            nv = _prepare(v, check_keys, depth + 1)
            if nv is not v:
                if out is None:
                    out = list(value)
                out[i] = nv
        return value if out is None else out
    if t is str or value is None or t is bool:
        return value
    if t is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return value
        return _Fragment(number_v2(value))
    if t is float:
        if value - value != 0.0:
            raise FastPathRefused
        a = -value if value < 0.0 else value
        if (_LOW <= a < 1e16 or 0.0 < a < _TINY) and not value.is_integer():
            return value
        return _float_value(value)
    if t is Decimal:
        if not value.is_finite():
            raise FastPathRefused
        d = float(value)
        if repr(d) == str(value):
            # The stored text is the double's shortest repr (what JSON encoders write): its
            # value is ES6(d)'s, so C2 writes ES6(d), which orjson prints for d itself.
            return _prepare(d, check_keys, depth)
        return _Fragment(number_v2(value))
    return _prepare(_plain(value), check_keys, depth)


def _plain(value: Any) -> Any:
    """Plain-type view of a subclass (str enums, IntEnum, OrderedDict, ...), or
    FastPathRefused for anything that is not a JSON value."""
    if isinstance(value, (UnrepresentableNesting, UnrepresentableNumber)):
        if isinstance(value, UnrepresentableNumber):
            # v1's reader keeps the stored text of a number v1 refuses; v2 hashes it exactly.
            return Decimal(value.text)
        raise FastPathRefused  # _diagnose names it
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Decimal):
        return Decimal(value)
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    raise FastPathRefused


def canonicalize_v2(value: object) -> bytes:
    """C2 of a JSON value as UTF-8 bytes (docs/hash-chain-v2.md).

    bool is a JSON boolean; int and Decimal follow the exact-number rule; float is a double
    written ES6.  Raises CanonicalizationError, naming the JSON path, for NaN/infinity, a lone
    surrogate, a non-string key, a non-JSON type, or nesting deeper than MAX_RECORD_DEPTH
    (a record whose field nests deeper than MAX_JSON_DEPTH).
    """
    return canonicalize_v2_at(value, path="")


def canonicalize_v2_at(value: object, *, path: str) -> bytes:
    """canonicalize_v2() of a value sitting at `path` in a larger record (error messages)."""
    try:
        out = _dumps(_prepare(value, False, 0), option=_SORT)
        if needs_utf16_key_order(out):
            out = _dumps(_prepare(value, True, 0), option=_SORT)
        return out
    except (FastPathRefused, TypeError, CanonicalizationError, orjson.JSONEncodeError):
        # Too deep, invalid (the diagnosis names the path and raises), or orjson refused
        # something valid: pure Python then.  The walks are bounded by MAX_RECORD_DEPTH, so
        # no RecursionError can come from the value itself.
        _check_depth(value, path)
        _diagnose(value, path)
        return _encode_py(value, 0)


# --- pure-Python path -------------------------------------------------------------------------


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _encode_py(value: Any, depth: int) -> bytes:
    parts: list[bytes] = []
    try:
        _emit(value, parts, depth)
    except (FastPathRefused, TypeError, orjson.JSONEncodeError) as exc:
        _check_depth(value, "", depth)
        _diagnose(value, "")
        raise CanonicalizationError(f"cannot canonicalize value: {exc}") from exc
    return b"".join(parts)


def _emit(value: Any, parts: list[bytes], depth: int) -> None:
    """Append the C2 bytes of `value`, which sits inside `depth` arrays/objects."""
    t = type(value)
    if t is str or value is None or t is bool:
        parts.append(_dumps(value))
    elif t is float:
        parts.append(_float_text(value).encode())
    elif t is int or t is Decimal:
        parts.append(number_v2(value).encode())
    elif t is dict:
        if depth >= MAX_RECORD_DEPTH:
            raise FastPathRefused  # checked before recursing; _check_depth names it
        for k in value:
            if type(k) is not str:
                raise FastPathRefused
        parts.append(b"{")
        first = True
        for k in sorted(value, key=_utf16_key):
            if not first:
                parts.append(b",")
            first = False
            parts.append(_dumps(k))
            parts.append(b":")
            _emit(value[k], parts, depth + 1)
        parts.append(b"}")
    elif t is list or t is tuple:
        if depth >= MAX_RECORD_DEPTH:
            raise FastPathRefused
        parts.append(b"[")
        for i, v in enumerate(value):
            if i:
                parts.append(b",")
            _emit(v, parts, depth + 1)
        parts.append(b"]")
    else:
        _emit(_plain(value), parts, depth)


# --- diagnosis: which value, at which path -------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _where(path: str) -> str:
    return path or "(root)"


def nesting_problem_v2(depth: int, *, record: bool = False, measured: bool = True) -> str:
    """Why a JSON value (with `record`, a whole record) nested `depth` levels is refused;
    `measured=False` when json_depth() stopped counting (depth is then a floor)."""
    shown = str(depth) if measured else f"more than {depth - 1}"
    allowed = (
        f"the {MAX_RECORD_DEPTH} levels of a format-v2 record"
        if record
        else f"the {MAX_JSON_DEPTH} levels format v2 allows"
    )
    return f"JSON nested {shown} levels deep, more than {allowed} (docs/json-nesting.md)"


_MEASURED_UP_TO = 100_000


def _check_depth(value: Any, path: str, depth: int = 0) -> None:
    """CanonicalizationError when `value`, inside `depth` containers, takes the document past
    MAX_RECORD_DEPTH: names the record field that is too deep, or the root."""
    own = json_depth(value, _MEASURED_UP_TO)
    if depth + own <= MAX_RECORD_DEPTH:
        return
    if depth == 0 and isinstance(value, dict):
        key, child = max(
            ((k, json_depth(v, _MEASURED_UP_TO)) for k, v in value.items() if isinstance(k, str)),
            key=lambda kv: kv[1],
            default=(None, 0),
        )
        if key is not None and child > MAX_JSON_DEPTH:
            problem = nesting_problem_v2(child, measured=child <= _MEASURED_UP_TO)
            raise CanonicalizationError(f"{_join(path, key)}: {problem}")
    problem = nesting_problem_v2(depth + own, record=True, measured=own <= _MEASURED_UP_TO)
    raise CanonicalizationError(f"{_where(path)}: {problem}")


def _check_str(s: str, path: str, what: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise CanonicalizationError(
            f"{_where(path)}: {what} contains a lone surrogate (not valid Unicode text)"
        ) from None


def _diagnose(value: Any, path: str) -> None:
    """Raise CanonicalizationError naming the first invalid value's path; return if none.
    Iterative: call only after _check_depth (which bounds what it visits)."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        v, p = stack.pop()
        if v is None or isinstance(v, bool):
            continue
        if isinstance(v, UnrepresentableNesting):
            raise CanonicalizationError(f"{_where(p)}: {v.problem}")
        if isinstance(v, str):
            _check_str(v, p, "string")
        elif isinstance(v, UnrepresentableNumber):
            continue  # hashed exactly from its text
        elif isinstance(v, float):
            if v - v != 0.0:
                raise CanonicalizationError(f"{_where(p)}: {v!r} is not a finite number")
        elif isinstance(v, int):
            continue
        elif isinstance(v, Decimal):
            if not v.is_finite():
                raise CanonicalizationError(f"{_where(p)}: {v} is not a finite number")
        elif isinstance(v, dict):
            children: list[tuple[Any, str]] = []
            for k, child in v.items():
                if not isinstance(k, str):
                    raise CanonicalizationError(
                        f"{_where(p)}: object key {k!r} ({type(k).__name__}) is not a string"
                    )
                _check_str(k, p, f"key {k!r}")
                children.append((child, _join(p, k)))
            stack.extend(reversed(children))
        elif isinstance(v, (list, tuple)):
            stack.extend(reversed([(child, f"{p}[{i}]") for i, child in enumerate(v)]))
        else:
            raise CanonicalizationError(
                f"{_where(p)}: unsupported type {type(v).__name__} (JSON values only)"
            )


# --- stored JSON (jsonb text output) ---------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise CanonicalizationError(f"{name} is not a JSON number")


def _exact_int(text: str) -> int:
    if len(text) < 4000:
        return int(text)
    return int(Decimal(text))  # beyond the interpreter's int/str digit cap


def stored_nesting_problem_v2(text: str | bytes) -> str | None:
    if isinstance(text, bytes):
        brackets = text.count(b"[") + text.count(b"{")
    else:
        brackets = text.count("[") + text.count("{")
    if brackets <= MAX_JSON_DEPTH:
        return None
    depth = json_text_depth(text)
    return nesting_problem_v2(depth) if depth > MAX_JSON_DEPTH else None


def parse_stored_json_v2(text: str | bytes) -> object:
    """Parse JSON text (as PostgreSQL prints jsonb) keeping every number exact: integer
    literals become int, other numbers Decimal.  NaN/Infinity literals, invalid JSON and
    nesting deeper than MAX_JSON_DEPTH raise CanonicalizationError (the depth is measured
    on the text before any parse, so no depth can hit the recursion limit)."""
    problem = stored_nesting_problem_v2(text)
    if problem is not None:
        raise CanonicalizationError(problem)
    try:
        return json.loads(
            text,
            parse_float=Decimal,
            parse_int=_exact_int,
            parse_constant=_reject_constant,
        )
    except CanonicalizationError:
        raise
    except (ValueError, TypeError) as exc:
        raise CanonicalizationError(f"not a JSON text: {exc}") from None


# When orjson's doubles stand for the stored numbers exactly, orjson's parse is enough: a
# number literal with at most 15 significant digits and no exponent, shorter than 300 bytes,
# is within the normal range of doubles, and its nearest double's ES6 text is that same
# value (15 digits always round-trip), so C2 takes the ES6 branch for it.  A text with an
# exponent, a run of [0-9.] holding 16+ significant digits, or a run of 300+ bytes takes the
# exact parse.  Strings can trip these tests; that only costs the exact parse.
_RUN_16 = b"0" * 16
_EXPONENT = re.compile(rb"[0-9][eE]")


def _run_classes() -> bytes:
    table = bytearray(b" " * 256)
    for byte in b"0123456789.":
        table[byte] = ord("0")
    return bytes(table)


_RUN_CLASSES = _run_classes()
_LONG_RUN = 300


def needs_exact_parse(source: bytes) -> bool:
    if _EXPONENT.search(source) is not None:
        return True
    classes = source.translate(_RUN_CLASSES)
    start = classes.find(_RUN_16)
    while start >= 0:
        end = classes.find(b" ", start)
        if end < 0:
            end = len(classes)
        if end - start >= _LONG_RUN:
            return True
        digits = source[start:end].replace(b".", b"").strip(b"0")
        if len(digits) > 15:
            return True
        start = classes.find(_RUN_16, end)
    return False


def canonicalize_stored_json_v2(text: str | bytes) -> bytes:
    """canonicalize_v2(parse_stored_json_v2(text)), with orjson's parse when it is exact."""
    problem = stored_nesting_problem_v2(text)
    if problem is not None:
        raise CanonicalizationError(problem)
    source = _source_bytes(text)
    if not needs_exact_parse(source):
        try:
            value = _loads(text)
        except orjson.JSONDecodeError:
            value = None
        else:
            try:
                out = _dumps(value, option=_SORT)
            except orjson.JSONEncodeError:
                out = None
            if out is not None and NATIVE_FRACTIONS:
                # v1's check of orjson's output (integral floats, big ints, astral keys...)
                fast = jcs_from_orjson(out, value, b"")
                if fast is not None:
                    return fast
            return canonicalize_v2(value)
    return canonicalize_v2(parse_stored_json_v2(text))
