"""Proof bundles: everything needed to prove one run offline.

`run-proof-bundle/v1` holds a format-v1 trace. Values are as stored (JSON columns parsed,
numbers as the doubles they denote, timestamps as PostgreSQL prints them), so the verifier
recomputes every hash exactly as `verify` does.

`run-proof-bundle/v2` holds a format-v2 trace (docs/hash-chain-v2.md): every field of its
header, step and seal records, the columns of ours the chain is checked against
(genesis_hash, seal_hash, chain_position, prev_hash, step_hash), and the same ledger part.
Format v2 hashes every number exactly, and a JSON number survives no generic JSON reader
exactly (2^64 + 1, 0.10000000000000001 become doubles in pydantic, jq or JavaScript). So
every value a JSON reader could change (CARRIED_AS_TEXT) is carried as a JSON string holding
the text PostgreSQL prints for it (docs/ledger-v1.md, "Proof bundle"): the JSON columns (`plan`,
`trace`, `metadata`, `params`, `outcome_data`) as their jsonb text, `seed` (bigint) as its
digits, the double columns (`cost_cents`, `duration_ms`) as their float8 text (NaN and the
infinities included, which the verdict then names), timestamps as timestamptz text. The
verifier parses them with the format's own exact rules (integrity/canonical_v2.py).

The models spell their fields (pydantic needs them); they are the records' fields of
integrity/fields.py plus the stored hashes, and run_proof_pipeline_tests/test_fields.py pins
each model's field set to those names.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from run_proof_pipeline.integrity.fields import FieldType, fields_of_type

BUNDLE_FORMAT: Final = "run-proof-bundle/v1"
BUNDLE_FORMAT_V2: Final = "run-proof-bundle/v2"


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


# --- run-proof-bundle/v2 (format-v2 traces) -------------------------------------------------

# The stored text of a value a JSON reader could change (see the module docstring).
StoredText = str | None
# The fields a v2 bundle carries as StoredText: the JSON, timestamp and double columns, and
# seed (bigint). Export reads them as ::text, verify parses them (bundle/export.py, verify.py).
CARRIED_AS_TEXT: frozenset[str] = fields_of_type(
    FieldType.JSON, FieldType.TIMESTAMP, FieldType.DOUBLE
) | {"seed"}


class BundleTraceV2(_Strict):
    """The trace row: every header field (docs/hash-chain-v2.md "Records", in its order), the
    seal fields, and the stored genesis and seal."""

    chain_format: Literal[2]
    tenant_id: str
    run_id: str
    trace_id: str
    agent_id: str | None
    plan_id: str | None
    plan: StoredText
    started_at: StoredText
    created_at: StoredText
    correlation_id: str | None
    seed: StoredText
    frozen_timestamp: str | None
    plan_hash: str | None
    schema_version: str | None
    trace: StoredText
    stored_by: str | None
    checksum: str | None
    incident_id: str | None
    is_synthetic: bool | None
    synthetic_scenario_id: str | None
    # AOS's own root_hash column as the writer inserted it: covered by the header, never the
    # format's seal.
    aos_root_hash: str | None
    status: str | None
    completed_at: StoredText
    chain_length: int | None
    metadata: StoredText
    genesis_hash: str | None
    seal_hash: str | None


class BundleStepV2(_Strict):
    """One step row: every step field but the trace's own tenant_id, run_id and trace_id
    (the record takes them from the trace), its chain position and stored hashes (of
    run_proof_adopted_steps for an adopted trace)."""

    step_index: int
    chain_position: int | None
    skill_id: str | None
    skill_name: str | None
    params: StoredText
    status: str | None
    outcome_category: str | None
    outcome_code: str | None
    outcome_data: StoredText
    cost_cents: StoredText
    duration_ms: StoredText
    retry_count: int | None
    timestamp: StoredText
    input_hash: str | None
    output_hash: str | None
    rng_state_before: str | None
    idempotency_key: str | None
    replay_behavior: str | None
    source: str | None
    level: str | None
    is_synthetic: bool | None
    synthetic_scenario_id: str | None
    prev_hash: str | None
    step_hash: str | None


class ProofBundleV2(_Strict):
    format: Literal["run-proof-bundle/v2"] = BUNDLE_FORMAT_V2
    exported_at: str
    trace: BundleTraceV2
    steps: list[BundleStepV2]
    ledger: BundleLedger


AnyProofBundle = ProofBundle | ProofBundleV2
