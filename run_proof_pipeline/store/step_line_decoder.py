"""The fast decoder of a format-v1 step: one raw COPY text line in, a DecodedStep out.

It is the proof's hot path (once per stored step, a million times for a long run), so it
builds C(step) straight from the row's bytes: repeated values (ids, statuses, numbers) come
from small caches of their canonical JSON (store/canonical_text.py), the two JSON columns go
through orjson with an exactness check, the timestamp is re-sliced. Anything unusual (a NULL
timestamp, an escaped byte it cannot take whole, a number PostgreSQL printed in exponent
form) goes to StepRowDecoder (store/step_row_decoder.py), whose output it equals byte for
byte.  Where the compiled path is built (store/native_line.py), a line it takes whole gets its
C(step) from there, equal byte for byte (run_proof_pipeline_tests/test_native_line.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter

from run_proof_pipeline.integrity import CanonicalizationError
from run_proof_pipeline.integrity.fields import FIELD_TYPES, FieldType
from run_proof_pipeline.store.canonical_text import (
    canonical_float8,
    canonical_int,
    canonical_payloads,
    canonical_string,
    valid_minute,
)
from run_proof_pipeline.store.copy_text import as_text, unescape_copy_field
from run_proof_pipeline.store.decoded_step import DecodedStep
from run_proof_pipeline.store.native_line import NativeWalk, canonical_line, native_enabled, walk
from run_proof_pipeline.store.step_columns import STEP_COLUMNS
from run_proof_pipeline.store.step_row_decoder import StepRowDecoder
from run_proof_pipeline.store.step_summary import SUMMARY_FIELDS

__all__ = ["StepLineDecoder"]

# C(step) with its keys in JCS order; the values are already canonical JSON.
_TEMPLATE = (
    b'{"cost_cents":%b,"duration_ms":%b,"kind":"step","outcome_category":%b,'
    b'"outcome_code":%b,%b,"retry_count":%b,"run_id":%b,'
    b'"skill_id":%b,"skill_name":%b,"status":%b,"step_index":%b,"tenant_id":%b,'
    b'"timestamp":%b,"v":1}'
)
_FIELDS = len(STEP_COLUMNS)
_CACHE_LIMIT = 50_000  # entries per cache; a cache that grows past it starts over


def _positions(kind: FieldType) -> tuple[int, ...]:
    """Where the hashed columns of `kind` sit in a line (step_index and the hashes aside)."""
    return tuple(
        i
        for i, column in enumerate(STEP_COLUMNS)
        if column in FIELD_TYPES and column != "step_index" and FIELD_TYPES[column] is kind
    )


# Which cache learns which columns of a line, and the encoder that fills it.
_LEARNED: tuple[tuple[str, tuple[int, ...], Callable[[bytes], bytes | None]], ...] = (
    ("_strings", _positions(FieldType.TEXT), canonical_string),
    ("_floats", _positions(FieldType.DOUBLE), canonical_float8),
    ("_ints", _positions(FieldType.INTEGER), canonical_int),
)
_TIMESTAMP = STEP_COLUMNS.index("timestamp")
# The summary fields' stored bytes, taken off a line in one call.
_summary_of = itemgetter(*(STEP_COLUMNS.index(name) for name in SUMMARY_FIELDS))


class _NotFast(Exception):
    """Internal: this row leaves the fast path."""


class StepLineDecoder:
    """Decodes raw COPY text lines in the column order of `STEP_COLUMNS`.

    The connection's client encoding must be UTF-8 (the caller checks): the bytes go into
    the hash as they are.  One decoder per stream: its caches hold values of that stream.
    """

    def __init__(self, *, native: bool | None = None) -> None:
        # native=False: the pure path only (the compiled one's reference, in the tests);
        # None: the compiled path where it is built, unless RUN_PROOF_NATIVE=0.
        use = native_enabled() if native is None else native
        self._native = canonical_line if use else None
        self._general = StepRowDecoder()
        # Values that repeat from row to row, as canonical JSON.
        self._strings: dict[bytes | None, bytes] = {None: b"null"}
        self._floats: dict[bytes | None, bytes] = {None: b"null"}
        self._ints: dict[bytes | None, bytes] = {None: b"null"}
        self._minutes: set[bytes] = set()
        self._seconds: dict[bytes, bytes] = {}

    @property
    def native(self) -> bool:
        """Whether lines the compiled path takes get their C(step) from it."""
        return self._native is not None

    @property
    def line_walk(self) -> NativeWalk | None:
        """The compiled walk (store/line_walk.py) when this decoder uses the compiled path."""
        return walk if self._native is not None else None

    # Format v1 has no chain positions (ChainVerifier.walk_state).
    checks_positions = False

    def decode(self, line: bytes) -> DecodedStep:
        stored = line.rstrip(b"\n").split(b"\t")
        native = self._native
        if native is not None:
            fast = native(line)
            if fast is not None:
                return DecodedStep.from_line(
                    fast[0], fast[1], fast[2], fast[3], _summary_of(stored)
                )
        if len(stored) != _FIELDS:
            return self._general.decode(tuple(as_text(unescape_copy_field(f)) for f in stored))
        fields: Sequence[bytes | None] = (
            [unescape_copy_field(f) for f in stored] if b"\\" in line else stored
        )
        # Unpacked by position, in STEP_COLUMNS order (pinned by test_fields.py).
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
            return self._general.decode(tuple(as_text(f) for f in fields))
        try:
            index = int(index_text)
            canonical = _TEMPLATE % (
                floats[cost_cents],
                floats[duration_ms],
                strings[outcome_category],
                strings[outcome_code],
                canonical_payloads(outcome_data, params),
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
                return self._general.decode(tuple(as_text(f) for f in fields))
            return self.decode(line)
        except (CanonicalizationError, TypeError, ValueError):
            # The general path says exactly what is wrong (or raises as it always did).
            return self._general.decode(tuple(as_text(f) for f in fields))
        if prev_hash is None or step_hash is None:
            return self._general.decode(tuple(as_text(f) for f in fields))
        return DecodedStep.from_line(
            index, canonical, prev_hash.decode(), step_hash.decode(), _summary_of(fields)
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
        for cache_name, picks, encode in _LEARNED:
            cache: dict[bytes | None, bytes] = getattr(self, cache_name)
            for i in picks:
                value = fields[i]
                if value is None or value in cache:  # (None is always in: b"null")
                    continue
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                    cache[None] = b"null"
                encoded = encode(value)
                if encoded is None:
                    return False
                cache[value] = encoded
        timestamp = fields[_TIMESTAMP]
        if timestamp is None or len(timestamp) < 16:
            return False
        minute = timestamp[:16]
        if minute not in self._minutes:
            if not valid_minute(minute):
                return False
            if len(self._minutes) >= _CACHE_LIMIT:
                self._minutes.clear()
            self._minutes.add(minute)
        try:
            self._timestamp(timestamp)
        except _NotFast:
            return False
        return True
