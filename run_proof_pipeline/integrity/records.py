"""The three hashed records of hash-chain v1 (header, step, seal), and a fast step encoder.

Records are plain dicts so that anyone can canonicalize them with any JCS encoder; their
fields are those integrity/fields.py defines (docs/hash-chain-v1.md "Records").
step_canonical_bytes() exists for the read path, where it runs once per stored step; it
equals canonicalize(step_record(...), strict=False) byte for byte (the tests hold it to that).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from uuid import UUID

import orjson

from run_proof_pipeline.integrity.canonical import (
    FastPathRefused,
    canonicalize,
    needs_utf16_key_order,
    prepare_for_orjson,
)
from run_proof_pipeline.integrity.fields import (
    FIELD_TYPES,
    HEADER_V1_FIELDS,
    SEAL_V1_FIELDS,
    STEP_V1_FIELDS,
    FieldType,
)
from run_proof_pipeline.integrity.timestamps import canonical_timestamp

__all__ = [
    "FORMAT_VERSION",
    "build_record",
    "check_fields",
    "header_record",
    "seal_record",
    "step_canonical_bytes",
    "step_record",
]

FORMAT_VERSION = 1


def _text(value: Any) -> Any:
    # PostgreSQL prints a uuid in the same lowercase hyphenated form as str(UUID), so a
    # UUID column value and its text output hash alike.
    if isinstance(value, UUID):
        return str(value)
    return value


def _ts(value: Any) -> str | None:
    return None if value is None else canonical_timestamp(value)


def _as_is(value: Any) -> Any:
    return value


# How a record writes a value of each column type (docs/hash-chain-v1.md "Primitives"):
# numbers and JSON as given (C writes them), text and timestamps normalised.
_WRITE_V1: dict[FieldType, Callable[[Any], Any]] = {
    FieldType.TEXT: _text,
    FieldType.TIMESTAMP: _ts,
}
_WRITERS_V1: dict[str, Callable[[Any], Any]] = {
    name: _WRITE_V1.get(kind, _as_is) for name, kind in FIELD_TYPES.items()
}


def check_fields(builder: str, names: tuple[str, ...], fields: Mapping[str, Any]) -> None:
    """TypeError, in Python's own words for a keyword-only signature, unless `fields` holds
    exactly `names` (a record has every field, docs/hash-chain-v1.md "Records")."""
    if len(fields) == len(names) and all(name in fields for name in names):
        return
    unexpected = [name for name in fields if name not in names]
    if unexpected:
        raise TypeError(f"{builder}() got an unexpected keyword argument '{unexpected[0]}'")
    missing = [f"'{name}'" for name in names if name not in fields]
    if len(missing) < 3:
        listed = " and ".join(missing)
    else:
        listed = f"{', '.join(missing[:-1])}, and {missing[-1]}"
    plural = "argument" if len(missing) == 1 else "arguments"
    raise TypeError(f"{builder}() missing {len(missing)} required keyword-only {plural}: {listed}")


def build_record(
    builder: str,
    version: int,
    kind: str,
    names: tuple[str, ...],
    writers: Mapping[str, Callable[[Any], Any]],
    fields: Mapping[str, Any],
) -> dict[str, Any]:
    """{"v": version, "kind": kind, name: writers[name](fields[name]) for each of `names`};
    TypeError (check_fields) unless `fields` holds exactly `names`."""
    check_fields(builder, names, fields)
    record: dict[str, Any] = {"v": version, "kind": kind}
    for name in names:
        record[name] = writers[name](fields[name])
    return record


def header_record(**fields: Any) -> dict[str, Any]:
    """The v1 header record of HEADER_V1_FIELDS (integrity/fields.py)."""
    return build_record(
        "header_record", FORMAT_VERSION, "trace", HEADER_V1_FIELDS, _WRITERS_V1, fields
    )


def step_record(**fields: Any) -> dict[str, Any]:
    """The v1 step record of STEP_V1_FIELDS (integrity/fields.py)."""
    return build_record("step_record", FORMAT_VERSION, "step", STEP_V1_FIELDS, _WRITERS_V1, fields)


def seal_record(**fields: Any) -> dict[str, Any]:
    """The v1 seal record of SEAL_V1_FIELDS (integrity/fields.py)."""
    return build_record("seal_record", FORMAT_VERSION, "seal", SEAL_V1_FIELDS, _WRITERS_V1, fields)


_dumps = orjson.dumps
_SORT = orjson.OPT_SORT_KEYS


def step_canonical_bytes(
    *,
    tenant_id: Any,
    run_id: Any,
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
) -> bytes:
    """canonicalize(step_record(...), strict=False), with one orjson call and no Python walk
    over the record's own keys (they are fixed, ASCII, and already in UTF-16 order).

    The read path's encoder, once per stored step: its parameters and record keys are
    spelled out for speed (no dict built from STEP_V1_FIELDS per step), and
    run_proof_pipeline_tests/test_fields.py pins both to STEP_V1_FIELDS."""
    ts = None if timestamp is None else canonical_timestamp(timestamp)
    try:
        for text in (tenant_id, run_id, skill_id, skill_name, status, outcome_category):
            if type(text) is not str and text is not None:
                raise FastPathRefused
        if type(outcome_code) is not str and outcome_code is not None:
            raise FastPathRefused
        # Each field sits inside the record (depth 1): a JSON value nested deeper than
        # MAX_JSON_DEPTH is refused before it is entered (docs/json-nesting.md).
        out = _dumps(
            {
                "cost_cents": prepare_for_orjson(cost_cents, False, depth=1),
                "duration_ms": prepare_for_orjson(duration_ms, False, depth=1),
                "kind": "step",
                "outcome_category": outcome_category,
                "outcome_code": outcome_code,
                "outcome_data": prepare_for_orjson(outcome_data, False, depth=1),
                "params": prepare_for_orjson(params, False, depth=1),
                "retry_count": prepare_for_orjson(retry_count, False, depth=1),
                "run_id": run_id,
                "skill_id": skill_id,
                "skill_name": skill_name,
                "status": status,
                "step_index": prepare_for_orjson(step_index, False, depth=1),
                "tenant_id": tenant_id,
                "timestamp": ts,
                "v": FORMAT_VERSION,
            },
            option=_SORT,
        )
        if not needs_utf16_key_order(out):
            return out
    except (FastPathRefused, TypeError):
        pass
    # Unusual values (UUIDs, astral keys, nesting past the limit, invalid numbers): the
    # general path, which also names the offending field when there is one.  Nesting is
    # bounded, so a RecursionError here could only be the caller's own and is not caught.
    record = step_record(
        tenant_id=tenant_id,
        run_id=run_id,
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
    )
    return canonicalize(record, strict=False)
