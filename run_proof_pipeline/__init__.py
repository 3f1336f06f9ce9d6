"""run-proof: proves that AI-agent execution traces in PostgreSQL have not been altered.

`get_run_proof_coordinator` and `get_session` are the seed plan's production-path names.
Dagster is imported only by `run_proof_pipeline.definitions`, never from here, so the CLI's
verify path stays light.
"""

from run_proof_pipeline.coordinator import RunProofCoordinator, get_run_proof_coordinator
from run_proof_pipeline.store.engine import get_session

__all__ = ["RunProofCoordinator", "get_run_proof_coordinator", "get_session"]
