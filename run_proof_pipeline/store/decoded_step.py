"""A decoded step row: what the chain checks (its index, canonical form and stored hashes, or
why it has no canonical form) and, through LazyStepSummary (store/step_summary.py), what a
summary shows.

The decoders (store/step_row_decoder.py, step_line_decoder.py, step_rows_v2.py) make one per
stored row; feed_to() hands it to a ChainVerifier or a ChainSegment (integrity/verdicts.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from run_proof_pipeline.integrity import ChainSegment, ChainVerifier
from run_proof_pipeline.store.step_summary import LazyStepSummary

__all__ = ["DecodedStep", "DecodedStepV2"]


class DecodedStep(LazyStepSummary):
    """One decoded step.  Summary fields (names, numbers, parsed JSON) are decoded on first
    access when the step came from a raw line: the proof itself needs only the hashes."""

    __slots__ = ("step_index", "canonical", "prev_hash", "step_hash", "error")

    def __init__(
        self,
        # None: a stored row without one (AOS's column is nullable); it fails the proof.
        step_index: int | None,
        canonical: bytes | None,
        prev_hash: str | None,
        step_hash: str | None,
        skill_name: str | None = None,
        status: str | None = None,
        duration_ms: float | None = None,
        cost_cents: float | None = None,
        params: Any = None,
        outcome_data: Any = None,
        # Why the row cannot be canonicalized (a stored value outside the spec): FAILED there.
        error: str | None = None,
    ) -> None:
        self.step_index = step_index
        self.canonical = canonical
        self.prev_hash = prev_hash
        self.step_hash = step_hash
        self.error = error
        self._set_summary(skill_name, status, duration_ms, cost_cents, params, outcome_data)

    @classmethod
    def from_line(
        cls,
        step_index: int,
        canonical: bytes,
        prev_hash: str,
        step_hash: str,
        raw: tuple[bytes | None, ...],
    ) -> DecodedStep:
        step = cls.__new__(cls)
        step.step_index = step_index
        step.canonical = canonical
        step.prev_hash = prev_hash
        step.step_hash = step_hash
        step.error = None
        # The summary fields (SUMMARY_FIELDS order) as stored bytes.
        step._raw = raw
        return step

    @classmethod
    def from_summary_fields(cls, step_index: int | None, fields: Sequence[Any]) -> DecodedStep:
        """A step known by its summary_fields() only (e.g. sent back by a segment worker)."""
        step = cls(step_index, None, None, None)
        step._raw = tuple(fields)
        return step

    def feed_to(self, chain: ChainVerifier | ChainSegment) -> bool:
        """Feed this step to a verifier; True once reading on cannot change its finding
        (the first failure, or a segment's start that cannot verify)."""
        index = self.step_index
        # (A row without a step_index has no canonical form either: the chain names it.)
        if self.error is not None or self.canonical is None or index is None:
            return bool(chain.feed_unverifiable(index, self.error or ""))
        return bool(chain.feed_canonical(index, self.canonical, self.prev_hash, self.step_hash))

    def _key(self) -> tuple[Any, ...]:
        return (
            self.step_index,
            self.canonical,
            self.prev_hash,
            self.step_hash,
            self.skill_name,
            self.status,
            self.duration_ms,
            self.cost_cents,
            self.params,
            self.outcome_data,
            self.error,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DecodedStep) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable payloads (params) are not hashable

    def __repr__(self) -> str:
        return f"DecodedStep(step_index={self.step_index}, step_hash={self.step_hash!r})"


class DecodedStepV2(DecodedStep):
    """A v2 step: DecodedStep plus the chain position the database gave it."""

    __slots__ = ("chain_position",)
    chain_position: int | None  # None: the database did not chain the row (it FAILS)

    @classmethod
    def from_row(
        cls,
        index: int | None,
        canonical: bytes | None,
        chain_position: int | None,
        prev_hash: str | None,
        step_hash: str | None,
        raw: tuple[str | bytes | None, ...],
        error: str | None,
    ) -> DecodedStepV2:
        step = cls.__new__(cls)
        step.step_index = index  # None: a NULL step_index, FAILED
        step.canonical = canonical
        step.prev_hash = prev_hash
        step.step_hash = step_hash
        step.error = error
        step.chain_position = chain_position
        # The summary fields (SUMMARY_FIELDS order) as stored text (bytes from the compiled
        # path), decoded when shown.
        step._raw = raw
        return step

    def summary_fields(self) -> list[Any]:
        raw = self._raw
        if raw is not None:  # the stored text, not decoded yet
            return [v.decode() if isinstance(v, bytes) else v for v in raw]
        return super().summary_fields()

    def feed_to(self, chain: ChainVerifier | ChainSegment) -> bool:
        index = self.step_index
        if self.error is not None or self.canonical is None or index is None:
            return bool(chain.feed_unverifiable(index, self.error or "", self.chain_position))
        return bool(
            chain.feed_canonical(
                index,
                self.canonical,
                self.prev_hash,
                self.step_hash,
                chain_position=self.chain_position,
            )
        )
