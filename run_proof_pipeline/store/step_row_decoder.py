"""The general decoder of a format-v1 step row: text values in, a DecodedStep out.

It takes a row of text values (None for NULL) in STEP_COLUMNS order (store/step_columns.py),
decodes each by its column type (store/column_text.py) and builds C(step) with the integrity
core's encoder. It is the reference the fast line decoder (store/step_line_decoder.py) equals
byte for byte, and where that decoder sends every row it cannot take whole.
"""

from __future__ import annotations

from run_proof_pipeline.integrity import (
    CanonicalizationError,
    InvalidTimestamp,
    parse_stored_json,
    step_canonical_bytes,
)
from run_proof_pipeline.store.column_text import StoredValueError, strict_float, strict_int
from run_proof_pipeline.store.decoded_step import DecodedStep

__all__ = ["StepRowDecoder"]


class StepRowDecoder:
    """Decodes rows in the column order of `STEP_COLUMNS`."""

    def decode(self, row: tuple[str | None, ...]) -> DecodedStep:
        # Unpacked by position, in STEP_COLUMNS order (the read path's speed; the order is
        # pinned by run_proof_pipeline_tests/test_fields.py).
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
        if step_index is None:
            # AOS's step_index is nullable: such a row is counted and fails the proof, named
            # (the verifier reports "step_index is not an integer (..., found None)").
            return DecodedStep(None, None, prev_hash, step_hash, error="step_index is NULL")
        try:
            index = strict_int(step_index)
        except StoredValueError as exc:
            return DecodedStep(None, None, prev_hash, step_hash, error=str(exc))
        params = None if params_text is None else parse_stored_json(params_text)
        outcome_data = None if outcome_data_text is None else parse_stored_json(outcome_data_text)
        canonical: bytes | None = None
        error: str | None = None
        cost_cents = duration_ms = None
        try:
            cost_cents = None if cost_cents_text is None else strict_float(cost_cents_text)
            duration_ms = None if duration_ms_text is None else strict_float(duration_ms_text)
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
                retry_count=None if retry_count is None else strict_int(retry_count),
                timestamp=timestamp,
            )
        except (CanonicalizationError, InvalidTimestamp, StoredValueError) as exc:
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
