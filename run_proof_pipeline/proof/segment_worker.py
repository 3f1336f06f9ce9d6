"""One segment of a long trace, verified in a worker process of its own (proof/workers.py).

The job `verify_job` (started by proof.segments) gets a SegmentTask, joins the coordinator's
exported snapshot, streams its range of steps with COPY and checks them with the integrity
core's ChainSegment (`feed_rows`); it emits `n` (steps read) now and then and returns the
segment's result and summaries as JSON (`result_to_json`). Failures are the worker layer's
to report.

Imports stay light (psycopg, orjson, the integrity core): this process's start-up is part of
the proof's time.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from typing import Any

from psycopg import sql

from run_proof_pipeline.integrity import (
    ChainSegment,
    IntegrityFailure,
    SegmentResult,
    SegmentStart,
)
from run_proof_pipeline.store.copy_reader import SnapshotCopyReader
from run_proof_pipeline.store.line_walk import LINE_BATCH, LineDecoder, LineWalk
from run_proof_pipeline.store.step_rows import STEP_SELECT, DecodedStep, StepLineDecoder
from run_proof_pipeline.store.step_rows_v2 import StepV2Decoder, step_v2_from, step_v2_select

__all__ = [
    "SegmentTask",
    "feed_rows",
    "result_from_json",
    "result_to_json",
    "verify_job",
    "verify_segment",
]

# DecodedStep.summary_fields(): what the coordinator's step summaries show.
RawSummary = list[Any]


@dataclass(frozen=True)
class SegmentTask:
    conninfo: str
    snapshot: str
    trace_id: str
    lower: int | None  # first step_index of the range (None: from the start)
    upper: int | None  # step_index where the next range begins (None: to the end)
    sealed_length: int | None
    summary_limit: int
    progress_every: int
    # store.snapshot.step_kind of the trace: "v1", "v2" (native) or "v2-adopted"; a v2
    # record carries the trace's tenant and run ids (docs/hash-chain-v2.md "Records").
    step_kind: str = "v1"
    tenant_id: str | None = None
    run_id: str | None = None


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def result_to_json(result: SegmentResult) -> dict[str, Any]:
    first = result.first
    return {
        "first": None if first is None else {**asdict(first), "canonical": _b64(first.canonical)},
        "steps": result.steps,
        "failure": None if result.failure is None else asdict(result.failure),
        "next_index": result.next_index,
        "head": _b64(result.head),
        "head_at_sealed_length": _b64(result.head_at_sealed_length),
        "checks_positions": result.checks_positions,
    }


def result_from_json(data: dict[str, Any]) -> SegmentResult:
    first = data["first"]
    failure = data["failure"]
    return SegmentResult(
        first=None
        if first is None
        else SegmentStart(**{**first, "canonical": _unb64(first["canonical"])}),
        steps=data["steps"],
        failure=None if failure is None else IntegrityFailure(**failure),
        next_index=data["next_index"],
        head=_unb64(data["head"]),
        head_at_sealed_length=_unb64(data["head_at_sealed_length"]),
        checks_positions=bool(data["checks_positions"]),
    )


def feed_rows(chain: ChainSegment, steps: Iterable[DecodedStep]) -> int:
    """Feed the steps to the chain in order, stopping where DecodedStep.feed_to says reading
    on cannot change the finding; the number of steps read (the stopping one included)."""
    read = 0
    for step in steps:
        read += 1
        if step.feed_to(chain):
            break
    return read


def verify_segment(
    task: SegmentTask, emit: Callable[[int], None] | None = None
) -> tuple[SegmentResult, list[tuple[int | None, RawSummary]]]:
    """Check the task's range inside the exported snapshot; `emit(n)` gets progress: n more
    steps read."""
    v2 = task.step_kind != "v1"
    column = "s.step_index" if v2 else "step_index"
    where = [sql.SQL(f"{'s.' if v2 else ''}trace_id = {{}}").format(sql.Literal(task.trace_id))]
    if task.lower is not None:
        where.append(sql.SQL(f"{column} >= {{}}").format(sql.Literal(task.lower)))
    if task.upper is not None:
        where.append(sql.SQL(f"{column} < {{}}").format(sql.Literal(task.upper)))
    decoder: LineDecoder
    if v2:
        adopted = task.step_kind == "v2-adopted"
        columns, source = step_v2_select(adopted=adopted), step_v2_from(adopted=adopted)
        decoder = StepV2Decoder(task.tenant_id, task.run_id, task.trace_id)
    else:
        columns, source = STEP_SELECT, "aos_trace_steps"
        decoder = StepLineDecoder()
    statement = sql.SQL(
        "COPY (SELECT {columns} FROM {source} WHERE {where} ORDER BY {column}) TO STDOUT"
    ).format(
        columns=sql.SQL(columns),
        source=sql.SQL(source),
        where=sql.SQL(" AND ").join(where),
        column=sql.SQL(column),
    )
    # Format v2 chains in insertion order: each row's chain_position is checked too.
    chain = ChainSegment(task.sealed_length, check_positions=v2)
    summaries: list[tuple[int | None, RawSummary]] = []
    limit, every = task.summary_limit, max(1, task.progress_every)

    with SnapshotCopyReader(task.conninfo) as reader:
        reader.join(task.snapshot)
        lines = reader.lines(statement)
        try:
            read = _walk_lines(chain, decoder, lines, summaries, limit, every, emit)
        finally:
            if isinstance(lines, Generator):
                lines.close()  # leaving early closes the reader's COPY
    if emit is not None and read % every:
        emit(read % every)  # the rest, so that progress ends at the total
    return chain.result(), summaries


def _walk_lines(
    chain: ChainSegment,
    decoder: LineDecoder,
    lines: Iterator[bytes],
    summaries: list[tuple[int | None, RawSummary]],
    limit: int,
    every: int,
    emit: Callable[[int], None] | None,
) -> int:
    """The segment's lines (format v1 or v2) through store/line_walk.py, in batches: the
    first `limit` rows one by one for their summaries, then the compiled walk where it is
    built; progress as the row-by-row loop gives it (emit(every) at each multiple of
    `every`)."""

    def summarize(step: DecodedStep) -> None:
        if len(summaries) < limit:
            summaries.append((step.step_index, step.summary_fields()))

    walker = LineWalk(chain, decoder, pure_first=limit, on_step=summarize)
    while True:
        batch = list(islice(lines, LINE_BATCH))
        if not batch:
            break
        before = walker.read
        stop = walker.feed(batch)
        if emit is not None:
            for _ in range(before // every, walker.read // every):
                emit(every)
        if stop:
            break
    return walker.read


def verify_job(task: dict[str, Any], emit: Callable[[Any], None]) -> dict[str, Any]:
    """The worker's job (proof/workers.py): the task's segment, its result and summaries."""
    result, summaries = verify_segment(SegmentTask(**task), emit)
    return {"result": result_to_json(result), "summaries": summaries}
