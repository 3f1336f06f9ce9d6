"""A trace and its steps as read back from the store, and the canonical form of a stored step.

StoredTrace and StoredStep are what ChainVerifier checks (integrity/verdicts.py): every value
exactly as stored, hashes unvalidated. Their content fields are the records' fields of
integrity/fields.py (run_proof_pipeline_tests/test_fields.py pins them): a StoredStep holds
STEP_STORED_FIELDS, the chain columns STEP_CHAIN_V2 and, for format v2, STEP_V2_ONLY_FIELDS
in `extra`; a StoredTrace holds HEADER_V1_FIELDS, the seal's status and completed_at, and for
format v2 HEADER_V2_ONLY_FIELDS in `header_v2` (docs/hash-chain-v2.md "Records").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from run_proof_pipeline.integrity.canonical import CanonicalizationError
from run_proof_pipeline.integrity.fields import STEP_V2_ONLY_FIELDS, StepFields, TraceHeaderFields
from run_proof_pipeline.integrity.records import step_canonical_bytes
from run_proof_pipeline.integrity.records_v2 import step_canonical_v2

__all__ = [
    "StoredStep",
    "StoredTrace",
    "missing_fields",
    "stored_step_canonical",
    "stored_step_canonical_v2",
]


@dataclass(frozen=True)
class StoredTrace:
    """One aos_traces row as read back (hashes exactly as stored, unvalidated).

    `root_hash` is the format's stored seal (the seal_hash column).  `chain_format` is the
    stored format: 1, 2, or None for a legacy trace (a format-1 trace without genesis_hash
    is legacy too).  Format 2 also needs `header_v2` (HEADER_V2_ONLY_FIELDS, with
    `aos_root_hash` = the root_hash column) and `metadata` (part of the seal).  For format 1
    the reader passes the root_hash column in `root_hash_column`: v1's seal lives in both
    columns after migration 0006, and they must agree (None: the column was not read).
    """

    tenant_id: Any
    run_id: Any
    trace_id: Any
    agent_id: Any
    plan_id: Any
    plan: Any
    started_at: str | datetime | None  # None: stored NULL (format v2 hashes it as null)
    status: Any
    completed_at: str | datetime | None
    genesis_hash: str | None
    root_hash: str | None
    chain_length: int | None
    chain_format: int | None = 1
    header_v2: Mapping[str, Any] | None = None
    metadata: Any = None
    root_hash_column: str | None = None


@dataclass(frozen=True)
class StoredStep:
    """One aos_trace_steps row as read back.  tenant_id/run_id come from the trace, so a
    step moved in from another run or tenant hashes differently and fails."""

    step_index: int
    skill_id: Any
    skill_name: Any
    params: Any
    status: Any
    outcome_category: Any
    outcome_code: Any
    outcome_data: Any
    cost_cents: Any
    duration_ms: Any
    retry_count: Any
    timestamp: str | datetime | None
    prev_hash: str | None
    step_hash: str | None
    # Format v2: the database's chain position of the row, and STEP_V2_ONLY_FIELDS.
    chain_position: int | None = None
    extra: Mapping[str, Any] | None = None


# The two encoders below run once per step fed to ChainVerifier.feed(): they pass each field
# by its keyword (no dict built per step); test_fields.py holds them to the records' fields.


def stored_step_canonical(trace: TraceHeaderFields, step: StepFields) -> bytes:
    """C(step) of a stored row; tenant_id and run_id come from its trace (so a row moved in
    from another run hashes differently).  Raises CanonicalizationError / InvalidTimestamp
    for a stored value outside the spec."""
    return step_canonical_bytes(
        tenant_id=trace.tenant_id,
        run_id=trace.run_id,
        step_index=step.step_index,
        skill_id=step.skill_id,
        skill_name=step.skill_name,
        params=step.params,
        status=step.status,
        outcome_category=step.outcome_category,
        outcome_code=step.outcome_code,
        outcome_data=step.outcome_data,
        cost_cents=step.cost_cents,
        duration_ms=step.duration_ms,
        retry_count=step.retry_count,
        timestamp=step.timestamp,
    )


def missing_fields(fields: Mapping[str, Any] | None, names: tuple[str, ...]) -> list[str]:
    """The `names` a reader did not pass in `fields` (all of them when it passed none)."""
    if fields is None:
        return list(names)
    return [name for name in names if name not in fields]


def stored_step_canonical_v2(trace: TraceHeaderFields, step: StoredStep) -> bytes:
    """C2(step) of a stored format-v2 row: tenant_id and run_id come from its trace (a step
    row does not carry them), the v2-only fields from step.extra.  Raises
    CanonicalizationError / InvalidTimestamp for a stored value outside the spec, and
    CanonicalizationError when the reader did not pass every v2 field."""
    extra = step.extra
    missing = missing_fields(extra, STEP_V2_ONLY_FIELDS)
    if missing or extra is None:
        raise CanonicalizationError(f"the step's v2 fields were not read: {', '.join(missing)}")
    return step_canonical_v2(
        tenant_id=trace.tenant_id,
        run_id=trace.run_id,
        trace_id=extra["trace_id"],
        step_index=step.step_index,
        skill_id=step.skill_id,
        skill_name=step.skill_name,
        params=step.params,
        status=step.status,
        outcome_category=step.outcome_category,
        outcome_code=step.outcome_code,
        outcome_data=step.outcome_data,
        cost_cents=step.cost_cents,
        duration_ms=step.duration_ms,
        retry_count=step.retry_count,
        timestamp=step.timestamp,
        input_hash=extra["input_hash"],
        output_hash=extra["output_hash"],
        rng_state_before=extra["rng_state_before"],
        idempotency_key=extra["idempotency_key"],
        replay_behavior=extra["replay_behavior"],
        source=extra["source"],
        level=extra["level"],
        is_synthetic=extra["is_synthetic"],
        synthetic_scenario_id=extra["synthetic_scenario_id"],
    )
