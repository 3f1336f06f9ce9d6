"""The three hashed records of hash-chain v1 (header, step, seal), and a fast step encoder.

Records are plain dicts so that anyone can canonicalize them with any JCS encoder.
step_canonical_bytes() exists for the read path, where it runs once per stored step: the key
order of a step record is fixed, so its bytes are a template with the values spliced in,
equal to canonicalize(step_record(...), strict=False) (the tests hold it to that).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson

from run_proof_pipeline.integrity.canonical import (
    MAX_SAFE_INTEGER,
    canonicalize_at,
    es6_number,
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


def _field(name: str, value: Any) -> bytes:
    """Read-path encoding of one scalar field, identical to canonicalize(strict=False)."""
    t = type(value)
    if t is str:
        try:
            return _dumps(value)
        except TypeError:
            return canonicalize_at(value, strict=False, path=name)  # raises: lone surrogate
    if value is None:
        return b"null"
    if t is float:
        if value - value == 0.0:  # finite (inf - inf and nan - nan are nan)
            return es6_number(value).encode()
    elif t is int and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return b"%d" % value
    return canonicalize_at(_text(value), strict=False, path=name)


def _nested(name: str, value: Any) -> bytes:
    if value is None:
        return b"null"
    return canonicalize_at(value, strict=False, path=name)


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
    """canonicalize(step_record(...), strict=False), without building and sorting a dict."""
    ts = b"null" if timestamp is None else b'"%s"' % canonical_timestamp(timestamp).encode()
    # Keys in UTF-16 order: the record's key set never changes.
    return b"".join(
        (
            b'{"cost_cents":',
            _field("cost_cents", cost_cents),
            b',"duration_ms":',
            _field("duration_ms", duration_ms),
            b',"kind":"step","outcome_category":',
            _field("outcome_category", outcome_category),
            b',"outcome_code":',
            _field("outcome_code", outcome_code),
            b',"outcome_data":',
            _nested("outcome_data", outcome_data),
            b',"params":',
            _nested("params", params),
            b',"retry_count":',
            _field("retry_count", retry_count),
            b',"run_id":',
            _field("run_id", run_id),
            b',"skill_id":',
            _field("skill_id", skill_id),
            b',"skill_name":',
            _field("skill_name", skill_name),
            b',"status":',
            _field("status", status),
            b',"step_index":',
            _field("step_index", step_index),
            b',"tenant_id":',
            _field("tenant_id", tenant_id),
            b',"timestamp":',
            ts,
            b',"v":1}',
        )
    )
