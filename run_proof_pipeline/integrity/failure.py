"""The first thing a proof found that did not verify (`IntegrityFailure`), and the one way a
report names where that was ("step 17", "header", "seal" or "ledger").

The fields are those docs/aos-compat.md gives AOS's callers (`location`, `step_index`, `rule`,
`expected`, `found`, `reason`, plus the stored `field`), and a segment worker sends them as
JSON (proof/segment_worker.py), so they stay as they are. `expected` is the recomputed value
and `found` the stored one (docs/aos-compat.md) for every rule, the ledger's rule 5 included:
a failure that compares two values is built from a Mismatch with IntegrityFailure.of(), which
maps them once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from run_proof_pipeline.integrity.mismatch import Mismatch

__all__ = ["FailureLocation", "IntegrityFailure", "first_bad"]

# Where a proof can fail, in the order a trace is checked (docs/hash-chain-v1.md, rules 1-5):
# the one definition of the vocabulary; the coordinator's FailureDetail takes it as it is.
FailureLocation = Literal["header", "step", "seal", "ledger"]


def first_bad(location: str, step_index: int | None) -> str:
    """Where a proof first failed, as every report says it: "step <index>" for a step, else
    the location ("header", "seal", "ledger")."""
    return f"step {step_index}" if location == "step" else location


@dataclass(frozen=True)
class IntegrityFailure:
    """The first thing that did not verify: where, which rule, recomputed (`expected`)
    against stored (`found`)."""

    location: FailureLocation
    step_index: int | None
    rule: int
    expected: str | None
    found: str | None
    reason: str
    field: str | None = None  # the stored column that disagrees, when there is one

    @classmethod
    def of(
        cls,
        location: FailureLocation,
        step_index: int | None,
        rule: int,
        mismatch: Mismatch,
        reason: str | None = None,
    ) -> IntegrityFailure:
        """The failure a Mismatch makes at `location`: expected = recomputed, found = stored
        (docs/aos-compat.md); its reason is `<where>: <the mismatch's text>` unless given."""
        return cls(
            location=location,
            step_index=step_index,
            rule=rule,
            expected=mismatch.recomputed,
            found=mismatch.stored,
            reason=reason
            if reason is not None
            else f"{first_bad(location, step_index)}: {mismatch.text()}",
            field=mismatch.field,
        )

    @classmethod
    def unhashable(
        cls, location: FailureLocation, step_index: int | None, rule: int, why: object
    ) -> IntegrityFailure:
        """A stored value outside the spec, so nothing can be recomputed to compare: no
        expected, no found; the reason says why (`<where>: stored values cannot be hashed
        (<why>)`)."""
        return cls(
            location=location,
            step_index=step_index,
            rule=rule,
            expected=None,
            found=None,
            reason=f"{first_bad(location, step_index)}: stored values cannot be hashed ({why})",
        )

    @property
    def where(self) -> str:
        """ "step 17", "header", "seal" or "ledger" (first_bad)."""
        return first_bad(self.location, self.step_index)

    @property
    def mismatch(self) -> Mismatch | None:
        """What differed (stored = `found`, recomputed = `expected`); None when the failure
        names no stored field (a value that cannot be hashed, say)."""
        if self.field is None:
            return None
        return Mismatch(self.field, stored=self.found, recomputed=self.expected)
