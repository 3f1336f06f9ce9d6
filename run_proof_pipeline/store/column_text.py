"""The value of one column from the text PostgreSQL prints for it, strictly by its type.

A proof reads every step column as text (COPY, store/snapshot.py) and takes each value here,
by the column's type (integrity/fields.py FIELD_TYPES): float8 and integer only in the form
those types print (store/relations.py refuses other column types first, and a longer number
than float8 prints can only come from another type, docs/stored-numbers.md), boolean as `t` /
`f`, jsonb exactly (format v2: every number exact, docs/hash-chain-v2.md). Anything else is a
StoredValueError, which the decoders turn into a FAILED step that names it.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from run_proof_pipeline.errors import ExitCode, RunProofError
from run_proof_pipeline.integrity import stored_number_problem
from run_proof_pipeline.integrity.canonical_v2 import (
    needs_exact_parse,
    parse_stored_json_v2,
    stored_nesting_problem_v2,
)

__all__ = [
    "INT_TEXT",
    "StoredValueError",
    "boolean_or_none",
    "exact_json_or_none",
    "float8_problem",
    "float_or_none",
    "int_or_none",
    "strict_float",
    "strict_int",
]


class StoredValueError(RunProofError, ValueError):
    """A stored number is not in the text form its column type prints."""

    exit_code = ExitCode.FAILED


# float8 as PostgreSQL prints it (extra_float_digits pinned, store/session_pins.py), and
# nothing else: Python's float() would also take ' +4.283e0 ', '1_0' or 'infinity' from a
# column whose type the owner changed (store/relations.py refuses those types first).
_FLOAT8_TEXT = re.compile(rb"-?(?:[0-9]+(?:\.[0-9]+)?(?:e[+-][0-9]+)?|Infinity)|NaN")
INT_TEXT = re.compile(rb"-?[0-9]+")
# No float8 output with at most this many characters breaks the stored-number rule (17
# digits, a sign and a point): only longer texts are checked digit by digit.
_FLOAT8_SHORT = 19


def float8_problem(raw: bytes) -> str | None:
    """Why `raw` is not text a float8 column prints, or None.  Beyond the form, float8
    prints at most 17 significant digits of a finite double (extra_float_digits pinned, store/
    session_pins.py): a longer, underflowing or overflowing number can only come from a column
    of another type (numeric), whose value the double would not be (docs/stored-numbers.md).
    """
    if not _FLOAT8_TEXT.fullmatch(raw):
        return f"{raw.decode('utf-8', 'replace')!r} is not a float8 value"
    if raw[-1:].isdigit() and len(raw) > _FLOAT8_SHORT:
        problem = stored_number_problem(raw.decode())
        if problem is not None:
            return f"not a float8 value: {problem}"
    return None


def strict_float(value: str | bytes) -> float:
    raw = value.encode() if isinstance(value, str) else value
    problem = float8_problem(raw)
    if problem is not None:
        raise StoredValueError(problem)
    return float(raw)


def strict_int(value: str | bytes) -> int:
    raw = value.encode() if isinstance(value, str) else value
    if not INT_TEXT.fullmatch(raw):
        raise StoredValueError(f"{raw.decode('utf-8', 'replace')!r} is not an integer value")
    return int(raw)


def float_or_none(value: str | None) -> float | None:
    return None if value is None else strict_float(value)


def int_or_none(value: str | None) -> int | None:
    return None if value is None else strict_int(value)


_BOOLEANS = {"t": True, "f": False}


def boolean_or_none(value: str | None) -> bool | None:
    """A boolean column as COPY text prints it (`t` / `f`)."""
    if value is None:
        return None
    try:
        return _BOOLEANS[value]
    except KeyError:
        raise StoredValueError(f"{value!r} is not a boolean value") from None


_loads = orjson.loads


def exact_json_or_none(value: str | None) -> Any:
    """A jsonb column's value with every number exact (parse_stored_json_v2).  orjson's
    parse stands in when it is exact for this text: the same test that
    canonicalize_stored_json_v2 applies (no exponent, no 16+ significant digits, no long
    digit run, nesting within the limit), so a number is never rounded."""
    if value is None:
        return None
    source = value.encode()
    if stored_nesting_problem_v2(source) is None and not needs_exact_parse(source):
        try:
            return _loads(source)
        except orjson.JSONDecodeError:
            pass  # e.g. an escaped lone surrogate: the exact parser reads (and names) it
    return parse_stored_json_v2(value)
