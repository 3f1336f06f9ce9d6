"""Prove one long trace with several processes, inside the coordinator's one snapshot.

Every stored step carries its prev_hash, so a run can be cut into step_index ranges that
are verified independently (integrity.ChainSegment) and merged in order
(ChainVerifier.feed_segment) into exactly the verdict of one sequential stream.  The
coordinator's transaction exports its snapshot (`pg_export_snapshot()`); each worker
process joins it with `SET TRANSACTION SNAPSHOT`, so all of them read the same committed
state as the coordinator: a concurrent append or seal still cannot produce a false verdict.

Worth it only for long runs (a worker costs ~0.3 s of start-up); short ones stay in
process (proof.stream).  The workers are those of proof/workers.py (fresh interpreters,
started and stopped by their handles), which also say what a worker's failure was.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.integrity import ChainVerifier
from run_proof_pipeline.proof.anchors import lookup_anchor
from run_proof_pipeline.proof.segment_worker import SegmentTask, result_from_json
from run_proof_pipeline.proof.stream import StreamedProof, finish_proof, stored_trace
from run_proof_pipeline.proof.workers import WorkerError, WorkerJob, run_worker
from run_proof_pipeline.store.snapshot import (
    TraceRow,
    connection_conninfo,
    export_snapshot,
    step_kind,
)
from run_proof_pipeline.store.step_rows import DecodedStep

__all__ = [
    "DEFAULT_PARALLEL_MIN_STEPS",
    "SegmentWorkerError",
    "index_span",
    "prove_trace_in_segments",
    "run_segment_worker",
    "segment_bounds",
]

DEFAULT_PARALLEL_MIN_STEPS = 200_000
_JOB = "run_proof_pipeline.proof.segment_worker:verify_job"

ProgressSink = Callable[[int], None]


class SegmentWorkerError(WorkerError):
    """A segment worker could not finish (proof/workers.py): its message starts with
    "segment worker (exit N): ", passwords redacted; `unreachable` when the database could
    not be reached or went away."""


@dataclass(frozen=True)
class SegmentedProof:
    proof: StreamedProof
    summaries: list[DecodedStep]
    workers: int  # processes started


async def index_span(conn: AsyncConnection, trace_id: str) -> tuple[int, int] | None:
    """(lowest, highest) stored step_index of the trace in the snapshot, None if no steps
    or if any of its rows has a NULL step_index: ranges cannot hold such a row (min and
    max skip it), so that trace is proved in one stream, which counts and names every
    row. Three probes of the (trace_id, step_index) index, not a scan."""
    row = (
        await conn.execute(
            text(
                "SELECT min(step_index), max(step_index), EXISTS (SELECT 1 FROM aos_trace_steps"
                " WHERE trace_id = :trace_id AND step_index IS NULL) FROM aos_trace_steps"
                " WHERE trace_id = :trace_id"
            ),
            {"trace_id": trace_id},
        )
    ).first()
    if row is None or row[0] is None or row[2]:
        return None
    return int(row[0]), int(row[1])


def segment_bounds(low: int, high: int, segments: int) -> list[tuple[int | None, int | None]]:
    """Contiguous step_index ranges [lower, upper) covering everything: the first is open
    below and the last above, so no stored row (a negative or huge index) falls outside."""
    span = high - low + 1
    count = max(1, min(segments, span))
    cuts = [low + (span * i) // count for i in range(1, count)]
    lowers: list[int | None] = [None, *cuts]
    uppers: list[int | None] = [*cuts, None]
    return list(zip(lowers, uppers, strict=True))


async def run_segment_worker(
    task: SegmentTask, sink: ProgressSink, secret: str | None
) -> dict[str, Any]:
    """One worker process for one task: its final message (`result` and `summaries`), or
    SegmentWorkerError with the worker's own error text, `secret` replaced by ***."""
    outcome: dict[str, Any] = await run_worker(
        WorkerJob(_JOB, asdict(task)),
        lambda steps: sink(int(steps)),
        secret=secret,
        label="segment worker",
        error=SegmentWorkerError,
    )
    return outcome


async def prove_trace_in_segments(
    conn: AsyncConnection,
    trace: TraceRow,
    span: tuple[int, int],
    *,
    workers: int,
    summary_limit: int = 0,
    progress_every: int = 100_000,
    progress: ProgressSink | None = None,
) -> SegmentedProof:
    """Rules 1-5 for one trace whose row was read in the snapshot `conn` holds, its steps
    split over `workers` processes; results are those of proof.stream.prove_trace()."""
    snapshot = await export_snapshot(conn)
    conninfo, secret = await connection_conninfo(conn)  # to the workers over a pipe
    verifier = ChainVerifier(stored_trace(trace))
    tasks = [
        SegmentTask(
            conninfo=conninfo,
            snapshot=snapshot,
            trace_id=trace.trace_id,
            lower=lower,
            upper=upper,
            sealed_length=verifier.sealed_length,
            summary_limit=summary_limit,
            progress_every=progress_every,
            # A v2 trace's segments read its v2 columns (native or adopted) and check chain
            # positions; every row carries its prev_hash and position, so ranges still verify
            # on their own and merge into the sequential verdict (docs/hash-chain-v2.md).
            step_kind=step_kind(trace),
            tenant_id=trace.tenant_id,
            run_id=trace.run_id,
        )
        for lower, upper in segment_bounds(span[0], span[1], workers)
    ]
    done = 0

    def sink(steps: int) -> None:
        nonlocal done
        done += steps
        if progress is not None:
            progress(done)

    runs = [asyncio.ensure_future(run_segment_worker(task, sink, secret)) for task in tasks]
    summaries: list[DecodedStep] = []
    merged = 0  # segments fed to the verifier so far, in order
    try:
        pending = set(runs)
        while pending and verifier.failure is None:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            while merged < len(runs) and runs[merged].done() and verifier.failure is None:
                outcome = runs[merged].result()  # a worker's error is raised here
                merged += 1
                seen_before = verifier.steps_seen
                verifier.feed_segment(result_from_json(outcome["result"]))
                # Summaries as one sequential stream gathers them: up to the first failure.
                taken = verifier.steps_seen - seen_before
                for index, raw_summary in outcome["summaries"][:taken]:
                    if len(summaries) < summary_limit:
                        summaries.append(DecodedStep.from_summary_fields(index, raw_summary))
    finally:
        # After a failure the later segments cannot change the verdict (a stream would have
        # stopped reading there): stop their workers, as on any error.
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
    steps_read = verifier.steps_seen
    proof = finish_proof(verifier, steps_read, await lookup_anchor(conn, trace))
    return SegmentedProof(proof, summaries, len(tasks))
