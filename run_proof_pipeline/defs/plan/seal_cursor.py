"""Where the new-seal sensor stands, so that it misses no seal.

`seal_seq` comes from a sequence, and sequence numbers are handed out when a seal is written,
not when it commits: two producers sealing at once can commit n+1 before n (a format-v2
seal takes its number inside AOS's completing UPDATE, from migration 0006's trigger, so the
writer's transaction decides when it shows: docs/hash-chain-v2.md "When a trace is sealed").
A cursor that only kept the highest number seen would skip n for good. So the cursor also
keeps the lower numbers it has not seen yet, and looks for them again on every tick until they
show up, or until they are old enough to be rolled-back seals (whose numbers stay unused forever).
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, Field, ValidationError

# A seal is one short transaction; a number still unseen after this long was rolled back.
PENDING_SECONDS = 3600.0
# Bounds the cursor (and the query's IN list) should many seals roll back at once.
MAX_PENDING = 1000


class SealCursor(BaseModel):
    high: int = Field(ge=0, description="Highest seal_seq seen")
    pending: dict[int, float] = Field(
        default_factory=dict,
        description="seal_seq numbers below `high` not seen yet -> when first missed (epoch s)",
    )

    @classmethod
    def parse(cls, raw: str | None) -> SealCursor | None:
        """None for a sensor that has never ticked. A bare number is the cursor of the sensor's
        first version, which kept only the highest number seen."""
        if not raw:
            return None
        if raw.strip().isdigit():
            return cls(high=int(raw))
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            raise ValueError(f"unreadable new-seal sensor cursor {raw!r}: {exc}") from None

    def dump(self) -> str:
        return self.model_dump_json()

    def advance(self, seen: Iterable[int], now: float) -> SealCursor:
        """The cursor after a tick that saw the numbers `seen` (every visible seal above `high`
        up to the batch's last, and whichever pending ones turned up)."""
        found = set(seen)
        high = max(found | {self.high})
        pending = {
            number: since
            for number, since in self.pending.items()
            if number not in found and now - since < PENDING_SECONDS
        }
        for number in range(max(self.high + 1, high - MAX_PENDING), high):
            if number not in found:
                pending[number] = now
        kept = sorted(pending)[-MAX_PENDING:]
        return SealCursor(high=high, pending={number: pending[number] for number in kept})
