"""One segment of a long trace, verified in a process of its own.

    python -m run_proof_pipeline.proof.segment_worker   (started by proof.segments)

Reads one JSON task line on stdin (the connection string travels there, never in argv),
joins the coordinator's exported snapshot, streams its range of steps with COPY and checks
them with the integrity core's ChainSegment.  Writes JSON lines on stdout: `{"progress": n}`
now and then, and last `{"result": ...}` or `{"error": "..."}`.

Imports stay light (psycopg, orjson, the integrity core): this process's start-up is part of
the proof's time.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg import sql

from run_proof_pipeline.integrity import (
    ChainSegment,
    IntegrityFailure,
    SegmentResult,
    SegmentStart,
)
from run_proof_pipeline.store.copy_reader import SnapshotCopyReader
from run_proof_pipeline.store.step_rows import STEP_SELECT, DecodedStep, StepLineDecoder
from run_proof_pipeline.store.step_rows_v2 import StepV2Decoder, step_v2_from, step_v2_select

__all__ = ["SegmentTask", "result_from_json", "result_to_json", "verify_segment"]

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

    def to_json(self) -> str:
        return json.dumps(asdict(self))


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


def verify_segment(
    task: SegmentTask, emit: Any = None
) -> tuple[SegmentResult, list[tuple[int | None, RawSummary]]]:
    """Check the task's range inside the exported snapshot; `emit(dict)` gets progress."""
    v2 = task.step_kind != "v1"
    column = "s.step_index" if v2 else "step_index"
    where = [sql.SQL(f"{'s.' if v2 else ''}trace_id = {{}}").format(sql.Literal(task.trace_id))]
    if task.lower is not None:
        where.append(sql.SQL(f"{column} >= {{}}").format(sql.Literal(task.lower)))
    if task.upper is not None:
        where.append(sql.SQL(f"{column} < {{}}").format(sql.Literal(task.upper)))
    decode: Callable[[bytes], DecodedStep]
    if v2:
        adopted = task.step_kind == "v2-adopted"
        columns, source = step_v2_select(adopted=adopted), step_v2_from(adopted=adopted)
        decode = StepV2Decoder(task.tenant_id, task.run_id, task.trace_id).decode_line
    else:
        columns, source = STEP_SELECT, "aos_trace_steps"
        decode = StepLineDecoder().decode
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
    read = 0
    with SnapshotCopyReader(task.conninfo) as reader:
        reader.join(task.snapshot)
        for line in reader.lines(statement):
            step = decode(line)
            read += 1
            if len(summaries) < limit:
                summaries.append((step.step_index, step.summary_fields()))
            stop = step.feed_to(chain)
            if emit is not None and read % every == 0:
                emit({"progress": every})
            if stop:
                break  # leaving the lines early closes the reader's connection
    if emit is not None and read % every:
        emit({"progress": read % every})  # the rest, so that progress ends at the total
    return chain.result(), summaries


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> int:
    try:
        task = SegmentTask(**json.loads(sys.stdin.readline()))
        result, summaries = verify_segment(task, _emit)
    except Exception as exc:  # reported to the coordinator, which raises it there
        # `unreachable`: the database went away or refused us (the CLI's exit code 5).
        unreachable = isinstance(exc, psycopg.OperationalError)
        _emit({"error": f"{type(exc).__name__}: {exc}", "unreachable": unreachable})
        return 2
    _emit({"result": result_to_json(result), "summaries": summaries})
    return 0


if __name__ == "__main__":
    sys.exit(main())
