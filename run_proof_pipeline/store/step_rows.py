"""Turn a streamed step row (text columns, as COPY sends them) into what the proof needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from run_proof_pipeline.coordinator.models import TraceStepSummary
from run_proof_pipeline.integrity import (
    CanonicalizationError,
    InvalidTimestamp,
    parse_stored_json,
    step_canonical_bytes,
)


@dataclass(frozen=True, slots=True)
class DecodedStep:
    step_index: int
    canonical: bytes | None
    prev_hash: str | None
    step_hash: str | None
    skill_name: str | None
    status: str | None
    duration_ms: float | None
    cost_cents: float | None
    params: Any
    outcome_data: Any
    # Why the row cannot be canonicalized (a stored value outside the spec): FAILED there.
    error: str | None = None

    def summary(self, include_payloads: bool) -> TraceStepSummary:
        return TraceStepSummary(
            step_index=self.step_index,
            skill_name=self.skill_name,
            status=self.status,
            duration_ms=self.duration_ms,
            cost_cents=self.cost_cents,
            params=self.params if include_payloads else None,
            outcome_data=self.outcome_data if include_payloads else None,
        )


def _number(value: str | None) -> float | None:
    return None if value is None else float(value)


def _json(value: str | None) -> Any:
    return None if value is None else parse_stored_json(value)


class StepRowDecoder:
    """Decodes rows in the column order of `snapshot.STEP_COLUMNS`."""

    def decode(self, row: tuple[str | None, ...]) -> DecodedStep:
        (
            step_index,
            tenant_id,
            run_id,
            skill_id,
            skill_name,
            params_text,
            status,
            outcome_category,
            outcome_code,
            outcome_data_text,
            cost_cents_text,
            duration_ms_text,
            retry_count,
            timestamp,
            prev_hash,
            step_hash,
        ) = row
        index = int(step_index)  # type: ignore[arg-type]  # NOT NULL column
        params = _json(params_text)
        outcome_data = _json(outcome_data_text)
        cost_cents = _number(cost_cents_text)
        duration_ms = _number(duration_ms_text)
        canonical: bytes | None = None
        error: str | None = None
        try:
            canonical = step_canonical_bytes(
                tenant_id=tenant_id,
                run_id=run_id,
                step_index=index,
                skill_id=skill_id,
                skill_name=skill_name,
                params=params,
                status=status,
                outcome_category=outcome_category,
                outcome_code=outcome_code,
                outcome_data=outcome_data,
                cost_cents=cost_cents,
                duration_ms=duration_ms,
                retry_count=None if retry_count is None else int(retry_count),
                timestamp=timestamp,
            )
        except (CanonicalizationError, InvalidTimestamp) as exc:
            error = f"step {index}: stored value is not representable in format v1: {exc}"
        return DecodedStep(
            step_index=index,
            canonical=canonical,
            prev_hash=prev_hash,
            step_hash=step_hash,
            skill_name=skill_name,
            status=status,
            duration_ms=duration_ms,
            cost_cents=cost_cents,
            params=params,
            outcome_data=outcome_data,
            error=error,
        )
