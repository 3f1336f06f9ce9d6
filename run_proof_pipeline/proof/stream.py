"""Prove one trace inside an open snapshot, streaming its steps: constant memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.integrity import (
    CanonicalizationError,
    ChainVerifier,
    StoredTrace,
    Verdict,
    VerificationStatus,
)
from run_proof_pipeline.integrity.canonical import UnrepresentableNesting
from run_proof_pipeline.integrity.canonical_v2 import parse_stored_json_v2
from run_proof_pipeline.integrity.fields import HEADER_V2_ONLY_FIELDS, column_of
from run_proof_pipeline.proof.anchors import AnchorLookup, lookup_anchor, lookup_anchors
from run_proof_pipeline.store.copy_reader import SnapshotCopyReader
from run_proof_pipeline.store.line_walk import LINE_BATCH, LineWalk
from run_proof_pipeline.store.native_line import native_enabled
from run_proof_pipeline.store.snapshot import (
    StepKind,
    TraceRow,
    connection_conninfo,
    copies_utf8,
    export_snapshot,
    many_step_lines_statement,
    step_kind,
    step_lines_statement,
    stream_many_step_lines,
    stream_step_lines,
    stream_step_lines_v2,
    stream_step_rows,
    stream_step_rows_v2,
)
from run_proof_pipeline.store.step_rows import (
    DecodedStep,
    StepLineDecoder,
    StepRowDecoder,
    unescape_copy_field,
)
from run_proof_pipeline.store.step_rows_v2 import StepV2Decoder

# Called with every decoded step (summaries, progress); keep it cheap.
StepObserver = Callable[[DecodedStep], None]


@dataclass(frozen=True)
class StreamedProof:
    verdict: Verdict
    steps_read: int
    anchored: bool
    anchor: str = "none"  # which anchor applied (AnchorLookup.description)


def _exact_json(text: str | None) -> Any:
    """A v2 jsonb column's text as a value with exact numbers.  A text the format cannot
    read (nested past the limit) stands as an UnrepresentableNesting: canonicalize_v2
    refuses it naming the field, so the header FAILS there (docs/json-nesting.md) instead of
    hashing a look-alike."""
    if text is None:
        return None
    try:
        return parse_stored_json_v2(text)
    except CanonicalizationError as exc:
        return UnrepresentableNesting(str(exc))


def stored_trace(trace: TraceRow) -> StoredTrace:
    """The trace row as the integrity core checks it.  `root_hash` is the format's seal,
    `seal_hash`, for v1 and v2 (docs/hash-chain-v2.md "Where every value is stored"); a v1
    trace's `root_hash` column must agree with it (root_hash_column), a v2 trace's is AOS's
    own value and is hashed in the header (aos_root_hash)."""
    common: dict[str, Any] = {
        "tenant_id": trace.tenant_id,
        "run_id": trace.run_id,
        "trace_id": trace.trace_id,
        "agent_id": trace.agent_id,
        "plan_id": trace.plan_id,
        "started_at": trace.started_at,
        "status": trace.status,
        "completed_at": trace.completed_at,
        "genesis_hash": trace.genesis_hash,
        "root_hash": trace.seal_hash,
        "chain_length": trace.chain_length,
        "chain_format": trace.chain_format,
    }
    if trace.chain_format != 2:
        return StoredTrace(
            **common,
            plan=trace.plan,
            root_hash_column=trace.root_hash if trace.chain_format == 1 else None,
        )
    # The v2-only header fields by their one definition (integrity/fields.py), each from its
    # column (aos_root_hash is AOS's root_hash); `trace` is stored JSON, read as its exact text.
    header_v2 = {
        name: _exact_json(trace.trace_text) if name == "trace" else getattr(trace, column_of(name))
        for name in HEADER_V2_ONLY_FIELDS
    }
    return StoredTrace(
        **common,
        plan=_exact_json(trace.plan_text),
        header_v2=header_v2,
        metadata=_exact_json(trace.metadata_text),
    )


def finish_proof(verifier: ChainVerifier, steps: int, lookup: AnchorLookup) -> StreamedProof:
    verdict = verifier.finish(lookup.anchor)
    if lookup.failure is not None and verdict.failure is None:
        verdict = replace(verdict, status=VerificationStatus.FAILED, failure=lookup.failure)
    return StreamedProof(
        verdict, steps, anchored=lookup.anchor is not None, anchor=lookup.description
    )


# A trace whose stored chain_length is this or more is read, on the compiled walk, through
# a synchronous connection that joins the proof's snapshot (store/copy_reader.py), as
# segment workers and sweep shards read: the async driver's round per row costs about 5 us of
# client CPU a row, more than the walk itself (docs/benchmarks.md, "Where the time goes").
# Shorter runs keep the one connection: a second costs more than it saves. Only the way of
# reading depends on the stored length, never what is checked.
SYNC_READ_MIN_STEPS = 20_000


async def prove_trace(
    conn: AsyncConnection,
    trace: TraceRow,
    *,
    observe: StepObserver | None = None,
    observe_first: int | None = None,
    walked: Callable[[int], None] | None = None,
    sync_read_min_steps: int = SYNC_READ_MIN_STEPS,
) -> StreamedProof:
    """Rules 1-5 for one trace whose row was read in the snapshot `conn` holds.

    `observe` sees every step, unless the caller also gives `observe_first` and `walked`:
    then the trace's rows (format v1 or v2) after the first `observe_first` go through the
    compiled walk where it is built (store/line_walk.py), `observe` seeing only the rows it
    leaves and `walked(n)` each run of n rows it took, in row order; a run of
    `sync_read_min_steps` or more is then read through a joined synchronous connection."""
    verifier = ChainVerifier(stored_trace(trace))
    utf8 = await copies_utf8(conn)
    may_walk = observe is None or (observe_first is not None and walked is not None)
    if may_walk and utf8 and native_enabled(trace.chain_format):
        walker = LineWalk(
            verifier,
            v2_decoder(trace) if trace.chain_format == 2 else StepLineDecoder(),
            pure_first=observe_first or 0,
            on_step=observe,
            on_walked=walked,
        )
        if (trace.chain_length or 0) >= sync_read_min_steps:
            await _walk_lines_joined(conn, trace, walker)
        else:
            await _walk_lines(conn, trace, walker)
        steps_read = walker.read
        return finish_proof(verifier, steps_read, await lookup_anchor(conn, trace))
    steps_read = 0
    # aclosing: leaving early ends the COPY now, before rule 5 needs the connection.
    async with aclosing(_decoded_steps(conn, trace, utf8)) as steps:
        async for step in steps:
            steps_read += 1
            if observe is not None:
                observe(step)
            if step.feed_to(verifier):
                # The first failure is the verdict; reading on would only cost time.
                break
    return finish_proof(verifier, steps_read, await lookup_anchor(conn, trace))


async def _walk_lines(conn: AsyncConnection, trace: TraceRow, walker: LineWalk) -> None:
    """A trace's lines (format v1 or v2) in batches through LineWalk, read on `conn`."""
    v2 = trace.chain_format == 2
    lines = stream_step_lines_v2(conn, trace) if v2 else stream_step_lines(conn, trace.trace_id)
    batch: list[bytes] = []
    async with aclosing(lines) as raw:
        async for line in raw:
            batch.append(line)
            if len(batch) == LINE_BATCH:
                if walker.feed(batch):
                    break  # the first failure is the verdict
                batch = []
        else:
            walker.feed(batch)


async def _walk_lines_joined(conn: AsyncConnection, trace: TraceRow, walker: LineWalk) -> None:
    """As _walk_lines, read through a second connection in the snapshot `conn` exports, in a
    thread: the caller's event loop (a seed-API caller's server, say) is not blocked."""
    conninfo, _ = await connection_conninfo(conn)
    snapshot = await export_snapshot(conn)
    await asyncio.to_thread(_read_joined, conninfo, snapshot, trace, walker)


def _read_joined(conninfo: str, snapshot: str, trace: TraceRow, walker: LineWalk) -> None:
    with SnapshotCopyReader(conninfo) as reader:
        reader.join(snapshot)
        # Leaving the lines early is safe: leaving the reader closes its connection, which
        # ends the COPY (the snapshot stays held by the caller's transaction for rule 5).
        _feed_batches(reader.lines(step_lines_statement(trace)), walker)


def _feed_batches(lines: Iterator[bytes], walker: LineWalk) -> None:
    batch: list[bytes] = []
    append = batch.append
    for line in lines:
        append(line)
        if len(batch) == LINE_BATCH:
            if walker.feed(batch):
                return  # the first failure is the verdict
            batch.clear()
    walker.feed(batch)


async def prove_traces(
    conn: AsyncConnection,
    traces: Sequence[TraceRow],
    *,
    reader: SnapshotCopyReader | None = None,
) -> list[tuple[TraceRow, StreamedProof]]:
    """prove_trace() for a batch of traces read in the snapshot `conn` holds, with one COPY
    per step kind (store.snapshot.step_kind: v1, native v2, adopted v2) for all their steps
    (a sweep's many short runs); results in the order of `traces`.

    With a `reader` that has joined that snapshot, the steps are read through it, in a
    blocking loop: meant for a process that does nothing else meanwhile (a sweep shard)."""
    if reader is None and not await copies_utf8(conn):
        return [(trace, await prove_trace(conn, trace)) for trace in traces]
    batch = _Batch(traces)
    for kind, trace_ids in batch.kinds().items():
        if reader is not None:
            # A plain loop over the sync reader: no async-generator round per line.
            feed = batch.feed_line
            for line in reader.lines(many_step_lines_statement(trace_ids, kind)):
                feed(line)
        else:
            async for line in stream_many_step_lines(conn, trace_ids, kind):
                batch.feed_line(line)
    batch.flush()
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
        self._traces = {trace.trace_id: trace for trace in traces}
        self._decided: set[str] = set()
        self._v1 = StepLineDecoder()
        # v2 records carry the trace's ids: one decoder per trace, made when its rows come.
        self._v2: dict[str, StepV2Decoder] = {}
        self._current_raw = b""
        self._current = ""
        self._decode: Callable[[bytes], DecodedStep] = self._v1.decode
        # With the compiled walk (store/line_walk.py; format v1, and v2 per trace): the
        # current trace's lines gather here and go to its LineWalk a batch at a time.
        self._walks = self._v1.native
        self._walker: LineWalk | None = None
        self._pending: list[bytes] = []

    def kinds(self) -> dict[StepKind, list[str]]:
        """The batch's trace ids by step kind, v1 first (the common case)."""
        by_kind: dict[StepKind, list[str]] = {}
        for trace_id, trace in self._traces.items():
            by_kind.setdefault(step_kind(trace), []).append(trace_id)
        return dict(sorted(by_kind.items(), key=lambda item: item[0] != "v1"))

    def feed_line(self, line: bytes) -> None:
        raw_id, _, rest = line.partition(b"\t")
        if raw_id != self._current_raw:
            self.flush()
            self._current_raw = raw_id
            self._current = (unescape_copy_field(raw_id) or b"").decode()
            # Chosen once per trace, not per line: the v1 sweep's hot loop stays as it was.
            trace = self._traces[self._current]
            self._decode = (
                self._v2_decoder(trace).decode_line if trace.chain_format == 2 else self._v1.decode
            )
            if self._current not in self._decided:
                if trace.chain_format == 2:
                    v2 = self._v2_decoder(trace)
                    if v2.native:
                        self._walker = LineWalk(self.verifiers[self._current], v2)
                elif self._walks:
                    self._walker = LineWalk(self.verifiers[self._current], self._v1)
        if self._walker is not None:
            self._pending.append(rest)
            if len(self._pending) == LINE_BATCH:
                self.flush(keep=True)
            return
        current = self._current
        if current in self._decided:
            return  # the rest of a trace that already failed
        self.counts[current] += 1
        if self._decode(rest).feed_to(self.verifiers[current]):
            self._decided.add(current)

    def flush(self, *, keep: bool = False) -> None:
        """Feed the current trace's gathered lines to its walk (`keep`: more may follow)."""
        walker = self._walker
        if walker is None:
            return
        if self._pending:
            before = walker.read
            walker.feed(self._pending)
            self.counts[self._current] += walker.read - before
            self._pending = []
        if walker.stopped:
            self._decided.add(self._current)
        if not keep or walker.stopped:
            self._walker = None

    def _v2_decoder(self, trace: TraceRow) -> StepV2Decoder:
        decoder = self._v2.get(trace.trace_id)
        if decoder is None:
            decoder = self._v2[trace.trace_id] = v2_decoder(trace)
        return decoder


def v2_decoder(trace: TraceRow) -> StepV2Decoder:
    return StepV2Decoder(trace.tenant_id, trace.run_id, trace.trace_id)


async def _decoded_steps(
    conn: AsyncConnection, trace: TraceRow, utf8: bool
) -> AsyncGenerator[DecodedStep, None]:
    if trace.chain_format == 2:
        v2 = v2_decoder(trace)
        if utf8:
            async with aclosing(stream_step_lines_v2(conn, trace)) as raw:
                async for line in raw:
                    yield v2.decode_line(line)
        else:
            async with aclosing(stream_step_rows_v2(conn, trace)) as text_rows:
                async for row in text_rows:
                    yield v2.decode_row(row)
        return
    if utf8:
        lines = StepLineDecoder()
        async with aclosing(stream_step_lines(conn, trace.trace_id)) as raw:
            async for line in raw:
                yield lines.decode(line)
        return
    # Another client encoding: let psycopg decode the text first.
    rows = StepRowDecoder()
    async with aclosing(stream_step_rows(conn, trace.trace_id)) as text_rows:
        async for row in text_rows:
            yield rows.decode(row)
