"""Rule 5 of the spec: the root recorded outside the trace tables.

Until a ledger exists in the database there is no anchor to compare with: every lookup
answers "no anchor, no failure", and verdicts say they were not anchored.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.integrity import Anchor, IntegrityFailure
from run_proof_pipeline.store.snapshot import TraceRow


@dataclass(frozen=True)
class AnchorLookup:
    anchor: Anchor | None = None
    # A ledger-level failure found before any hashing (e.g. a sealed trace with no entry).
    failure: IntegrityFailure | None = None


async def lookup_anchor(conn: AsyncConnection, trace: TraceRow) -> AnchorLookup:
    return AnchorLookup()
