"""Prove one trace inside an open snapshot, streaming its steps: constant memory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace

from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.integrity import (
    ChainVerifier,
    StoredTrace,
    Verdict,
    VerificationStatus,
)
from run_proof_pipeline.proof.anchors import AnchorLookup, lookup_anchor, lookup_anchors
from run_proof_pipeline.store.copy_reader import SnapshotCopyReader
from run_proof_pipeline.store.snapshot import (
    TraceRow,
    copies_utf8,
    many_step_lines_statement,
    stream_many_step_lines,
    stream_step_lines,
    stream_step_rows,
)
from run_proof_pipeline.store.step_rows import (
    DecodedStep,
    StepLineDecoder,
    StepRowDecoder,
    unescape_copy_field,
)

# Called with every decoded step (summaries, progress); keep it cheap.
StepObserver = Callable[[DecodedStep], None]


@dataclass(frozen=True)
class StreamedProof:
    verdict: Verdict
    steps_read: int
    anchored: bool
    anchor: str = "none"  # which anchor applied (AnchorLookup.description)


def stored_trace(trace: TraceRow) -> StoredTrace:
    return StoredTrace(
        tenant_id=trace.tenant_id,
        run_id=trace.run_id,
        trace_id=trace.trace_id,
        agent_id=trace.agent_id,
        plan_id=trace.plan_id,
        plan=trace.plan,
        started_at=trace.started_at,
        status=trace.status,
        completed_at=trace.completed_at,
        genesis_hash=trace.genesis_hash,
        root_hash=trace.root_hash,
        chain_length=trace.chain_length,
    )


def finish_proof(verifier: ChainVerifier, steps: int, lookup: AnchorLookup) -> StreamedProof:
    verdict = verifier.finish(lookup.anchor)
    if lookup.failure is not None and verdict.failure is None:
        verdict = replace(verdict, status=VerificationStatus.FAILED, failure=lookup.failure)
    return StreamedProof(
        verdict, steps, anchored=lookup.anchor is not None, anchor=lookup.description
    )


async def prove_trace(
    conn: AsyncConnection, trace: TraceRow, *, observe: StepObserver | None = None
) -> StreamedProof:
    """Rules 1-5 for one trace whose row was read in the snapshot `conn` holds."""
    verifier = ChainVerifier(stored_trace(trace))
    steps_read = 0
    # aclosing: leaving early ends the COPY now, before rule 5 needs the connection.
    async with aclosing(_decoded_steps(conn, trace.trace_id)) as steps:
        async for step in steps:
            steps_read += 1
            if observe is not None:
                observe(step)
            if step.feed_to(verifier):
                # The first failure is the verdict; reading on would only cost time.
                break
    return finish_proof(verifier, steps_read, await lookup_anchor(conn, trace))


async def prove_traces(
    conn: AsyncConnection,
    traces: Sequence[TraceRow],
    *,
    reader: SnapshotCopyReader | None = None,
) -> list[tuple[TraceRow, StreamedProof]]:
    """prove_trace() for a batch of traces read in the snapshot `conn` holds, with one COPY
    for all their steps (a sweep's many short runs); results in the order of `traces`.

    With a `reader` that has joined that snapshot, the steps are read through it, in a
    blocking loop: meant for a process that does nothing else meanwhile (a sweep shard)."""
    if reader is None and not await copies_utf8(conn):
        return [(trace, await prove_trace(conn, trace)) for trace in traces]
    batch = _Batch(traces)
    if reader is not None:
        # A plain loop over the sync reader: no async-generator round per line.
        feed = batch.feed_line
        for line in reader.lines(many_step_lines_statement(list(batch.verifiers))):
            feed(line)
    else:
        async for line in stream_many_step_lines(conn, list(batch.verifiers)):
            batch.feed_line(line)
    # Rule 5 reads the ledger: only once the COPY is over, the connection is free again.
    anchors = await lookup_anchors(conn, traces)
    return [
        (
            trace,
            finish_proof(
                batch.verifiers[trace.trace_id],
                batch.counts[trace.trace_id],
                anchors[trace.trace_id],
            ),
        )
        for trace in traces
    ]


class _Batch:
    """The verifiers of a batch of traces, fed COPY lines that start with the trace_id."""

    def __init__(self, traces: Sequence[TraceRow]) -> None:
        self.verifiers = {trace.trace_id: ChainVerifier(stored_trace(trace)) for trace in traces}
        self.counts = dict.fromkeys(self.verifiers, 0)
        self._decided: set[str] = set()
        self._decoder = StepLineDecoder()
        self._current_raw = b""
        self._current = ""

    def feed_line(self, line: bytes) -> None:
        raw_id, _, rest = line.partition(b"\t")
        if raw_id != self._current_raw:
            self._current_raw = raw_id
            self._current = (unescape_copy_field(raw_id) or b"").decode()
        current = self._current
        if current in self._decided:
            return  # the rest of a trace that already failed
        self.counts[current] += 1
        if self._decoder.decode(rest).feed_to(self.verifiers[current]):
            self._decided.add(current)


async def _decoded_steps(conn: AsyncConnection, trace_id: str) -> AsyncIterator[DecodedStep]:
    if await copies_utf8(conn):
        lines = StepLineDecoder()
        async with aclosing(stream_step_lines(conn, trace_id)) as raw:
            async for line in raw:
                yield lines.decode(line)
        return
    # Another client encoding: let psycopg decode the text first.
    rows = StepRowDecoder()
    async with aclosing(stream_step_rows(conn, trace_id)) as text_rows:
        async for row in text_rows:
            yield rows.decode(row)
