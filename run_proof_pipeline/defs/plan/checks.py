"""The trace store asset and the checks every proof records against it."""

from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetSpec,
    Failure,
    MetadataValue,
    multi_asset_check,
)
from sqlalchemy.exc import DBAPIError

from run_proof_pipeline.coordinator.models import RunProofResult
from run_proof_pipeline.defs.resources import TraceStoreResource
from run_proof_pipeline.integrity import first_bad
from run_proof_pipeline.plan.queries import TraceRef
from run_proof_pipeline.plan.report import adoption_note
from run_proof_pipeline.settings import ConfigError, redact
from run_proof_pipeline.store.relations import UntrustedStore

TRACE_STORE = AssetKey("aos_traces")
HASH_CHAIN_CHECK = "hash_chain_integrity"
CHAIN_LENGTH_CHECK = "chain_length_matches_step_count"
SEAL_CHECK = "seal_present"

CHECK_DESCRIPTIONS = {
    HASH_CHAIN_CHECK: "Every hash of the proven run recomputes from its rows (format v1 or v2).",
    CHAIN_LENGTH_CHECK: "The proof's chain length equals the step rows counted in the DB.",
    SEAL_CHECK: "The proven run is sealed: its seal (seal_hash) and chain length are recorded.",
}

trace_store_spec = AssetSpec(
    TRACE_STORE,
    description="AI-agent run traces in PostgreSQL (aos_traces, aos_trace_steps).",
    group_name="run_proof",
    kinds={"postgres"},
)


def _short(value: str | None) -> str:
    return "—" if not value else f"{value[:12]}…"


CHECK_SPECS = [
    AssetCheckSpec(name, asset=TRACE_STORE, description=description)
    for name, description in CHECK_DESCRIPTIONS.items()
]


def proof_check_evaluations(
    trace: TraceRef, step_count: int, result: RunProofResult
) -> list[AssetCheckEvaluation]:
    integrity = result.integrity
    failure = integrity.failure
    metadata: dict[str, Any] = {
        "tenant_id": trace.tenant_id,
        "run_id": trace.run_id,
        "chain_length": integrity.chain_length,
        "step_count": step_count,
        "verification_status": integrity.verification_status,
        "root_hash": integrity.root_hash or "—",
        "root_hash_short": _short(integrity.root_hash),
        "elapsed_seconds": MetadataValue.float(round(result.elapsed_seconds, 4)),
        "first_bad": "—" if failure is None else first_bad(failure.location, failure.step_index),
        "expected": (failure.expected if failure else None) or "—",
        "found": (failure.found if failure else None) or "—",
        "anchor": integrity.anchor,
    }
    if integrity.failure_reason:
        metadata["failure_reason"] = integrity.failure_reason
    adoption = adoption_note(integrity.adopted_at)
    metadata["adopted_at"] = adoption
    summary = (
        f"{integrity.verification_status}: {trace.tenant_id}/{trace.run_id}, "
        f"chain {integrity.chain_length}/{step_count}"
        + (f", first bad {metadata['first_bad']}" if failure is not None else "")
        + ("" if integrity.adopted_at is None else f"; {adoption}")
    )
    outcomes = {
        HASH_CHAIN_CHECK: integrity.model == "HASH_CHAIN"
        and integrity.verification_status in ("VERIFIED", "UNSEALED"),
        CHAIN_LENGTH_CHECK: integrity.chain_length == step_count,
        SEAL_CHECK: integrity.sealed,
    }
    return [
        AssetCheckEvaluation(
            asset_key=TRACE_STORE,
            check_name=name,
            passed=passed,
            severity=AssetCheckSeverity.ERROR,
            metadata=metadata,
            # Per result, so rows of the check history tell runs apart at a glance.
            description=f"{CHECK_DESCRIPTIONS[name]} {summary}",
        )
        for name, passed in outcomes.items()
    ]


@multi_asset_check(
    specs=CHECK_SPECS,
    description="Prove the latest sealed trace now (the plan records the same checks per run).",
)
def trace_store_checks(
    context: AssetCheckExecutionContext, trace_store: TraceStoreResource
) -> Iterator[AssetCheckResult]:
    try:
        latest = trace_store.prove_latest_sealed()
    except ConfigError as exc:
        # A setting the proof needs (a checkpoint directory without a key, a worker count):
        # one line, as the plan's Step 3 says it (docs/bad-input.md), never a traceback.
        raise Failure(description=f"configuration error: {exc}") from None
    except UntrustedStore as exc:
        raise Failure(description=f"refusing to prove: {exc}") from None
    except DBAPIError as exc:
        detail = str(exc.orig or exc).strip().splitlines()
        raise Failure(
            description=redact(f"database error: {detail[0] if detail else exc}")
        ) from None
    if latest is None:
        for name in CHECK_DESCRIPTIONS:
            yield AssetCheckResult(
                asset_key=TRACE_STORE,
                check_name=name,
                passed=False,
                severity=AssetCheckSeverity.WARN,
                metadata={"reason": "no sealed trace in aos_traces"},
            )
        return
    for evaluation in proof_check_evaluations(latest.trace, latest.step_count, latest.proof):
        yield AssetCheckResult(
            asset_key=evaluation.asset_key,
            check_name=evaluation.check_name,
            passed=evaluation.passed,
            severity=evaluation.severity,
            metadata=evaluation.metadata,
            description=evaluation.description,
        )
