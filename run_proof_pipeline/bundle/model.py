"""The proof bundle, format `run-proof-bundle/v1`: everything needed to prove one run offline.

Values are as stored (JSON columns parsed, numbers as the doubles they denote, timestamps as
PostgreSQL prints them), so the verifier recomputes every hash exactly as `verify` does.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

BUNDLE_FORMAT = "run-proof-bundle/v1"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BundleTrace(_Strict):
    tenant_id: str
    run_id: str
    trace_id: str
    agent_id: str | None
    plan_id: str | None
    plan: Any
    started_at: str
    status: str | None
    completed_at: str | None
    genesis_hash: str | None
    root_hash: str | None
    chain_length: int | None


class BundleStep(_Strict):
    step_index: int
    skill_id: str | None
    skill_name: str | None
    params: Any
    status: str | None
    outcome_category: str | None
    outcome_code: str | None
    outcome_data: Any
    cost_cents: float | None
    duration_ms: float | None
    retry_count: int | None
    timestamp: str | None
    prev_hash: str | None
    step_hash: str | None


class BundleEntry(_Strict):
    seq: int
    kind: str
    tenant_id: str
    run_id: str
    trace_id: str
    chain_length: int
    root_hash: str
    recorded_at: str
    leaf_hash: str


class BundleLedger(_Strict):
    origin: str
    entry: BundleEntry | None
    # Tree size of `checkpoint` and the RFC 9162 inclusion proof of the entry under it (hex).
    tree_size: int | None = None
    inclusion_proof: list[str] = []
    checkpoint: str | None = None  # the signed note, verbatim


class ProofBundle(_Strict):
    format: Literal["run-proof-bundle/v1"] = BUNDLE_FORMAT
    exported_at: str
    trace: BundleTrace
    steps: list[BundleStep]
    ledger: BundleLedger
