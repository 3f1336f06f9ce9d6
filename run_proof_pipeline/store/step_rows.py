"""Turn a streamed step row (text columns, as COPY sends them) into what the proof needs.

Two entry points share one result type:
- StepRowDecoder.decode(row) takes a row of text values (None for NULL);
- StepLineDecoder.decode(line) takes one raw COPY text line as bytes.  It is the proof's hot
  path (once per stored step, a million times for a long run), so it builds C(step) straight
  from the row's bytes: repeated values (ids, statuses, numbers) come from small caches, the
  two JSON columns go through orjson with an exactness check, the timestamp is re-sliced.
  Anything unusual (a NULL timestamp, an escaped byte it cannot take whole, a number PostgreSQL
  printed in exponent form) goes to StepRowDecoder, whose output it equals byte for byte.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

import orjson
from psycopg.types.json import set_json_loads

from run_proof_pipeline.errors import ExitCode, RunProofError
from run_proof_pipeline.integrity import (
    MAX_SAFE_INTEGER,
    CanonicalizationError,
    ChainSegment,
    ChainVerifier,
    InvalidTimestamp,
    es6_number,
    parse_stored_json,
    step_canonical_bytes,
    stored_number_problem,
)
from run_proof_pipeline.integrity.canonical import (
    MAX_RECORD_DEPTH,
    NATIVE_FRACTIONS,
    canonicalize_stored_json,
    jcs_from_orjson,
    stored_nesting_problem,
)

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "STEP_COLUMNS",
    "STEP_SELECT",
    "DecodedStep",
    "StepLineDecoder",
    "StepRowDecoder",
    "decode_json_as_stored",
    "unescape_copy_field",
]

# Column order of a streamed step row; numbers and JSON travel as text so that no value is
# converted twice (the integrity core parses them exactly as the spec says).
STEP_COLUMNS = (
    "step_index",
    "tenant_id",
    "run_id",
    "skill_id",
    "skill_name",
    "params",
    "status",
    "outcome_category",
    "outcome_code",
    "outcome_data",
    "cost_cents",
    "duration_ms",
    "retry_count",
    "timestamp",
    "prev_hash",
    "step_hash",
)
STEP_SELECT = ", ".join(f'"{c}"' for c in STEP_COLUMNS)

_UNSET: Any = object()


class DecodedStep:
    """One decoded step.  Summary fields (names, numbers, parsed JSON) are decoded on first
    access when the step came from a raw line: the proof itself needs only the hashes."""

    __slots__ = (
        "step_index",
        "canonical",
        "prev_hash",
        "step_hash",
        "error",
        "_raw",
        "_skill_name",
        "_status",
        "_duration_ms",
        "_cost_cents",
        "_params",
        "_outcome_data",
    )

    def __init__(
        self,
        # None: a stored row without one (AOS's column is nullable); it fails the proof.
        step_index: int | None,
        canonical: bytes | None,
        prev_hash: str | None,
        step_hash: str | None,
        skill_name: str | None = None,
        status: str | None = None,
        duration_ms: float | None = None,
        cost_cents: float | None = None,
        params: Any = None,
        outcome_data: Any = None,
        # Why the row cannot be canonicalized (a stored value outside the spec): FAILED there.
        error: str | None = None,
    ) -> None:
        self.step_index = step_index
        self.canonical = canonical
        self.prev_hash = prev_hash
        self.step_hash = step_hash
        self.error = error
        # Summary fields not decoded yet: stored bytes (from_line) or text
        # (from_summary_fields), numbers possibly already floats.
        self._raw: tuple[Any, ...] | None = None
        self._skill_name = skill_name
        self._status = status
        self._duration_ms = duration_ms
        self._cost_cents = cost_cents
        self._params = params
        self._outcome_data = outcome_data

    @classmethod
    def from_line(
        cls,
        step_index: int,
        canonical: bytes,
        prev_hash: str,
        step_hash: str,
        raw: tuple[bytes | None, ...],
    ) -> DecodedStep:
        step = cls.__new__(cls)
        step.step_index = step_index
        step.canonical = canonical
        step.prev_hash = prev_hash
        step.step_hash = step_hash
        step.error = None
        # (skill_name, status, duration_ms, cost_cents, params, outcome_data) as stored bytes.
        step._raw = raw
        return step

    @classmethod
    def from_summary_fields(cls, step_index: int | None, fields: Sequence[Any]) -> DecodedStep:
        """A step known by its summary_fields() only (e.g. sent back by a segment worker)."""
        step = cls(step_index, None, None, None)
        step._raw = tuple(fields)
        return step

    def summary_fields(self) -> list[Any]:
        """(skill_name, status, duration_ms, cost_cents, params, outcome_data) as JSON-ready
        values, the JSON columns as text: what from_summary_fields() takes back."""
        raw = self._raw
        if raw is not None:  # still the stored bytes: decoded as text only
            return [None if v is None else v.decode("utf-8", "replace") for v in raw]
        return [
            self._skill_name,
            self._status,
            self._duration_ms,
            self._cost_cents,
            None if self._params is None else json.dumps(self._params),
            None if self._outcome_data is None else json.dumps(self._outcome_data),
        ]

    def feed_to(self, chain: ChainVerifier | ChainSegment) -> bool:
        """Feed this step to a verifier; True once reading on cannot change its finding
        (the first failure, or a segment's start that cannot verify)."""
        index = self.step_index
        # (A row without a step_index has no canonical form either: the chain names it.)
        if self.error is not None or self.canonical is None or index is None:
            return bool(chain.feed_unverifiable(index, self.error or ""))
        return bool(chain.feed_canonical(index, self.canonical, self.prev_hash, self.step_hash))

    def _decoded(self) -> None:
        raw = self._raw
        if raw is None:
            return
        skill_name, status, duration_ms, cost_cents, params, outcome_data = raw
        self._skill_name = _text(skill_name)
        self._status = _text(status)
        self._duration_ms = _number(duration_ms)
        self._cost_cents = _number(cost_cents)
        self._params = _json(params)
        self._outcome_data = _json(outcome_data)
        self._raw = None

    @property
    def skill_name(self) -> str | None:
        self._decoded()
        return self._skill_name

    @property
    def status(self) -> str | None:
        self._decoded()
        return self._status

    @property
    def duration_ms(self) -> float | None:
        self._decoded()
        return self._duration_ms

    @property
    def cost_cents(self) -> float | None:
        self._decoded()
        return self._cost_cents

    @property
    def params(self) -> Any:
        self._decoded()
        return self._params

    @property
    def outcome_data(self) -> Any:
        self._decoded()
        return self._outcome_data

    def _key(self) -> tuple[Any, ...]:
        return (
            self.step_index,
            self.canonical,
            self.prev_hash,
            self.step_hash,
            self.skill_name,
            self.status,
            self.duration_ms,
            self.cost_cents,
            self.params,
            self.outcome_data,
            self.error,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DecodedStep) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable payloads (params) are not hashable

    def __repr__(self) -> str:
        return f"DecodedStep(step_index={self.step_index}, step_hash={self.step_hash!r})"


def _text(value: str | bytes | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


# float8 as PostgreSQL prints it (extra_float_digits pinned, store/session_pins.py), and
# nothing else: Python's float() would also take ' +4.283e0 ', '1_0' or 'infinity' from a
# column whose type the owner changed (store/relations.py refuses those types first).
_FLOAT8_TEXT = re.compile(rb"-?(?:[0-9]+(?:\.[0-9]+)?(?:e[+-][0-9]+)?|Infinity)|NaN")
_INT_TEXT = re.compile(rb"-?[0-9]+")
# No float8 output with at most this many characters breaks the stored-number rule (17
# digits, a sign and a point): only longer texts are checked digit by digit.
_FLOAT8_SHORT = 19


class StoredValueError(RunProofError, ValueError):
    """A stored number is not in the text form its column type prints."""

    exit_code = ExitCode.FAILED


def _float8_problem(raw: bytes) -> str | None:
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
    problem = _float8_problem(raw)
    if problem is not None:
        raise StoredValueError(problem)
    return float(raw)


def strict_int(value: str | bytes) -> int:
    raw = value.encode() if isinstance(value, str) else value
    if not _INT_TEXT.fullmatch(raw):
        raise StoredValueError(f"{raw.decode('utf-8', 'replace')!r} is not an integer value")
    return int(raw)


def _number(value: str | bytes | float | None) -> float | None:
    if value is None or isinstance(value, float):
        return value
    return strict_float(value)


def _json(value: str | bytes | None) -> Any:
    return None if value is None else parse_stored_json(value)


def decode_json_as_stored(driver: psycopg.AsyncConnection[Any] | psycopg.Connection[Any]) -> None:
    """Make `driver` decode json/jsonb values (the header's `plan`) with parse_stored_json,
    as the step columns are: the stored-number rule (docs/stored-numbers.md) and the nesting
    rule (docs/json-nesting.md) then hold for them too, and a value nested deeper than any
    Python parser reads comes back as an UnrepresentableNesting (the header FAILS, naming
    it) instead of a RecursionError inside psycopg's default json.loads."""
    set_json_loads(parse_stored_json, driver)


class StepRowDecoder:
    """Decodes rows in the column order of `STEP_COLUMNS`."""

    def decode(self, row: tuple[str | None, ...]) -> DecodedStep:
        (
            step_index,
            tenant_id,
            run_id,
            skill_id,
            skill_name,
            params_text,
            status,
            outcome_category,
            outcome_code,
            outcome_data_text,
            cost_cents_text,
            duration_ms_text,
            retry_count,
            timestamp,
            prev_hash,
            step_hash,
        ) = row
        if step_index is None:
            # AOS's step_index is nullable: such a row is counted and fails the proof, named
            # (the verifier reports "step_index is not an integer (..., found None)").
            return DecodedStep(None, None, prev_hash, step_hash, error="step_index is NULL")
        try:
            index = strict_int(step_index)
        except StoredValueError as exc:
            return DecodedStep(None, None, prev_hash, step_hash, error=str(exc))
        params = _json(params_text)
        outcome_data = _json(outcome_data_text)
        canonical: bytes | None = None
        error: str | None = None
        cost_cents = duration_ms = None
        try:
            cost_cents = _number(cost_cents_text)
            duration_ms = _number(duration_ms_text)
            canonical = step_canonical_bytes(
                tenant_id=tenant_id,
                run_id=run_id,
                step_index=index,
                skill_id=skill_id,
                skill_name=skill_name,
                params=params,
                status=status,
                outcome_category=outcome_category,
                outcome_code=outcome_code,
                outcome_data=outcome_data,
                cost_cents=cost_cents,
                duration_ms=duration_ms,
                retry_count=None if retry_count is None else strict_int(retry_count),
                timestamp=timestamp,
            )
        except (CanonicalizationError, InvalidTimestamp, StoredValueError) as exc:
            error = f"step {index}: stored value is not representable in format v1: {exc}"
        return DecodedStep(
            step_index=index,
            canonical=canonical,
            prev_hash=prev_hash,
            step_hash=step_hash,
            skill_name=skill_name,
            status=status,
            duration_ms=duration_ms,
            cost_cents=cost_cents,
            params=params,
            outcome_data=outcome_data,
            error=error,
        )


# --- raw COPY lines -----------------------------------------------------------------------

# C(step) with its keys in JCS order; the values are already canonical JSON.
_TEMPLATE = (
    b'{"cost_cents":%b,"duration_ms":%b,"kind":"step","outcome_category":%b,'
    b'"outcome_code":%b,%b,"retry_count":%b,"run_id":%b,'
    b'"skill_id":%b,"skill_name":%b,"status":%b,"step_index":%b,"tenant_id":%b,'
    b'"timestamp":%b,"v":1}'
)
_FIELDS = 16
_CACHE_LIMIT = 50_000  # entries per cache; a cache that grows past it starts over
_COPY_ESCAPES = {
    ord("b"): b"\b",
    ord("f"): b"\f",
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
    ord("v"): b"\v",
    ord("\\"): b"\\",
}


def unescape_copy_field(field: bytes) -> bytes | None:
    """One field of COPY text format as its bytes (None for NULL).

    PostgreSQL's COPY TO writes backslash, newline, carriage return, tab, backspace, form
    feed and vertical tab as backslash sequences and NULL as `\\N`; COPY FROM also accepts
    octal and hex escapes, handled here too.
    """
    if field == b"\\N":
        return None
    if b"\\" not in field:
        return field
    out = bytearray()
    i, n = 0, len(field)
    while i < n:
        c = field[i]
        if c != 0x5C or i + 1 == n:
            out.append(c)
            i += 1
            continue
        nxt = field[i + 1]
        if nxt in _COPY_ESCAPES:
            out += _COPY_ESCAPES[nxt]
            i += 2
        elif 0x30 <= nxt <= 0x37:
            j = i + 1
            while j < n and j < i + 4 and 0x30 <= field[j] <= 0x37:
                j += 1
            out.append(int(field[i + 1 : j], 8) & 0xFF)
            i = j
        elif nxt == ord("x") and i + 2 < n and chr(field[i + 2]) in "0123456789abcdefABCDEF":
            j = i + 2
            while j < n and j < i + 4 and chr(field[j]) in "0123456789abcdefABCDEF":
                j += 1
            out.append(int(field[i + 2 : j], 16))
            i = j
        else:
            out.append(nxt)  # any other escaped character stands for itself
            i += 2
    return bytes(out)


def _as_text(field: bytes | None) -> str | None:
    return None if field is None else field.decode("utf-8")


class StepLineDecoder:
    """Decodes raw COPY text lines in the column order of `STEP_COLUMNS`.

    The connection's client encoding must be UTF-8 (the caller checks): the bytes go into
    the hash as they are.  One decoder per stream: its caches hold values of that stream.
    """

    def __init__(self) -> None:
        self._general = StepRowDecoder()
        # Values that repeat from row to row, as canonical JSON.
        self._strings: dict[bytes | None, bytes] = {None: b"null"}
        self._floats: dict[bytes | None, bytes] = {None: b"null"}
        self._ints: dict[bytes | None, bytes] = {None: b"null"}
        self._minutes: set[bytes] = set()
        self._seconds: dict[bytes, bytes] = {}

    def decode(self, line: bytes) -> DecodedStep:
        stored = line.rstrip(b"\n").split(b"\t")
        if len(stored) != _FIELDS:
            return self._general.decode(tuple(_as_text(unescape_copy_field(f)) for f in stored))
        fields: Sequence[bytes | None] = (
            [unescape_copy_field(f) for f in stored] if b"\\" in line else stored
        )
        (
            index_text,
            tenant_id,
            run_id,
            skill_id,
            skill_name,
            params,
            status,
            outcome_category,
            outcome_code,
            outcome_data,
            cost_cents,
            duration_ms,
            retry_count,
            timestamp,
            prev_hash,
            step_hash,
        ) = fields
        strings, floats = self._strings, self._floats
        if index_text is None or not index_text.isdigit():
            # NULL, negative or odd: the general path says which.
            return self._general.decode(tuple(_as_text(f) for f in fields))
        try:
            index = int(index_text)
            canonical = _TEMPLATE % (
                floats[cost_cents],
                floats[duration_ms],
                strings[outcome_category],
                strings[outcome_code],
                _payloads(outcome_data, params),
                self._ints[retry_count],
                strings[run_id],
                strings[skill_id],
                strings[skill_name],
                strings[status],
                b"%d" % index,
                strings[tenant_id],
                self._timestamp(timestamp),
            )
        except (KeyError, _NotFast):
            if not self._learn(fields):
                return self._general.decode(tuple(_as_text(f) for f in fields))
            return self.decode(line)
        except (CanonicalizationError, TypeError, ValueError):
            # The general path says exactly what is wrong (or raises as it always did).
            return self._general.decode(tuple(_as_text(f) for f in fields))
        if prev_hash is None or step_hash is None:
            return self._general.decode(tuple(_as_text(f) for f in fields))
        return DecodedStep.from_line(
            index,
            canonical,
            prev_hash.decode(),
            step_hash.decode(),
            (skill_name, status, duration_ms, cost_cents, params, outcome_data),
        )

    def _timestamp(self, value: bytes | None) -> bytes:
        """`YYYY-MM-DD HH:MM:SS[.f{1,6}]+00` (timestamptz under TimeZone UTC, DateStyle ISO)
        as `"YYYY-MM-DDTHH:MM:SS.ffffffZ"`; _NotFast for anything else."""
        if value is None:
            raise _NotFast
        n = len(value)
        if not 22 <= n <= 29 or value[n - 3 :] != b"+00":
            raise _NotFast
        # `"YYYY-MM-DDTHH:MM:SS.` per second already checked: steps come many to a second.
        head = self._seconds.get(value[:19])
        if head is None:
            if value[:16] not in self._minutes:
                raise _NotFast
            seconds = value[17:19]
            if value[16] != 0x3A or seconds >= b"60" or not seconds.isdigit():
                raise _NotFast
            if len(self._seconds) >= _CACHE_LIMIT:
                self._seconds.clear()
            head = self._seconds[value[:19]] = b'"%bT%b.' % (value[:10], value[11:19])
        if n == 22:
            return head + b'000000Z"'
        fraction = value[20 : n - 3]
        if value[19] != 0x2E or not fraction.isdigit():
            raise _NotFast
        return head + fraction + b"000000"[len(fraction) :] + b'Z"'

    def _learn(self, fields: Sequence[bytes | None]) -> bool:
        """Fill the caches for this row's values; False when one needs the general path."""
        for cache_name, picks in (
            ("_strings", (1, 2, 3, 4, 6, 7, 8)),
            ("_floats", (10, 11)),
            ("_ints", (12,)),
        ):
            cache: dict[bytes | None, bytes] = getattr(self, cache_name)
            for i in picks:
                value = fields[i]
                if value is None or value in cache:  # (None is always in: b"null")
                    continue
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                    cache[None] = b"null"
                encoded = _encoders[cache_name](value)
                if encoded is None:
                    return False
                cache[value] = encoded
        timestamp = fields[13]
        if timestamp is None or len(timestamp) < 16:
            return False
        minute = timestamp[:16]
        if minute not in self._minutes:
            if not _valid_minute(minute):
                return False
            if len(self._minutes) >= _CACHE_LIMIT:
                self._minutes.clear()
            self._minutes.add(minute)
        try:
            self._timestamp(timestamp)
        except _NotFast:
            return False
        return True


def _payloads(outcome_data: bytes | None, params: bytes | None) -> bytes:
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


_loads = orjson.loads
_dumps = orjson.dumps
_SORT = orjson.OPT_SORT_KEYS


class _NotFast(Exception):
    """Internal: this row leaves the fast path."""


def _string(value: bytes) -> bytes | None:
    try:
        return orjson.dumps(value.decode("utf-8"))  # orjson's escaping is JCS's
    except (UnicodeDecodeError, orjson.JSONEncodeError):
        return None


def _float(value: bytes) -> bytes | None:
    if _float8_problem(value) is not None:
        return None  # the general path names the step
    try:
        return es6_number(float(value)).encode()
    except (ValueError, CanonicalizationError):
        return None  # NaN / Infinity: the general path names the step


def _int(value: bytes) -> bytes | None:
    if not _INT_TEXT.fullmatch(value):
        return None
    number = int(value)
    return b"%d" % number if -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER else None


_encoders = {"_strings": _string, "_floats": _float, "_ints": _int}


def _valid_minute(minute: bytes) -> bool:
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
