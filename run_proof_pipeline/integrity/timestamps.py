"""Canonical timestamps of the hash chain: `YYYY-MM-DDTHH:MM:SS.ffffffZ`, always UTC.

Two inputs dominate: ISO-8601 strings on the write path and PostgreSQL's timestamptz text
output (`2026-02-09 10:00:00.123456+00`, session TimeZone=UTC) on the read path, once per
step row.  The `+00` / `Z` forms are handled by slicing after a cheap validation; every
other form goes through a full parse and a conversion to UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from run_proof_pipeline.errors import RunProofError

__all__ = ["InvalidTimestamp", "canonical_timestamp", "parse_timestamp"]


class InvalidTimestamp(RunProofError, ValueError):
    """A timestamp the format cannot hash without loss or ambiguity."""


_fromisoformat = datetime.fromisoformat

# Date, time, optional fraction, mandatory zone.  Zone forms: Z, +HH, +HHMM, +HH:MM and
# +HH:MM:SS (PostgreSQL prints seconds for historical local-mean-time offsets).
_GENERAL = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?"
    r"(?:([Zz])|([+-])(\d{2})(?::?(\d{2})(?::?(\d{2}))?)?)",
    re.ASCII,
)
_FAST = re.compile(
    r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?(?:\+00|Z)", re.ASCII
)
_ZEROS = "000000"


def _fast(value: str) -> str | None:
    """Canonical form of `...SS[.f{1,6}]+00` / `...SS[.f{1,6}]Z` strings, else None.

    The regex fixes the layout; datetime.fromisoformat (C, calendar-aware) then rejects
    impossible dates and times such as February 30th or 24:00:00.
    """
    m = _FAST.fullmatch(value)
    if m is None:
        return None
    date, time, frac = m.groups()
    head = f"{date}T{time}"
    try:
        _fromisoformat(head)
    except ValueError:
        return None
    return f"{head}.{_ZEROS if frac is None else frac + _ZEROS[len(frac) :]}Z"


def _parse_text(value: str) -> datetime:
    text = value.strip()
    lowered = text.lower()
    if lowered in ("infinity", "-infinity", "+infinity"):
        raise InvalidTimestamp(f"timestamp {value!r} is not a point in time")
    if lowered.endswith(" bc"):
        raise InvalidTimestamp(f"timestamp {value!r}: year outside 1-9999")
    m = _GENERAL.fullmatch(text)
    if m is None:
        if re.fullmatch(r"[+-]?\d{5,}-.*", text):
            raise InvalidTimestamp(f"timestamp {value!r}: year outside 1-9999")
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}([.,]\d+)?)?)?", text):
            raise InvalidTimestamp(
                f"timestamp {value!r} has no UTC offset (naive timestamps are ambiguous)"
            )
        raise InvalidTimestamp(f"timestamp {value!r} is not an ISO-8601 / PostgreSQL timestamp")
    year, month, day, hour, minute, second, frac, zulu, sign, oh, om, osec = m.groups()
    micro = 0
    if frac:
        # Digits past the sixth are only allowed when zero: anything else is finer than a
        # microsecond, which PostgreSQL would round and Python would truncate.
        if len(frac) > 6 and frac[6:].strip("0"):
            raise InvalidTimestamp(f"timestamp {value!r} is finer than a microsecond")
        micro = int((frac[:6] + _ZEROS)[:6])
    if year == "0000":
        raise InvalidTimestamp(f"timestamp {value!r}: year outside 1-9999")
    if zulu:
        tz = UTC
    else:
        offset = timedelta(hours=int(oh), minutes=int(om or 0), seconds=int(osec or 0))
        if offset >= timedelta(hours=24):
            raise InvalidTimestamp(f"timestamp {value!r} has an impossible UTC offset")
        tz = timezone(-offset if sign == "-" else offset)
    try:
        parsed = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tz
        )
    except ValueError as exc:
        raise InvalidTimestamp(f"timestamp {value!r} is not a valid date and time: {exc}") from None
    return _to_utc(parsed, value)


def _to_utc(value: datetime, original: object) -> datetime:
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise InvalidTimestamp(
            f"timestamp {original!r} has no UTC offset (naive timestamps are ambiguous)"
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidTimestamp(f"timestamp {original!r}: year outside 1-9999 in UTC") from None


def parse_timestamp(value: str | datetime) -> datetime:
    """The aware UTC datetime a timestamp denotes; InvalidTimestamp when the spec rejects it."""
    if isinstance(value, datetime):
        return _to_utc(value, value)
    if isinstance(value, str):
        return _parse_text(value)
    raise InvalidTimestamp(f"timestamp must be a str or datetime, not {type(value).__name__}")


def _format(value: datetime) -> str:
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}Z"
    )


def canonical_timestamp(value: str | datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SS.ffffffZ` in UTC, per hash-chain v1; InvalidTimestamp otherwise."""
    if type(value) is str:
        fast = _fast(value)
        if fast is not None:
            return fast
    return _format(parse_timestamp(value))
