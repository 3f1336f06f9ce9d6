"""The seed's Step 4: what a coordinator proof must show for the plan to pass."""

from __future__ import annotations

from dataclasses import dataclass

from run_proof_pipeline.coordinator.models import RunProofResult


@dataclass(frozen=True)
class Expectation:
    name: str
    expected: str
    found: str
    passed: bool


def check_expectations(result: RunProofResult, step_count: int) -> list[Expectation]:
    integrity = result.integrity
    trace_count = len(result.aos_traces)
    return [
        Expectation(
            "integrity_model", "HASH_CHAIN", integrity.model, integrity.model == "HASH_CHAIN"
        ),
        Expectation(
            "verification_status",
            "VERIFIED",
            integrity.verification_status,
            integrity.verification_status == "VERIFIED",
        ),
        Expectation(
            "chain_length",
            f"== step_count ({step_count})",
            str(integrity.chain_length),
            integrity.chain_length == step_count,
        ),
        Expectation("trace_count", ">= 1", str(trace_count), trace_count >= 1),
    ]


def describe_misses(result: RunProofResult, misses: list[Expectation]) -> str:
    """One message with the exact values found, the seed's "report the exact output"."""
    parts = [f"{m.name} = {m.found} (expected {m.expected})" for m in misses]
    integrity = result.integrity
    if integrity.verification_status == "UNSEALED":
        parts.append("the trace is UNSEALED: it is still being written; only its prefix verifies")
    if integrity.failure_reason:
        parts.append(f"failure_reason: {integrity.failure_reason}")
    return "Integrity expectations not met: " + "; ".join(parts)
