"""The three hashed records of hash-chain v1 (header, step, seal), and a fast step encoder.

Records are plain dicts so that anyone can canonicalize them with any JCS encoder.
step_canonical_bytes() exists for the read path, where it runs once per stored step; it
equals canonicalize(step_record(...), strict=False) byte for byte (the tests hold it to that).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson

from run_proof_pipeline.integrity.canonical import (
    FastPathRefused,
    canonicalize,
    needs_utf16_key_order,
    prepare_for_orjson,
)
from run_proof_pipeline.integrity.timestamps import canonical_timestamp

__all__ = [
    "FORMAT_VERSION",
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


def header_record(
    *,
    tenant_id: Any,
    run_id: Any,
    trace_id: Any,
    agent_id: Any,
    plan_id: Any,
    plan: Any,
    started_at: Any,
) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "kind": "trace",
        "tenant_id": _text(tenant_id),
        "run_id": _text(run_id),
        "trace_id": _text(trace_id),
        "agent_id": _text(agent_id),
        "plan_id": _text(plan_id),
        "plan": plan,
        "started_at": _ts(started_at),
    }


def step_record(
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
) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "kind": "step",
        "tenant_id": _text(tenant_id),
        "run_id": _text(run_id),
        "step_index": step_index,
        "skill_id": _text(skill_id),
        "skill_name": _text(skill_name),
        "params": params,
        "status": _text(status),
        "outcome_category": _text(outcome_category),
        "outcome_code": _text(outcome_code),
        "outcome_data": outcome_data,
        "cost_cents": cost_cents,
        "duration_ms": duration_ms,
        "retry_count": retry_count,
        "timestamp": _ts(timestamp),
    }


def seal_record(
    *,
    tenant_id: Any,
    run_id: Any,
    status: Any,
    completed_at: Any,
    chain_length: Any,
) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "kind": "seal",
        "tenant_id": _text(tenant_id),
        "run_id": _text(run_id),
        "status": _text(status),
        "completed_at": _ts(completed_at),
        "chain_length": chain_length,
    }


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
    over the record's own keys (they are fixed, ASCII, and already in UTF-16 order)."""
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
