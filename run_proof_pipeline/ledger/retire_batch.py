"""Batch retirement: a signed tombstone for every format run created before a date, ahead of
AOS's retention (issue 13 item 5, docs/existing-aos-database.md).

AOS's retention (`cleanup_old_traces`) copies every trace with `created_at` before its window
into `aos_traces_archive` and deletes them, in two set-based statements: one row the trace
guard refuses (a format trace with no tombstone) fails the whole job. So this retires the same
window first, one run at a time through `retirement.retire_run` (its own transaction, its
idempotence and its refusals), which then lets the guard pass every row of the window.

What is retired: every format trace (`chain_format` 1 or 2, native or adopted) whose
`created_at` is before the cut, sealed or not. AOS's retention deletes by `created_at`
whatever the status, so a trace still unsealed when its window closes would otherwise stop
AOS's job every day from then on; its tombstone names its head as it stands (retire_run's
rule for an unsealed run). Legacy traces (`chain_format` NULL) are never in the ledger and
need no tombstone: AOS deletes them as before. A run already retired counts as such and is
not signed again; a run retire_run refuses (ids reused, written to since its tombstone) is
reported, not retired, and the batch goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from run_proof_pipeline.ledger.keys import SigningKey
from run_proof_pipeline.ledger.retirement import Retirement, RetirementError, retire_run


class RetireSelection(BaseModel):
    created_before: datetime
    tenant_id: str | None = None


class RefusedRun(BaseModel):
    tenant_id: str
    run_id: str
    trace_id: str
    reason: str


class BatchRetirementReport(BaseModel):
    examined: int
    retired: list[Retirement]
    already_retired: list[Retirement]
    refused: list[RefusedRun]


@dataclass(frozen=True)
class RetireBatchDone:
    batch: int
    examined: int
    retired: int
    already_retired: int
    refused: int


RetireProgress = Callable[[RetireBatchDone], None]


@dataclass(frozen=True)
class _Candidate:
    created_at: str
    trace_id: str
    tenant_id: str
    run_id: str


# Keyset pages over (created_at, trace_id): AOS's idx_aos_traces_created_at serves the range,
# and a run retired (or deleted by AOS) meanwhile does not shift the pages. Bound parameters
# only: an absent tenant filter is a NULL parameter.
# created_at travels as text and back as a bound timestamptz: '-infinity', which the column
# can hold, is no driver error here.
_CANDIDATES = text(
    "SELECT created_at::text AS created_at, trace_id, tenant_id, run_id FROM aos_traces"
    " WHERE chain_format IS NOT NULL AND created_at < :created_before"
    " AND (CAST(:tenant_id AS text) IS NULL OR tenant_id = :tenant_id)"
    " AND (CAST(:after_created AS text) IS NULL OR (created_at, trace_id)"
    "      > (CAST(CAST(:after_created AS text) AS timestamptz), :after_trace))"
    " ORDER BY created_at, trace_id LIMIT :size"
)


async def _page(
    engine: AsyncEngine, selection: RetireSelection, after: _Candidate | None, size: int
) -> list[_Candidate]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            _CANDIDATES,
            {
                "created_before": selection.created_before,
                "tenant_id": selection.tenant_id,
                "after_created": None if after is None else after.created_at,
                "after_trace": None if after is None else after.trace_id,
                "size": size,
            },
        )
        return [_Candidate(r.created_at, r.trace_id, r.tenant_id, r.run_id) for r in rows]


async def retire_created_before(
    engine: AsyncEngine,
    selection: RetireSelection,
    reason: str,
    key: SigningKey,
    *,
    batch_size: int = 200,
    progress: RetireProgress | None = None,
) -> BatchRetirementReport:
    """Retire every format run of the selection (one transaction each); idempotent."""
    if selection.created_before.tzinfo is None:
        raise RetirementError("created_before needs a UTC offset")
    if not reason.strip():
        raise RetirementError("a retirement needs a reason (--reason)")
    retired: list[Retirement] = []
    already: list[Retirement] = []
    refused: list[RefusedRun] = []
    examined = 0
    after: _Candidate | None = None
    batch = 0
    while candidates := await _page(engine, selection, after, batch_size):
        batch += 1
        after = candidates[-1]
        for candidate in candidates:
            examined += 1
            try:
                # The trace selected, not whichever format trace its run id names.
                outcome = await retire_run(
                    engine,
                    candidate.tenant_id,
                    candidate.run_id,
                    reason,
                    key,
                    trace_id=candidate.trace_id,
                )
            except RetirementError as exc:
                refused.append(_refused(candidate, str(exc)))
                continue
            except ValidationError:
                # A format-v2 trace whose header could not be hashed has no hash to name
                # (docs/hash-chain-v2.md "Never raises"): reported, the batch goes on.
                why = "it has no hash for a tombstone to name (its header could not be hashed)"
                refused.append(_refused(candidate, why))
                continue
            (retired if outcome.newly_retired else already).append(outcome)
        if progress is not None:
            progress(RetireBatchDone(batch, examined, len(retired), len(already), len(refused)))
    return BatchRetirementReport(
        examined=examined, retired=retired, already_retired=already, refused=refused
    )


def _refused(candidate: _Candidate, reason: str) -> RefusedRun:
    return RefusedRun(
        tenant_id=candidate.tenant_id,
        run_id=candidate.run_id,
        trace_id=candidate.trace_id,
        reason=reason,
    )
