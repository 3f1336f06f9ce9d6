"""What a sweep found: counts, throughput and every failed run with its first bad step."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from run_proof_pipeline.integrity import VerificationStatus
from run_proof_pipeline.proof.stream import StreamedProof
from run_proof_pipeline.store.snapshot import TraceRow

# A sweep that finds everything broken must not hold a million failure records.
MAX_LISTED = 10_000


@dataclass(frozen=True)
class FailedRun:
    tenant_id: str
    run_id: str
    status: str
    # "step 17", "header", "seal" or "ledger" (IntegrityFailure.where); "trace" without one
    first_bad: str
    reason: str

    @classmethod
    def of(cls, trace: TraceRow, proof: StreamedProof) -> FailedRun:
        verdict = proof.verdict
        failure = verdict.failure
        return cls(
            tenant_id=trace.tenant_id,
            run_id=trace.run_id,
            status=verdict.status.value,
            # (A verdict that failed without a failure, e.g. UNSUPPORTED, names the trace.)
            first_bad="trace" if failure is None else failure.where,
            reason=verdict.failure_reason or "",
        )


@dataclass
class SweepReport:
    mode: str  # "incremental" | "full"
    runs: int = 0
    steps: int = 0
    verified: int = 0
    # The first MAX_LISTED failed runs; `failures` counts them all.
    failed: list[FailedRun] = field(default_factory=list)
    failures: int = 0
    elapsed_seconds: float = 0.0

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.failures == 0

    def add(self, trace: TraceRow, proof: StreamedProof) -> None:
        self.runs += 1
        self.steps += proof.steps_read
        if proof.verdict.status is VerificationStatus.VERIFIED:
            self.verified += 1
        else:
            self.failures += 1
            if len(self.failed) < MAX_LISTED:
                self.failed.append(FailedRun.of(trace, proof))

    def add_failed(self, failed: FailedRun) -> None:
        """A run that failed before any proof (e.g. the ledger recorded it, but its trace is
        no longer format v1 or v2): counted and listed like any other failed run."""
        self.runs += 1
        self.failures += 1
        if len(self.failed) < MAX_LISTED:
            self.failed.append(failed)

    def merge(self, other: SweepReport) -> None:
        self.runs += other.runs
        self.steps += other.steps
        self.verified += other.verified
        self.failures += other.failures
        self.failed.extend(other.failed[: max(0, MAX_LISTED - len(self.failed))])

    def to_json(self) -> dict[str, Any]:
        """Every field, exactly (a shard's report as it crosses the worker's pipe)."""
        return {**asdict(self), "failed": [asdict(f) for f in self.failed]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SweepReport:
        return cls(**{**data, "failed": [FailedRun(**f) for f in data["failed"]]})

    def to_dict(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "runs": self.runs,
            "steps": self.steps,
            "verified": self.verified,
            "failures": self.failures,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "steps_per_second": round(self.steps_per_second, 1),
            "failed_runs": [f.__dict__ for f in self.failed],
        }


@dataclass(frozen=True)
class SweepProgress:
    runs_done: int
    runs_total: int
    steps_done: int
    steps_total: int
    elapsed_seconds: float

    @property
    def steps_per_second(self) -> float:
        return self.steps_done / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        rate = self.steps_per_second
        if rate <= 0:
            return None
        return max(0.0, (self.steps_total - self.steps_done) / rate)

    def line(self) -> str:
        eta = self.eta_seconds
        return (
            f"{self.runs_done}/{self.runs_total} runs, {self.steps_done}/{self.steps_total} "
            f"steps, {self.steps_per_second:,.0f} steps/s, "
            f"ETA {'?' if eta is None else f'{eta:,.0f} s'}"
        )
