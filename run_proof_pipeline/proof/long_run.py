"""Prove one long sealed run in segments that are each read in a snapshot of their own, then
re-check in one final snapshot what binds them together (docs/hash-chain-v1.md, "Proving a
sealed run in separately snapshotted segments", says why that is sound and what it claims).

proof/segments.py proves a long run with workers that join the coordinator's exported
snapshot: one snapshot, one machine. Segments that may run in other processes or on other
machines (the Dagster job `run_proof_long_run`, defs/long_run/) cannot share it: an exported
snapshot lives only as long as the transaction that exported it. So here:

1. `plan_segments`: in one REPEATABLE READ snapshot, the header; a run that cannot be proved
   this way is refused (LongRunRefused and its kinds, nothing written); the step_index ranges
   are those of the parallel proof (index_span, segment_bounds).
2. `prove_segment`: one range in a REPEATABLE READ snapshot of its own, checked by
   verify_segment (the code the parallel proof's workers run); its result as plain values,
   picklable and JSON-able, so that it can cross processes.
3. `check_segments`: in ONE final snapshot, the header again (the fields the segments relied
   on must be unchanged), the results merged in order (ChainVerifier.feed_segment: the
   sequential verdict on the rows the segments read), every border and the first row re-read
   and re-hashed, the length counted, then the seal (rule 4) and the ledger anchor (rule 5).
   On a store that does not change while it runs the verdict is exactly the sequential
   proof's (proof.stream.prove_trace).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.errors import ExitCode, RunProofError
from run_proof_pipeline.integrity import (
    ChainVerifier,
    IntegrityFailure,
    SegmentResult,
    Verdict,
    VerificationStatus,
    first_bad,
    is_hex_hash,
)
from run_proof_pipeline.proof.anchors import lookup_anchor
from run_proof_pipeline.proof.segment_worker import (
    SegmentTask,
    result_from_json,
    result_to_json,
    verify_segment,
)
from run_proof_pipeline.proof.segments import index_span, segment_bounds
from run_proof_pipeline.proof.stream import StreamedProof, finish_proof, stored_trace
from run_proof_pipeline.settings import ConfigError, DatabaseUrl
from run_proof_pipeline.store.engine import run_on_connection
from run_proof_pipeline.store.snapshot import TraceRow, export_snapshot, read_trace, step_kind

__all__ = [
    "MAX_SEGMENTS",
    "LongRunAmbiguous",
    "LongRunNotFound",
    "LongRunRefused",
    "LongRunReport",
    "LongRunUnsealed",
    "LongRunUnsupported",
    "LongRunVanished",
    "SegmentOutcome",
    "SegmentPlan",
    "check_segments",
    "plan_segments",
    "prove_segment",
]

MAX_SEGMENTS = 64
# Progress from a segment's reader: every this many steps (verify_segment's `emit`).
PROGRESS_EVERY = 100_000


class LongRunRefused(RunProofError):
    """The run cannot be proved in separately snapshotted segments; nothing was read past its
    header and nothing was written."""

    exit_code: ClassVar[ExitCode] = ExitCode.FAILED
    prefix: ClassVar[str] = "long-run proof refused: "


class LongRunNotFound(LongRunRefused):
    """No such run for the tenant (another tenant's run reads exactly like a missing one)."""

    exit_code = ExitCode.NOT_FOUND


class LongRunAmbiguous(LongRunRefused):
    """No tenant given and several tenants hold the run id."""

    exit_code = ExitCode.USAGE


class LongRunUnsealed(LongRunRefused):
    """The run is still being written: no seal, and the ledger recorded none."""

    exit_code = ExitCode.UNSEALED


class LongRunUnsupported(LongRunRefused):
    """A legacy trace (no hash-chain format): there is nothing to prove."""

    exit_code = ExitCode.NOT_FOUND


class LongRunVanished(LongRunRefused):
    """The run's trace was there when the segments were planned and is gone at the final
    check."""

    exit_code = ExitCode.FAILED


@dataclass(frozen=True)
class SegmentPlan:
    """One segment to prove, as plain values (a Dagster output that may go to another
    process). The header fields here are the ones its rows are decoded and checked with;
    check_segments requires them unchanged in the final snapshot."""

    trace_id: str
    tenant_id: str
    run_id: str
    chain_format: int | None
    step_kind: str  # store.snapshot.StepKind: "v1", "v2" or "v2-adopted"
    sealed_length: int | None  # ChainVerifier.sealed_length of the header
    index: int  # 0 .. segments - 1, in step_index order
    segments: int
    lower: int | None  # first step_index of the range (None: from the start)
    upper: int | None  # step_index where the next range begins (None: to the end)
    expected_steps: int | None  # steps of the sealed chain 0..chain_length-1 in the range

    @property
    def mapping_key(self) -> str:
        return f"segment_{self.index}"

    def task(
        self, conninfo: str, snapshot: str, lower: int | None, upper: int | None
    ) -> SegmentTask:
        return SegmentTask(
            conninfo=conninfo,
            snapshot=snapshot,
            trace_id=self.trace_id,
            lower=lower,
            upper=upper,
            sealed_length=self.sealed_length,
            summary_limit=0,
            progress_every=PROGRESS_EVERY,
            step_kind=self.step_kind,
            tenant_id=self.tenant_id,
            run_id=self.run_id,
        )


@dataclass(frozen=True)
class SegmentOutcome:
    """What one segment found in its own snapshot: the integrity core's SegmentResult as JSON
    (`result`, proof.segment_worker.result_to_json: it carries the first row exactly as read,
    so that the merge gives the sequential verdict) and the same in words."""

    plan: SegmentPlan
    result: dict[str, Any]
    steps: int  # rows read, up to and including the first failure
    first_index: int | None
    first_prev_hash: str | None
    last_step_hash: str | None  # None when the segment failed inside or holds no rows
    first_bad: str | None  # "step 17" when a row after the first failed
    reason: str | None
    seconds: float

    def segment_result(self) -> SegmentResult:
        return result_from_json(self.result)


@dataclass(frozen=True)
class LongRunReport:
    """The verdict of the whole run, plain values (the check op's output)."""

    trace_id: str
    tenant_id: str
    run_id: str
    status: str  # VerificationStatus
    steps: int  # rows the proof took (up to the first failure)
    segments: int
    chain_length: int
    root_hash: str | None
    anchor: str
    first_bad: str | None
    rule: int | None
    reason: str | None
    expected: str | None
    found: str | None


# --- 1. the plan -------------------------------------------------------------------------


async def _only_tenant(conn: AsyncConnection, run_id: str) -> str:
    rows = (
        await conn.execute(
            text("SELECT DISTINCT tenant_id FROM aos_traces WHERE run_id = :run_id"),
            {"run_id": run_id},
        )
    ).all()
    if not rows:
        raise LongRunNotFound(f"no trace of run {run_id!r}")
    if len(rows) > 1:
        raise LongRunAmbiguous(f"run {run_id!r} is held by {len(rows)} tenants: give tenant_id")
    return str(rows[0][0])


def _expected_steps(lower: int | None, upper: int | None, sealed_length: int | None) -> int | None:
    if sealed_length is None:
        return None
    low = max(0, 0 if lower is None else lower)
    high = min(sealed_length, sealed_length if upper is None else upper)
    return max(0, high - low)


async def plan_segments(
    conn: AsyncConnection, run_id: str, tenant_id: str | None, segments: int
) -> list[SegmentPlan]:
    """The run's segments, read in the snapshot `conn` holds (store.snapshot.begin_snapshot).

    Refused (LongRunRefused's kinds): no such run for the tenant, several tenants holding the
    run id when none is given, a legacy trace, or a run that is not sealed and that the ledger
    recorded no seal of. A run whose seal columns were cleared while its ledger entry remains
    is proved (rule 5 fails it, as the sequential proof does)."""
    if isinstance(segments, bool) or not 1 <= segments <= MAX_SEGMENTS:
        raise ConfigError(f"segments must be from 1 to {MAX_SEGMENTS}, got {segments!r}")
    if not run_id:
        raise ConfigError("run_id is empty: name the sealed run to prove")
    if "\x00" in run_id or (tenant_id and "\x00" in tenant_id):
        # PostgreSQL text cannot hold U+0000: no stored run has this id.
        raise LongRunNotFound(f"no trace of run {run_id!r}")
    tenant = tenant_id or await _only_tenant(conn, run_id)
    trace = await read_trace(conn, tenant, run_id)
    if trace is None:
        raise LongRunNotFound(f"no trace of run {run_id!r} for tenant {tenant!r}")
    if trace.legacy:
        raise LongRunUnsupported(
            f"run {run_id!r} of tenant {tenant!r} is a legacy trace (no hash-chain format): "
            "adopt it first (`run-proof adopt`)"
        )
    lookup = await lookup_anchor(conn, trace)
    if trace.seal_hash is None and lookup.anchor is None and lookup.failure is None:
        raise LongRunUnsealed(
            f"run {run_id!r} of tenant {tenant!r} is not sealed (no seal_hash, no ledger "
            "entry): a run still being written is proved by `run-proof verify`"
        )
    sealed_length = ChainVerifier(stored_trace(trace)).sealed_length
    span = await index_span(conn, trace.trace_id)
    # No steps, or a row without a step_index: one range holding every row (a stream's).
    bounds: list[tuple[int | None, int | None]] = (
        [(None, None)] if span is None else segment_bounds(span[0], span[1], segments)
    )
    return [
        SegmentPlan(
            trace_id=trace.trace_id,
            tenant_id=trace.tenant_id,
            run_id=trace.run_id,
            chain_format=trace.chain_format,
            step_kind=step_kind(trace),
            sealed_length=sealed_length,
            index=index,
            segments=len(bounds),
            lower=lower,
            upper=upper,
            expected_steps=_expected_steps(lower, upper, sealed_length),
        )
        for index, (lower, upper) in enumerate(bounds)
    ]


# --- 2. one segment, in its own snapshot ---------------------------------------------------


def prove_segment(
    url: DatabaseUrl, plan: SegmentPlan, emit: Callable[[int], None] | None = None
) -> SegmentOutcome:
    """The segment's rows checked in a REPEATABLE READ snapshot of its own: a connection of
    its own begins it (begin_snapshot: pinned settings, the store's relations checked) and
    exports it for the COPY reader of verify_segment, which joins it. `emit(n)`: n more steps
    read."""
    started = time.perf_counter()

    async def work(conn: AsyncConnection) -> SegmentResult:
        snapshot = await export_snapshot(conn)
        task = plan.task(url.libpq(), snapshot, plan.lower, plan.upper)
        return verify_segment(task, emit)[0]

    result = run_on_connection(url, work, snapshot=True)
    first, failure = result.first, result.failure
    return SegmentOutcome(
        plan=plan,
        result=result_to_json(result),
        steps=result.steps,
        first_index=None if first is None else first.step_index,
        first_prev_hash=None if first is None else first.prev_hash,
        last_step_hash=None if result.head is None else result.head.hex(),
        first_bad=None if failure is None else failure.where,
        reason=None if failure is None else failure.reason,
        seconds=time.perf_counter() - started,
    )


# --- 3. the final check, in one snapshot ---------------------------------------------------


def _changed(index: int, field: str, verified: str | None, now: str | None) -> IntegrityFailure:
    """A row whose stored value is not, in the final snapshot, what its segment verified."""
    return IntegrityFailure(
        location="step",
        step_index=index,
        rule=3,
        expected=verified,
        found=now,
        field=field,
        reason=f"step {index}: changed after its segment was read: {field} verified as "
        f"{verified}, stored {now} in the final snapshot",
    )


def _header_change(plan: SegmentPlan, trace: TraceRow) -> IntegrityFailure | None:
    sealed_length = ChainVerifier(stored_trace(trace)).sealed_length
    then_now = [
        ("trace_id", plan.trace_id, trace.trace_id),
        ("chain_format", plan.chain_format, trace.chain_format),
        ("step kind", plan.step_kind, step_kind(trace)),
        ("chain_length", plan.sealed_length, sealed_length),
    ]
    for field, then, now in then_now:
        if then != now:
            return IntegrityFailure(
                location="header",
                step_index=None,
                rule=1,
                expected=None if then is None else str(then),
                found=None if now is None else str(now),
                field=field,
                reason=f"header: {field} changed while the segments were read "
                f"({then} when they were planned, {now} in the final snapshot)",
            )
    return None


def _digest(prev_hash: str | None, canonical: bytes | None) -> str | None:
    if canonical is None or not is_hex_hash(prev_hash):
        return None
    assert prev_hash is not None  # is_hex_hash says so
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical).hexdigest()


class _Rereader:
    """Rows of the trace re-read in the final snapshot (exported by its transaction and
    joined by verify_segment's reader, as a segment's is)."""

    def __init__(self, plan: SegmentPlan, conninfo: str, snapshot: str) -> None:
        self._plan, self._conninfo, self._snapshot = plan, conninfo, snapshot

    def rows(self, lower: int, upper: int) -> SegmentResult:
        plan = self._plan
        return verify_segment(plan.task(self._conninfo, self._snapshot, lower, upper))[0]


def _recheck_first(reread: _Rereader, outcome: SegmentResult) -> IntegrityFailure | None:
    """The first segment's first row, now, is exactly the row its segment read (the merge
    checked that row against the genesis of the final header)."""
    first = outcome.first
    assert first is not None and first.step_index is not None  # a merged, clean segment
    now = reread.rows(first.step_index, first.step_index + 1).first
    if now == first:
        return None
    what = "row" if now is None else "step_hash"
    return _changed(first.step_index, what, first.step_hash, None if now is None else now.step_hash)


def _recheck_border(
    reread: _Rereader, segment: SegmentResult, following: SegmentResult | None
) -> IntegrityFailure | None:
    """The segment's last row and the next segment's first, re-read together now: the last
    row must still hash to the head its segment computed, and the next row must still chain
    from it (prev_hash = that head) and hash to the step_hash its segment read."""
    head = segment.head
    assert head is not None  # a merged, clean, non-empty segment
    last = segment.next_index - 1
    now = reread.rows(last, last + (1 if following is None else 2))
    row = now.first
    if row is None or row.step_index != last:
        return _changed(last, "row", head.hex(), None)
    if row.step_hash != head.hex():
        return _changed(last, "step_hash", head.hex(), row.step_hash)
    recomputed = _digest(row.prev_hash, row.canonical)
    if recomputed != head.hex():
        # The same stored step_hash over other contents (or another prev_hash).
        return IntegrityFailure(
            location="step",
            step_index=last,
            rule=3,
            expected=recomputed,
            found=row.step_hash,
            field="step_hash",
            reason=f"step {last}: changed after its segment was read: its contents or "
            f"prev_hash now hash to {recomputed}, not to its stored step_hash {row.step_hash}",
        )
    if segment.checks_positions and row.chain_position != last:
        return _changed(last, "chain_position", str(last), str(row.chain_position))
    if following is None:
        return None
    nxt = following.first
    assert nxt is not None and nxt.step_index == segment.next_index  # the merge checked it
    if now.failure is not None:
        # The next row, re-read now, does not chain from this one (or is not at its place).
        return now.failure
    if now.steps < 2 or now.head is None:
        return _changed(segment.next_index, "row", nxt.step_hash, None)
    if now.head.hex() != nxt.step_hash:
        return _changed(segment.next_index, "step_hash", nxt.step_hash, now.head.hex())
    return None


async def _length_now(conn: AsyncConnection, trace_id: str) -> tuple[int, int | None]:
    row = (
        await conn.execute(
            text("SELECT count(*), max(step_index) FROM aos_trace_steps WHERE trace_id = :t"),
            {"t": trace_id},
        )
    ).one()
    return int(row[0]), None if row[1] is None else int(row[1])


def _length_change(count: int, highest: int | None, read: int) -> IntegrityFailure | None:
    if count == read and highest == (read - 1 if read else None):
        return None
    return IntegrityFailure(
        location="seal",
        step_index=None,
        rule=4,
        expected=str(read),
        found=str(count),
        field="step count",
        reason=f"seal: the trace holds {count} steps in the final snapshot (highest "
        f"step_index {highest}), its segments read {read}: steps were added or removed "
        "while the segments were read",
    )


def _ordered(outcomes: Sequence[SegmentOutcome]) -> list[SegmentOutcome]:
    ordered = sorted(outcomes, key=lambda o: o.plan.index)
    if not ordered:
        raise ValueError("no segment outcomes to check")
    plan = ordered[0].plan
    indexes = [o.plan.index for o in ordered]
    if indexes != list(range(plan.segments)):
        raise ValueError(f"segment outcomes {indexes} do not cover segments 0..{plan.segments - 1}")
    header = {
        replace(o.plan, index=0, lower=None, upper=None, expected_steps=None) for o in ordered
    }
    if len(header) != 1:
        raise ValueError("segment outcomes of different plans (runs or headers)")
    return ordered


def _failed(proof: StreamedProof, failure: IntegrityFailure) -> StreamedProof:
    verdict = replace(
        proof.verdict, status=VerificationStatus.FAILED, failure=failure, head_hash=None
    )
    return replace(proof, verdict=verdict, anchored=False)


async def check_segments(
    conn: AsyncConnection, conninfo: str, outcomes: Sequence[SegmentOutcome]
) -> LongRunReport:
    """The run's verdict from its segments' outcomes, re-checked in the snapshot `conn`
    holds (begin_snapshot); `conninfo` is where verify_segment's reader joins it.

    In order, the first failure wins: the header (found, and the fields the segments relied
    on unchanged), the merged segments (rules 1-3 as one stream would find them), then for a
    clean merge the first row, every border and the last row re-read and re-hashed, and the
    number of rows; then the seal (rule 4) and the anchor (rule 5), both read now."""
    ordered = _ordered(outcomes)
    plan = ordered[0].plan
    trace = await read_trace(conn, plan.tenant_id, plan.run_id)
    if trace is None:
        raise LongRunVanished(
            f"the trace of run {plan.run_id!r} of tenant {plan.tenant_id!r} is gone from "
            "aos_traces since its segments were planned"
        )
    verifier = ChainVerifier(stored_trace(trace))
    anchor = await lookup_anchor(conn, trace)
    changed = _header_change(plan, trace)
    if changed is not None:
        proof = _failed(finish_proof(verifier, 0, anchor), changed)
        return _report(plan, proof)
    results = [o.segment_result() for o in ordered]
    for result in results:
        if verifier.feed_segment(result) is not None:
            break
    recheck: IntegrityFailure | None = None
    if verifier.failure is None:
        reread = _Rereader(plan, conninfo, await export_snapshot(conn))
        filled = [r for r in results if r.first is not None]
        if filled:
            recheck = _recheck_first(reread, filled[0])
        for position, result in enumerate(filled):
            if recheck is not None:
                break
            following = filled[position + 1] if position + 1 < len(filled) else None
            recheck = _recheck_border(reread, result, following)
        if recheck is None:
            recheck = _length_change(*await _length_now(conn, trace.trace_id), verifier.steps_seen)
    proof = finish_proof(verifier, verifier.steps_seen, anchor)
    if recheck is not None:
        proof = _failed(proof, recheck)
    return _report(plan, proof)


def _report(plan: SegmentPlan, proof: StreamedProof) -> LongRunReport:
    verdict: Verdict = proof.verdict
    failure = verdict.failure
    return LongRunReport(
        trace_id=plan.trace_id,
        tenant_id=plan.tenant_id,
        run_id=plan.run_id,
        status=verdict.status.value,
        steps=proof.steps_read,
        segments=plan.segments,
        chain_length=verdict.chain_length,
        root_hash=verdict.root_hash,
        anchor=proof.anchor,
        first_bad=None if failure is None else first_bad(failure.location, failure.step_index),
        rule=None if failure is None else failure.rule,
        reason=verdict.failure_reason,
        expected=None if failure is None else failure.expected,
        found=None if failure is None else failure.found,
    )
