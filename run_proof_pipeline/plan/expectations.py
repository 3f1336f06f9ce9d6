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


def check_expectations(
    result: RunProofResult, step_count: int, trace_id: str | None = None
) -> list[Expectation]:
    """With `trace_id` (the trace whose steps Step 2 counted), the proof must be of that
    trace: otherwise its chain_length would be compared with another trace's count."""
    integrity = result.integrity
    trace_count = len(result.aos_traces)
    proven = ", ".join(t.trace_id for t in result.aos_traces) or "none"
    counted = (
        []
        if trace_id is None
        else [
            Expectation(
                "trace_id",
                f"== the trace counted in Step 2 ({trace_id})",
                proven,
                [t.trace_id for t in result.aos_traces] == [trace_id],
            )
        ]
    )
    return counted + [
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
