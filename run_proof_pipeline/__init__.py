"""run-proof: proves that AI-agent execution traces in PostgreSQL have not been altered.

`get_run_proof_coordinator` and `get_session` are the seed plan's production-path names.
They load on first use (PEP 562), so that importing a light module of this package (the
integrity core, a segment worker) does not pull in SQLAlchemy and pydantic.  Dagster is
imported only by `run_proof_pipeline.definitions`, never from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from run_proof_pipeline.coordinator import RunProofCoordinator, get_run_proof_coordinator
    from run_proof_pipeline.store.engine import get_session

__all__ = ["RunProofCoordinator", "get_run_proof_coordinator", "get_session"]


def __getattr__(name: str) -> Any:
    if name in ("RunProofCoordinator", "get_run_proof_coordinator"):
        from run_proof_pipeline import coordinator

        return getattr(coordinator, name)
    if name == "get_session":
        from run_proof_pipeline.store.engine import get_session

        return get_session
    raise AttributeError(f"module 'run_proof_pipeline' has no attribute {name!r}")
