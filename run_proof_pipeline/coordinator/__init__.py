"""RunProofCoordinator: the seed's production path for a run's proof."""

from run_proof_pipeline.coordinator.models import (
    INTEGRITY_CONFIG,
    FailureDetail,
    IntegrityVerificationResult,
    RunProofResult,
    TraceStepSummary,
    TraceSummary,
)
from run_proof_pipeline.coordinator.run_proof import RunProofCoordinator, get_run_proof_coordinator

__all__ = [
    "INTEGRITY_CONFIG",
    "FailureDetail",
    "IntegrityVerificationResult",
    "RunProofCoordinator",
    "RunProofResult",
    "TraceStepSummary",
    "TraceSummary",
    "get_run_proof_coordinator",
]
