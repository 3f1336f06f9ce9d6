"""Canonical JSON (C, format v1) straight from the bytes COPY sends for one column, for the
fast line decoder (store/step_line_decoder.py).

Each function takes a column's stored bytes and returns its canonical JSON, or None (or
raises CanonicalizationError) when the value needs the general path, which names what is
wrong: text as a JSON string, float8 as ES6, an integer within the safe range, a calendar
minute of a timestamptz, and the two JSON columns of a step together.
"""

from __future__ import annotations

from datetime import date

import orjson

from run_proof_pipeline.integrity import MAX_SAFE_INTEGER, CanonicalizationError, es6_number
from run_proof_pipeline.integrity.canonical import (
    MAX_RECORD_DEPTH,
    NATIVE_FRACTIONS,
    canonicalize_stored_json,
    jcs_from_orjson,
    stored_nesting_problem,
)
from run_proof_pipeline.store.column_text import INT_TEXT, float8_problem

__all__ = [
    "canonical_float8",
    "canonical_int",
    "canonical_payloads",
    "canonical_string",
    "valid_minute",
]

_loads = orjson.loads
_dumps = orjson.dumps
_SORT = orjson.OPT_SORT_KEYS


def canonical_string(value: bytes) -> bytes | None:
    try:
        return orjson.dumps(value.decode("utf-8"))  # orjson's escaping is JCS's
    except (UnicodeDecodeError, orjson.JSONEncodeError):
        return None


def canonical_float8(value: bytes) -> bytes | None:
    if float8_problem(value) is not None:
        return None  # the general path names the step
    try:
        return es6_number(float(value)).encode()
    except (ValueError, CanonicalizationError):
        return None  # NaN / Infinity: the general path names the step


def canonical_int(value: bytes) -> bytes | None:
    if not INT_TEXT.fullmatch(value):
        return None
    number = int(value)
    return b"%d" % number if -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER else None


def valid_minute(minute: bytes) -> bool:
    """`YYYY-MM-DD HH:MM` naming a real calendar minute (years 1-9999)."""
    if len(minute) != 16 or minute[4] != 0x2D or minute[7] != 0x2D or minute[10] != 0x20:
        return False
    if minute[13] != 0x3A:
        return False
    digits = minute[:4] + minute[5:7] + minute[8:10] + minute[11:13] + minute[14:16]
    if not digits.isdigit():
        return False
    try:
        date(int(minute[:4]), int(minute[5:7]), int(minute[8:10]))
    except ValueError:
        return False
    return minute[11:13] < b"24" and minute[14:16] < b"60"


def canonical_payloads(outcome_data: bytes | None, params: bytes | None) -> bytes:
    """`"outcome_data":<JCS>,"params":<JCS>`, the two JSON columns' part of C(step).

    They sit side by side in C(step)'s key order, so one object holding both goes through
    orjson once (one parse, one sorted dump, one exactness check) instead of twice; when
    the check fails, each column takes the exact path on its own.  A column nested deeper
    than the format allows (docs/json-nesting.md) raises CanonicalizationError before any
    parse: the general path then names it.
    """
    if NATIVE_FRACTIONS:
        od = b"null" if outcome_data is None else outcome_data
        pa = b"null" if params is None else params
        exact = None
        source = b'{"outcome_data":' + od + b',"params":' + pa + b"}"
        # At most MAX_RECORD_DEPTH opening brackets (the wrapper's one included): neither
        # column can nest deeper than MAX_JSON_DEPTH, so the exact count is skipped.
        if source.count(b"[") + source.count(b"{") > MAX_RECORD_DEPTH:
            _refuse_deep(outcome_data, params)
        try:
            value = _loads(source)
            # The source lets the stored-number rule (docs/stored-numbers.md) scan the text once.
            exact = jcs_from_orjson(_dumps(value, option=_SORT), value, source)
        except (orjson.JSONDecodeError, orjson.JSONEncodeError):
            pass
        if exact is not None:
            return exact[1:-1]
    return b'"outcome_data":%b,"params":%b' % (
        b"null" if outcome_data is None else canonicalize_stored_json(outcome_data),
        b"null" if params is None else canonicalize_stored_json(params),
    )


def _refuse_deep(outcome_data: bytes | None, params: bytes | None) -> None:
    """CanonicalizationError naming a column nested deeper than the format allows."""
    for column, stored in (("outcome_data", outcome_data), ("params", params)):
        problem = None if stored is None else stored_nesting_problem(stored)
        if problem is not None:
            raise CanonicalizationError(f"{column}: {problem}")
