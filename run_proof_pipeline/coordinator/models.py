"""The coordinator's result, with the names and values AOS callers know (aos-compat.md).

Fields beyond the AOS ones are additions, never renames.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from run_proof_pipeline.integrity.failure import FailureLocation

# The vocabularies are the integrity core's: `VerificationStatus` and `IntegrityModel`
# (integrity/verdicts.py), and `FailureLocation` (integrity/failure.py), taken as it is. A
# Literal cannot be built from an enum, so run_proof_pipeline_tests/test_error_model.py checks
# the first two against their source, and every location the package writes.
IntegrityModelName = Literal["HASH_CHAIN", "MERKLE_TREE", "NONE"]
VerificationStatusName = Literal["VERIFIED", "UNSEALED", "FAILED", "UNSUPPORTED"]
FailureLocationName = FailureLocation

INTEGRITY_CONFIG: dict[str, str] = {
    "model": "HASH_CHAIN",
    "trust_boundary": "SYSTEM",
    "storage": "POSTGRES",
}


class FailureDetail(BaseModel):
    """Where a proof failed: the first offending step (or header, seal, ledger)."""

    model_config = ConfigDict(frozen=True)

    location: FailureLocationName
    step_index: int | None = None
    rule: int
    expected: str | None = None
    found: str | None = None
    reason: str


class IntegrityVerificationResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: IntegrityModelName
    root_hash: str | None
    chain_length: int
    verification_status: VerificationStatusName
    failure_reason: str | None = None
    # Ours: structured failure, seal state and the anchor that rule 5 compared against.
    failure: FailureDetail | None = None
    sealed: bool = False
    genesis_hash: str | None = None
    head_hash: str | None = None
    anchored: bool = False
    # Which anchor rule 5 applied: "none", "ledger only[: why]", or "signed checkpoint of size
    # N and origin O" (proof/anchors.py), so a dropped signed check is never silent.
    anchor: str = "none"
    adopted_at: datetime | None = None


class TraceSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    trace_id: str
    run_id: str
    status: str
    step_count: int
    started_at: datetime
    completed_at: datetime | None = None


class TraceStepSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    # None for a stored row without a step_index (AOS's column is nullable): it fails the proof.
    step_index: int | None
    skill_name: str | None
    status: str | None
    duration_ms: float | None
    cost_cents: float | None
    params: Any = None
    outcome_data: Any = None


class RunProofResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_id: str
    tenant_id: str
    integrity: IntegrityVerificationResult
    aos_traces: list[TraceSummary]
    aos_trace_steps: list[TraceStepSummary]
    raw_logs: list[str] | None = None
    verified_at: datetime
    # Ours: how many step rows the proof read (summaries may be capped; the proof is not).
    steps_read: int = 0
    step_summaries_truncated: bool = False
    elapsed_seconds: float = 0.0
    # Processes that proved a long run in parallel segments; 0: proved in this process.
    segment_workers: int = 0
    # Which path decoded and hashed the run's rows (format v1 or v2): "native"
    # (store/_native_line.c) or "pure (why)" (store/native_line.py).
    decode_path: str = "pure"
