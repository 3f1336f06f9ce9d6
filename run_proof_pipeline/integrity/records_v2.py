"""The three hashed records of hash-chain v2 (header, step, seal) and their C2 encoders.

docs/hash-chain-v2.md, "Records": every field is always present, field names are column
names (except `aos_root_hash`, the `root_hash` column as the writer inserted it); the fields
and their column types are integrity/fields.py's.  Records
are plain dicts so that any C2 encoder can check them; the *_canonical_v2 functions equal
canonicalize_v2(*_record_v2(...)) byte for byte (the tests hold them to that), and
step_canonical_v2 is the read path's encoder, run once per stored step.

Value conventions (the column types of AOS's tables, docs/existing-aos-database.md):
- text/varchar columns: str or None; a UUID becomes str(UUID) (PostgreSQL's uuid text form);
- timestamptz columns: datetime or stored text, written by canonical_timestamp;
- double precision columns (cost_cents, duration_ms): the double, ES6; an int or Decimal
  given for one is taken as the double the column would hold;
- integer columns (step_index, retry_count, seed, chain_length) and JSON numbers: exact;
- jsonb columns (plan, trace, metadata, params, outcome_data): parsed values, numbers as
  int/Decimal (parse_stored_json_v2) or float.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import partial
from typing import Any

import orjson

from run_proof_pipeline.integrity.canonical import (
    CanonicalizationError,
    FastPathRefused,
    needs_utf16_key_order,
)
from run_proof_pipeline.integrity.canonical_v2 import _prepare, canonicalize_v2
from run_proof_pipeline.integrity.fields import (
    FIELD_TYPES,
    HEADER_V2_FIELDS,
    SEAL_V2_FIELDS,
    STEP_V2_FIELDS,
    FieldType,
)
from run_proof_pipeline.integrity.records import _as_is, _text, _ts, build_record
from run_proof_pipeline.integrity.timestamps import canonical_timestamp

__all__ = [
    "FORMAT_VERSION_V2",
    "HEADER_V2_FIELDS",
    "SEAL_V2_FIELDS",
    "STEP_V2_FIELDS",
    "header_canonical_v2",
    "header_record_v2",
    "seal_canonical_v2",
    "seal_record_v2",
    "step_canonical_v2",
    "step_record_v2",
]

FORMAT_VERSION_V2 = 2


def _double(value: Any, field: str) -> Any:
    """A double precision column's value: the double (NaN/inf refused by the encoder)."""
    if value is None or type(value) is float:
        return value
    if isinstance(value, bool):
        return value  # not a number: the encoder writes it as a boolean (a type error upstream)
    if isinstance(value, (int, Decimal)):
        try:
            double = float(value)
        except OverflowError:
            double = float("inf")
        if double - double != 0.0 and not (isinstance(value, Decimal) and not value.is_finite()):
            raise CanonicalizationError(f"{field}: {value} is beyond the range of a double")
        return double
    if isinstance(value, float):
        return float(value)
    return value


def _writer(name: str, kind: FieldType) -> Callable[[Any], Any]:
    if kind is FieldType.DOUBLE:
        return partial(_double, field=name)
    if kind is FieldType.TEXT:
        return _text
    if kind is FieldType.TIMESTAMP:
        return _ts
    return _as_is


# How a v2 record writes each field (the value conventions above).
_WRITERS_V2: dict[str, Callable[[Any], Any]] = {
    name: _writer(name, kind) for name, kind in FIELD_TYPES.items()
}


def header_record_v2(**fields: Any) -> dict[str, Any]:
    """The v2 header record of HEADER_V2_FIELDS (integrity/fields.py)."""
    return build_record(
        "header_record_v2", FORMAT_VERSION_V2, "trace", HEADER_V2_FIELDS, _WRITERS_V2, fields
    )


def step_record_v2(**fields: Any) -> dict[str, Any]:
    """The v2 step record of STEP_V2_FIELDS (integrity/fields.py)."""
    return build_record(
        "step_record_v2", FORMAT_VERSION_V2, "step", STEP_V2_FIELDS, _WRITERS_V2, fields
    )


def seal_record_v2(**fields: Any) -> dict[str, Any]:
    """The v2 seal record of SEAL_V2_FIELDS (integrity/fields.py)."""
    return build_record(
        "seal_record_v2", FORMAT_VERSION_V2, "seal", SEAL_V2_FIELDS, _WRITERS_V2, fields
    )


def header_canonical_v2(**fields: Any) -> bytes:
    """C2(header_record_v2(**fields))."""
    return canonicalize_v2(header_record_v2(**fields))


def seal_canonical_v2(**fields: Any) -> bytes:
    """C2(seal_record_v2(**fields))."""
    return canonicalize_v2(seal_record_v2(**fields))


_dumps = orjson.dumps
_SORT = orjson.OPT_SORT_KEYS
_str = str


def step_canonical_v2(
    *,
    tenant_id: Any,
    run_id: Any,
    trace_id: Any,
    step_index: Any,
    skill_id: Any,
    skill_name: Any,
    params: Any,
    status: Any,
    outcome_category: Any,
    outcome_code: Any,
    outcome_data: Any,
    cost_cents: Any,
    duration_ms: Any,
    retry_count: Any,
    timestamp: Any,
    input_hash: Any,
    output_hash: Any,
    rng_state_before: Any,
    idempotency_key: Any,
    replay_behavior: Any,
    source: Any,
    level: Any,
    is_synthetic: Any,
    synthetic_scenario_id: Any,
) -> bytes:
    """canonicalize_v2(step_record_v2(...)), with one orjson call and no walk over the
    record's own keys (fixed, ASCII, so orjson's sorted order is UTF-16 order).

    The v2 read path's encoder, once per stored step: its parameters and record keys are
    spelled out for speed, and run_proof_pipeline_tests/test_fields.py pins both to
    STEP_V2_FIELDS."""
    ts = None if timestamp is None else canonical_timestamp(timestamp)
    try:
        for text in (
            tenant_id,
            run_id,
            trace_id,
            skill_id,
            skill_name,
            status,
            outcome_category,
            outcome_code,
            input_hash,
            output_hash,
            rng_state_before,
            idempotency_key,
            replay_behavior,
            source,
            level,
            synthetic_scenario_id,
        ):
            if type(text) is not _str and text is not None:
                raise FastPathRefused
        if type(is_synthetic) is not bool and is_synthetic is not None:
            raise FastPathRefused
        if type(cost_cents) is not float or type(duration_ms) is not float:
            raise FastPathRefused
        # Each field sits inside the record (depth 1): a JSON value nested deeper than
        # MAX_JSON_DEPTH is refused before it is entered (docs/json-nesting.md).
        out = _dumps(
            {
                "cost_cents": _prepare(cost_cents, False, 1),
                "duration_ms": _prepare(duration_ms, False, 1),
                "idempotency_key": idempotency_key,
                "input_hash": input_hash,
                "is_synthetic": is_synthetic,
                "kind": "step",
                "level": level,
                "outcome_category": outcome_category,
                "outcome_code": outcome_code,
                "outcome_data": _prepare(outcome_data, False, 1),
                "output_hash": output_hash,
                "params": _prepare(params, False, 1),
                "replay_behavior": replay_behavior,
                "retry_count": _prepare(retry_count, False, 1),
                "rng_state_before": rng_state_before,
                "run_id": run_id,
                "skill_id": skill_id,
                "skill_name": skill_name,
                "source": source,
                "status": status,
                "step_index": _prepare(step_index, False, 1),
                "synthetic_scenario_id": synthetic_scenario_id,
                "tenant_id": tenant_id,
                "timestamp": ts,
                "trace_id": trace_id,
                "v": FORMAT_VERSION_V2,
            },
            option=_SORT,
        )
        if not needs_utf16_key_order(out):
            return out
    except (FastPathRefused, TypeError, orjson.JSONEncodeError):
        pass
    # Unusual values (UUIDs, ints for doubles, astral keys, nesting past the limit, invalid
    # numbers): the general path, which also names the offending field.
    return canonicalize_v2(
        step_record_v2(
            tenant_id=tenant_id,
            run_id=run_id,
            trace_id=trace_id,
            step_index=step_index,
            skill_id=skill_id,
            skill_name=skill_name,
            params=params,
            status=status,
            outcome_category=outcome_category,
            outcome_code=outcome_code,
            outcome_data=outcome_data,
            cost_cents=cost_cents,
            duration_ms=duration_ms,
            retry_count=retry_count,
            timestamp=ts,
            input_hash=input_hash,
            output_hash=output_hash,
            rng_state_before=rng_state_before,
            idempotency_key=idempotency_key,
            replay_behavior=replay_behavior,
            source=source,
            level=level,
            is_synthetic=is_synthetic,
            synthetic_scenario_id=synthetic_scenario_id,
        )
    )
