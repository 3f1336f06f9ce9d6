"""Prove one long trace with several processes, inside the coordinator's one snapshot.

Every stored step carries its prev_hash, so a run can be cut into step_index ranges that
are verified independently (integrity.ChainSegment) and merged in order
(ChainVerifier.feed_segment) into exactly the verdict of one sequential stream.  The
coordinator's transaction exports its snapshot (`pg_export_snapshot()`); each worker
process joins it with `SET TRANSACTION SNAPSHOT`, so all of them read the same committed
state as the coordinator: a concurrent append or seal still cannot produce a false verdict.

Worth it only for long runs (a worker costs ~0.3 s of start-up); short ones stay in
process (proof.stream).  The workers are started and stopped by their handles.
"""

from __future__ import annotations

import asyncio
import json
import os
import site
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg.conninfo import make_conninfo
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.integrity import ChainVerifier
from run_proof_pipeline.proof.anchors import lookup_anchor
from run_proof_pipeline.proof.segment_worker import SegmentTask, result_from_json
from run_proof_pipeline.proof.stream import StreamedProof, finish_proof, stored_trace
from run_proof_pipeline.store.snapshot import (
    TraceRow,
    export_snapshot,
    psycopg_connection,
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
    "worker_pythonpath",
]

DEFAULT_PARALLEL_MIN_STEPS = 200_000
_WORKER_MODULE = "run_proof_pipeline.proof.segment_worker"
# A result line holds the first row's C(step) and up to summary_limit summaries.
_LINE_LIMIT = 256 * 1024 * 1024

ProgressSink = Callable[[int], None]


class SegmentWorkerError(RuntimeError):
    """A segment worker could not finish; the message is its own (passwords redacted).
    `unreachable` when the database could not be reached or went away."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


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


async def _conninfo(conn: AsyncConnection) -> tuple[str, str | None]:
    """The libpq parameters of the coordinator's own connection, password included (it goes
    to the workers over a pipe, never on a command line or into a log), and the password."""
    info = (await psycopg_connection(conn)).info
    params = dict(info.get_parameters())
    if info.password:
        params["password"] = info.password
    return make_conninfo("", **params), info.password or None


def _redact(message: str, secret: str | None) -> str:
    return message.replace(secret, "***") if secret else message


async def run_segment_worker(
    task: SegmentTask, sink: ProgressSink, secret: str | None
) -> dict[str, Any]:
    """One worker process for one task: its final message (`result` and `summaries`), or
    SegmentWorkerError with the worker's own error text, `secret` replaced by ***."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        _WORKER_MODULE,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=_LINE_LIMIT,
        env=_worker_env(),
    )
    assert process.stdin is not None and process.stdout is not None
    assert process.stderr is not None
    # Read stderr all along: a worker that writes much there must not block on a full pipe.
    stderr = asyncio.ensure_future(process.stderr.read())
    try:
        process.stdin.write(task.to_json().encode() + b"\n")
        await process.stdin.drain()
        process.stdin.close()
        outcome: dict[str, Any] | None = None
        while line := await process.stdout.readline():
            try:
                message = json.loads(line)
            except ValueError:
                raise SegmentWorkerError("segment worker wrote a line that is not JSON") from None
            if "progress" in message:
                sink(int(message["progress"]))
            else:
                outcome = message
        await process.wait()
        if outcome is None or "error" in outcome:
            why = (
                outcome["error"]
                if outcome is not None
                else (await stderr).decode(errors="replace").strip()[-2000:]
            )
            raise SegmentWorkerError(
                _redact(f"segment worker (exit {process.returncode}): {why}", secret),
                unreachable=bool(outcome and outcome.get("unreachable")),
            )
        return outcome
    finally:
        if process.returncode is None:
            process.kill()  # our own child, by its handle
            await process.wait()
        stderr.cancel()


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    path = worker_pythonpath()
    if path is None:
        env.pop("PYTHONPATH", None)
    else:
        env["PYTHONPATH"] = path
    return env


def worker_pythonpath(
    package_parent: str | None = None,
    current: str | None = None,
    site_dirs: list[str] | None = None,
) -> str | None:
    """PYTHONPATH for the workers, so that they import this package from where this process
    did: a checkout goes first on the path; an installed copy (in site-packages) needs
    nothing, and putting site-packages ahead of the standard library could shadow it."""
    parent = package_parent or os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    )
    current = os.environ.get("PYTHONPATH") if current is None else current
    sites = site_dirs
    if sites is None:
        sites = [*site.getsitepackages(), site.getusersitepackages()]
    if os.path.realpath(parent) in {os.path.realpath(d) for d in sites}:
        return current or None
    return parent if not current else f"{parent}{os.pathsep}{current}"


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
    conninfo, secret = await _conninfo(conn)
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
