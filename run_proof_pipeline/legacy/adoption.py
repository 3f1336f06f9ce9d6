"""Adoption: give legacy AOS traces format-v1 hashes computed from their rows as they stand now.

Honest by construction: the proof of an adopted trace covers changes since `adopted_at` (set
by the database's clock in the trace guard), not since the run. AOS's own root hash moves to
`aos_root_hash` (the guard insists), so nothing is lost. A trace that is still running is
never touched; neither is a run with more than one trace (format v1 allows one per run).

Each trace is adopted in its own transaction with its row locked `FOR UPDATE`, which also
blocks AOS from inserting a step into it meanwhile (the foreign key takes `FOR KEY SHARE`).
The hashes come from the same decoding the proof uses (COPY text rows, StepRowDecoder), so
an adopted trace verifies exactly as a native one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from run_proof_pipeline.integrity import (
    CanonicalizationError,
    InvalidTimestamp,
    canonicalize,
    header_record,
    seal_record,
    sha256,
)
from run_proof_pipeline.store.snapshot import TRACE_COLUMNS, TraceRow, stream_step_rows
from run_proof_pipeline.store.step_rows import StepRowDecoder, decode_json_as_stored

# Chunk of step hashes written per UPDATE (arrays bound as parameters).
_WRITE_CHUNK = 5000


class AdoptionSelection(BaseModel):
    tenant_id: str | None = None
    run_id: str | None = None
    started_before: datetime | None = None

    def params(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "run_id": self.run_id,
            "started_before": self.started_before,
        }


# Bound parameters only: an absent filter is a NULL parameter, not a different statement.
_FILTER = (
    " AND (CAST(:tenant_id AS text) IS NULL OR tenant_id = :tenant_id)"
    " AND (CAST(:run_id AS text) IS NULL OR run_id = :run_id)"
    " AND (CAST(:started_before AS timestamptz) IS NULL OR started_at < :started_before)"
)


class AdoptedTrace(BaseModel):
    tenant_id: str
    run_id: str
    trace_id: str
    chain_length: int
    root_hash: str
    adopted_at: datetime


class SkippedTrace(BaseModel):
    tenant_id: str
    run_id: str
    trace_id: str
    reason: str


class AdoptionReport(BaseModel):
    candidates: int
    already_adopted: int
    adopted: list[AdoptedTrace]
    skipped: list[SkippedTrace]


@dataclass(frozen=True)
class BatchDone:
    batch: int
    examined: int
    adopted: int
    skipped: int


BatchProgress = Callable[[BatchDone], None]


class _Skip(Exception):
    """This trace cannot be adopted now; the message says why."""


def is_running(trace: TraceRow) -> bool:
    # AOS sets completed_at when a run ends; a trace without it may still get steps.
    return trace.status == "running" or trace.completed_at is None


async def _count(conn: AsyncConnection, where: str, selection: AdoptionSelection) -> int:
    return int(
        (
            await conn.execute(
                text(f"SELECT count(*) FROM aos_traces WHERE {where}{_FILTER}"),  # noqa: S608
                selection.params(),
            )
        ).scalar_one()
    )


async def _candidate_batch(
    conn: AsyncConnection,
    selection: AdoptionSelection,
    after: tuple[datetime, str] | None,
    size: int,
) -> list[tuple[datetime, str]]:
    rows = await conn.execute(
        text(
            "SELECT started_at, trace_id FROM aos_traces WHERE genesis_hash IS NULL"  # noqa: S608
            f"{_FILTER}"
            " AND (CAST(:after_started AS timestamptz) IS NULL"
            "      OR (started_at, trace_id) > (:after_started, :after_trace))"
            " ORDER BY started_at, trace_id LIMIT :size"
        ),
        {
            **selection.params(),
            "after_started": None if after is None else after[0],
            "after_trace": None if after is None else after[1],
            "size": size,
        },
    )
    return [(row.started_at, row.trace_id) for row in rows]


_HEADER_FIELDS = ("tenant_id", "run_id", "trace_id", "agent_id", "plan_id", "plan", "started_at")
_SEAL_FIELDS = ("tenant_id", "run_id", "status", "completed_at")


def _genesis(trace: TraceRow) -> bytes:
    header = header_record(**{name: getattr(trace, name) for name in _HEADER_FIELDS})
    try:
        return sha256(canonicalize(header, strict=False))
    except (CanonicalizationError, InvalidTimestamp) as exc:
        raise _Skip(f"its header cannot be hashed in format v1 ({exc})") from None


async def _chain(
    conn: AsyncConnection, trace: TraceRow, genesis: bytes
) -> tuple[bytes, list[tuple[int, str, str]]]:
    """(head hash, [(step_index, prev_hash, step_hash)]) of the trace's steps as stored."""
    unindexed = (
        await conn.execute(
            text(
                "SELECT count(*) FROM aos_trace_steps"
                " WHERE trace_id = :trace_id AND step_index IS NULL"
            ),
            {"trace_id": trace.trace_id},
        )
    ).scalar_one()
    if unindexed:
        raise _Skip(f"{unindexed} of its steps have no step_index")
    decoder = StepRowDecoder()
    head = genesis
    hashes: list[tuple[int, str, str]] = []
    async for row in stream_step_rows(conn, trace.trace_id):
        step = decoder.decode(row)
        expected = len(hashes)
        if step.step_index != expected:
            raise _Skip(
                f"its step indexes are not 0..n-1 (expected {expected}, found {step.step_index})"
            )
        if step.canonical is None:
            raise _Skip(step.error or f"step {expected} cannot be hashed in format v1")
        digest = sha256(head + step.canonical)
        hashes.append((expected, head.hex(), digest.hex()))
        head = digest
    return head, hashes


def _root(trace: TraceRow, head: bytes, chain_length: int) -> str:
    fields = {name: getattr(trace, name) for name in _SEAL_FIELDS}
    seal = seal_record(chain_length=chain_length, **fields)
    try:
        return sha256(head + canonicalize(seal, strict=False)).hex()
    except (CanonicalizationError, InvalidTimestamp) as exc:
        raise _Skip(f"its seal cannot be hashed in format v1 ({exc})") from None


async def _write_step_hashes(
    conn: AsyncConnection, trace_id: str, hashes: list[tuple[int, str, str]]
) -> None:
    for start in range(0, len(hashes), _WRITE_CHUNK):
        chunk = hashes[start : start + _WRITE_CHUNK]
        await conn.execute(
            text(
                "UPDATE aos_trace_steps s SET prev_hash = u.prev, step_hash = u.hash"
                " FROM unnest(CAST(:indexes AS integer[]), CAST(:prevs AS text[]),"
                "             CAST(:hashes AS text[])) AS u(i, prev, hash)"
                " WHERE s.trace_id = :trace_id AND s.step_index = u.i"
            ),
            {
                "trace_id": trace_id,
                "indexes": [i for i, _, _ in chunk],
                "prevs": [p for _, p, _ in chunk],
                "hashes": [h for _, _, h in chunk],
            },
        )


# Migration 0004 records every format-v1 run id and trace id once (docs/ledger-v1.md, "Ids
# are recorded once"): a legacy trace holding one cannot become that run.
_RECORDED_BEFORE = text(
    "SELECT u.trace_id, r.ledger_seq,"
    " (u.tenant_id = :tenant_id AND u.run_id = :run_id) AS same_run"
    " FROM run_proof_run_ids u LEFT JOIN run_proof_retirements r ON r.trace_id = u.trace_id"
    " WHERE (u.tenant_id = :tenant_id AND u.run_id = :run_id) OR u.trace_id = :trace_id"
    " ORDER BY 3 DESC LIMIT 1"
)


async def _recorded_before(conn: AsyncConnection, trace: TraceRow) -> str | None:
    """Why `trace` cannot be adopted under its ids, or None."""
    params = {"tenant_id": trace.tenant_id, "run_id": trace.run_id, "trace_id": trace.trace_id}
    row = (await conn.execute(_RECORDED_BEFORE, params)).first()
    if row is None:
        return None
    retired = "" if row.ledger_seq is None else f" (tombstone: ledger entry {row.ledger_seq})"
    if row.same_run:
        return (
            f"run {trace.run_id!r} was recorded before in format v1 (trace {row.trace_id!r})"
            f"{retired}: a run id is recorded once, so this trace cannot be adopted as it"
        )
    return f"its trace id was used before by a format-v1 trace{retired}: a trace id is used once"


async def _lock(conn: AsyncConnection, trace_id: str) -> tuple[TraceRow, int] | None:
    statement = text(
        f"SELECT {TRACE_COLUMNS},"  # noqa: S608 - constant column list
        " (SELECT count(*) FROM aos_traces d WHERE d.run_id = t.run_id) AS same_run"
        " FROM aos_traces t WHERE trace_id = :trace_id FOR UPDATE"
    )
    row = (await conn.execute(statement, {"trace_id": trace_id})).first()
    if row is None:
        return None
    fields = dict(row._mapping)
    same_run = int(fields.pop("same_run"))
    return TraceRow(**fields), same_run


async def _adopt_one(engine: AsyncEngine, trace_id: str) -> AdoptedTrace | SkippedTrace | None:
    """Adopt one trace in its own transaction; None when it is gone or adopted meanwhile."""
    async with engine.begin() as conn:
        # Step timestamps travel as text: read them in UTC, as the proof does.
        await conn.execute(text("SET LOCAL TimeZone = 'UTC'"))
        # `plan` read under the stored-number and nesting rules, as a proof reads it.
        decode_json_as_stored((await conn.get_raw_connection()).driver_connection)
        locked = await _lock(conn, trace_id)
        if locked is None or locked[0].genesis_hash is not None:
            return None
        trace, same_run = locked
        try:
            if is_running(trace):
                raise _Skip(
                    f"it is still running (status {trace.status!r}, "
                    f"completed_at {trace.completed_at}); adopt it once it has finished"
                )
            if same_run > 1:
                raise _Skip(
                    f"run {trace.run_id!r} has {same_run} traces and format v1 allows one per "
                    "run; archive or delete the others (they are legacy), then adopt"
                )
            earlier = await _recorded_before(conn, trace)
            if earlier is not None:
                raise _Skip(earlier)
            genesis = _genesis(trace)
            head, hashes = await _chain(conn, trace, genesis)
            root = _root(trace, head, len(hashes))
        except _Skip as skip:
            return SkippedTrace(
                tenant_id=trace.tenant_id,
                run_id=trace.run_id,
                trace_id=trace.trace_id,
                reason=str(skip),
            )
        await _write_step_hashes(conn, trace.trace_id, hashes)
        adopted_at = (
            await conn.execute(
                text(
                    "UPDATE aos_traces SET genesis_hash = :genesis, root_hash = :root,"
                    " chain_length = :length, aos_root_hash = root_hash"
                    " WHERE trace_id = :trace_id AND genesis_hash IS NULL RETURNING adopted_at"
                ),
                {
                    "genesis": genesis.hex(),
                    "root": root,
                    "length": len(hashes),
                    "trace_id": trace.trace_id,
                },
            )
        ).scalar_one()
    return AdoptedTrace(
        tenant_id=trace.tenant_id,
        run_id=trace.run_id,
        trace_id=trace.trace_id,
        chain_length=len(hashes),
        root_hash=root,
        adopted_at=adopted_at,
    )


async def adopt_legacy_traces(
    engine: AsyncEngine,
    selection: AdoptionSelection,
    *,
    batch_size: int = 200,
    progress: BatchProgress | None = None,
) -> AdoptionReport:
    """Adopt every finished legacy trace the selection matches, in batches; idempotent."""
    async with engine.connect() as conn:
        already = await _count(conn, "adopted_at IS NOT NULL", selection)
        candidates = await _count(conn, "genesis_hash IS NULL", selection)
    adopted: list[AdoptedTrace] = []
    skipped: list[SkippedTrace] = []
    after: tuple[datetime, str] | None = None
    batch = 0
    while True:
        async with engine.connect() as conn:
            ids = await _candidate_batch(conn, selection, after, batch_size)
        if not ids:
            break
        batch += 1
        after = ids[-1]
        for _, trace_id in ids:
            outcome = await _adopt_one(engine, trace_id)
            if isinstance(outcome, AdoptedTrace):
                adopted.append(outcome)
            elif isinstance(outcome, SkippedTrace):
                skipped.append(outcome)
        if progress is not None:
            progress(BatchDone(batch, len(ids), len(adopted), len(skipped)))
    return AdoptionReport(
        candidates=candidates, already_adopted=already, adopted=adopted, skipped=skipped
    )
