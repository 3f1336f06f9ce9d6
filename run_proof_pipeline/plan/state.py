"""What the plan has established so far; each step passes it on with its own findings added,
so every op depends on the one before it and runs only when that one passed."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from run_proof_pipeline.coordinator.models import RunProofResult
from run_proof_pipeline.plan.queries import TraceRef


@dataclass(frozen=True)
class PlanState:
    db_url: str
    trace: TraceRef | None = None
    step_count: int | None = None
    proof: RunProofResult | None = None
    pytest_result: str | None = None
    # The trace the coordinator proves (store.snapshot.read_trace's choice for the tenant and
    # run id Step 1 found), resolved in Step 1; Step 2 counts its steps by this id.
    trace_id: str | None = None
    # Where the seed's SQL picked or counted other traces than the proven one: named.
    notes: tuple[str, ...] = ()

    def with_(self, **changes: Any) -> PlanState:
        return replace(self, **changes)

    @property
    def found(self) -> TraceRef:
        assert self.trace is not None, "Step 1 did not record a trace"
        return self.trace

    @property
    def counted(self) -> int:
        assert self.step_count is not None, "Step 2 did not record a step count"
        return self.step_count

    @property
    def proven(self) -> RunProofResult:
        assert self.proof is not None, "Step 3 did not record a proof"
        return self.proof
