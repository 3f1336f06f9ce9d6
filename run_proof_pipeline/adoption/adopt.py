"""Adoption: give legacy AOS traces format-v2 hashes computed from their rows as they stand now.

Honest by construction: the proof of an adopted trace covers changes since `adopted_at` (the
database's clock), not since the run. Under AOS's rules (issue 13 item 4,
docs/existing-aos-database.md): no AOS column of the trace or its steps changes, `root_hash`
included (the header covers it as `aos_root_hash`, docs/hash-chain-v2.md "Records"), and
AOS's triggers stay on. What adoption computes goes where AOS's triggers let it
(docs/hash-chain-v2.md "Where every value is stored"): the trace row's columns of ours
(`chain_format` 2, `genesis_hash`, `seal_hash`, `chain_length`, `adopted_at`), the step
hashes into `run_proof_adopted_steps` (a legacy step row takes no UPDATE under AOS's
trigger), and the chain's state into `run_proof_chain_heads`, sealed, so that a step AOS
adds later is chained after the seal and the verifier names it. The ledger's trigger appends
the `adoption` entry when `seal_hash` goes from NULL to a value.

Traces adopted before in format v1 (their `aos_root_hash` set, `chain_format` 1) stay as
they are and keep verifying as v1. A trace that is still running is never touched; neither
is a run with more than one trace (a format run has one trace), nor a run or trace id the
ledger recorded before (migration 0004).

Each trace is adopted in its own transaction with its row locked `FOR UPDATE`, which also
blocks AOS from inserting a step into it meanwhile (the foreign key takes `FOR KEY SHARE`).
The step hashes come from the same decoding the proof uses (COPY text rows, StepV2Decoder,
store/step_rows_v2.py), so an adopted trace verifies exactly as it was hashed.
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
    header_canonical_v2,
    parse_stored_json_v2,
    seal_canonical_v2,
    sha256,
)
from run_proof_pipeline.integrity.timestamps import InvalidTimestamp
from run_proof_pipeline.store.snapshot import TraceRow, pin_statement, stream_step_rows_v2
from run_proof_pipeline.store.step_rows_v2 import StepV2Decoder

# Chunk of step hashes written per INSERT (arrays bound as parameters).
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
# A legacy trace: no format (docs/hash-chain-v2.md, "Where every value is stored").
_LEGACY = "chain_format IS NULL"


class AdoptedTrace(BaseModel):
    tenant_id: str
    run_id: str
    trace_id: str
    chain_length: int
    # The format's root: the seal (seal_hash); AOS's root_hash column is left as it was.
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
    after: tuple[str, str] | None,
    size: int,
) -> list[tuple[str, str]]:
    # started_at travels as text (the connection's pinned DateStyle and TimeZone) and back as
    # a bound timestamptz: 'infinity', which AOS's column can hold, is no driver error here
    # (such a trace is then skipped, named, by _genesis).
    rows = await conn.execute(
        text(
            f"SELECT started_at::text AS started_at, trace_id FROM aos_traces"  # noqa: S608
            f" WHERE {_LEGACY}{_FILTER}"
            " AND (CAST(:after_started AS text) IS NULL OR (started_at, trace_id)"
            "      > (CAST(CAST(:after_started AS text) AS timestamptz), :after_trace))"
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


# The header's columns as the format covers them (docs/hash-chain-v2.md "Records"): JSON as
# its stored text (parsed with every number exact), timestamps as text under the pinned
# TimeZone/DateStyle (a value the format cannot represent, 'infinity', is then a reason to
# skip rather than a driver error).
_HEADER_TEXT = ("tenant_id", "run_id", "trace_id", "agent_id", "plan_id")
_HEADER_SAME = (
    "correlation_id",
    "seed",
    "frozen_timestamp",
    "plan_hash",
    "schema_version",
    "stored_by",
    "checksum",
    "incident_id",
    "is_synthetic",
    "synthetic_scenario_id",
)
_LOCK = text(
    "SELECT trace_id, run_id, tenant_id, agent_id, plan_id, status, chain_format, root_hash,"  # noqa: S608
    " plan::text AS plan, trace::text AS trace, metadata::text AS metadata,"
    " started_at::text AS started_at, created_at::text AS created_at,"
    " completed_at::text AS completed_at, completed_at IS NULL AS open_ended,"
    f" {', '.join(_HEADER_SAME)},"
    " CASE WHEN jsonb_typeof(trace -> 'steps') = 'array'"
    "      THEN jsonb_array_length(trace -> 'steps') ELSE 0 END AS listed_steps,"
    " (SELECT count(*) FROM aos_trace_steps s WHERE s.trace_id = t.trace_id) AS stored_steps,"
    " (SELECT count(*) FROM aos_traces d WHERE d.run_id = t.run_id) AS same_run"
    " FROM aos_traces t WHERE trace_id = :trace_id FOR UPDATE"
)


def _json(value: str | None, what: str) -> Any:
    if value is None:
        return None
    try:
        return parse_stored_json_v2(value)
    except CanonicalizationError as exc:
        raise _Skip(f"its {what} cannot be hashed in format v2 ({exc})") from None


def _genesis(row: Any) -> bytes:
    fields = {name: getattr(row, name) for name in _HEADER_TEXT + _HEADER_SAME}
    try:
        header = header_canonical_v2(
            **fields,
            plan=_json(row.plan, "plan"),
            trace=_json(row.trace, "trace"),
            started_at=row.started_at,
            created_at=row.created_at,
            # AOS's own value, kept and covered (never the format's seal).
            aos_root_hash=row.root_hash,
        )
    except (CanonicalizationError, InvalidTimestamp) as exc:
        raise _Skip(f"its header cannot be hashed in format v2 ({exc})") from None
    return sha256(header)


def _steps_row(row: Any) -> TraceRow:
    """The TraceRow that store/snapshot.py streams a legacy trace's steps by (native
    columns; their chain columns are NULL and unused here)."""
    return TraceRow(
        trace_id=row.trace_id,
        run_id=row.run_id,
        tenant_id=row.tenant_id,
        agent_id=row.agent_id,
        plan_id=row.plan_id,
        plan=None,
        status=row.status,
        started_at=None,  # type: ignore[arg-type]  # not read by the step stream
        completed_at=None,
        genesis_hash=None,
        root_hash=row.root_hash,
        chain_length=None,
        seal_seq=None,
    )


async def _chain(
    conn: AsyncConnection, row: Any, genesis: bytes
) -> tuple[bytes, list[tuple[int, str, str]]]:
    """(head hash, [(step_index, prev_hash, step_hash)]) of the trace's steps as stored,
    chained in step_index order: chain position p is step p (docs/hash-chain-v2.md
    "Verification", rule 2), so the indexes must be 0..n-1."""
    decoder = StepV2Decoder(row.tenant_id, row.run_id, row.trace_id)
    head = genesis
    hashes: list[tuple[int, str, str]] = []
    async for stored in stream_step_rows_v2(conn, _steps_row(row)):
        step = decoder.decode_row(stored)
        expected = len(hashes)
        if step.step_index is None:
            raise _Skip(f"step {expected}: {step.error or 'no step_index'}")
        if step.step_index != expected:
            raise _Skip(
                f"its step indexes are not 0..n-1 (expected {expected}, found {step.step_index})"
            )
        if step.canonical is None:
            raise _Skip(step.error or f"step {expected} cannot be hashed in format v2")
        digest = sha256(head + step.canonical)
        hashes.append((expected, head.hex(), digest.hex()))
        head = digest
    return head, hashes


def _seal(row: Any, head: bytes, chain_length: int) -> str:
    try:
        seal = seal_canonical_v2(
            tenant_id=row.tenant_id,
            run_id=row.run_id,
            trace_id=row.trace_id,
            status=row.status,
            completed_at=row.completed_at,
            chain_length=chain_length,
            metadata=_json(row.metadata, "metadata"),
        )
    except (CanonicalizationError, InvalidTimestamp) as exc:
        raise _Skip(f"its seal cannot be hashed in format v2 ({exc})") from None
    return sha256(head + seal).hex()


def _still_running(row: Any) -> str | None:
    """Why the run may still get steps, or None. The database's own rule for a finished
    trace (docs/hash-chain-v2.md "When a trace is sealed"): status no longer 'running', and
    for a trace stored whole without a completion time (AOS's store_trace), the steps its
    `trace` column lists are in."""
    if row.status == "running":
        return f"it is still running (status {row.status!r}); adopt it once it has finished"
    if row.open_ended and row.stored_steps < row.listed_steps:
        return (
            f"it has no completion time and {row.stored_steps} of the {row.listed_steps} "
            "steps its trace lists (AOS's store_trace may still be writing them)"
        )
    return None


async def _write_step_hashes(
    conn: AsyncConnection, trace_id: str, hashes: list[tuple[int, str, str]]
) -> None:
    # Chain position = the step's place in step_index order (0..n-1 was checked).
    for start in range(0, len(hashes), _WRITE_CHUNK):
        chunk = hashes[start : start + _WRITE_CHUNK]
        await conn.execute(
            text(
                "INSERT INTO run_proof_adopted_steps"
                " (trace_id, step_index, chain_position, prev_hash, step_hash)"
                " SELECT :trace_id, u.i, u.i, u.prev, u.hash"
                " FROM unnest(CAST(:indexes AS integer[]), CAST(:prevs AS text[]),"
                "             CAST(:hashes AS text[])) AS u(i, prev, hash)"
            ),
            {
                "trace_id": trace_id,
                "indexes": [i for i, _, _ in chunk],
                "prevs": [p for _, p, _ in chunk],
                "hashes": [h for _, _, h in chunk],
            },
        )


# Migration 0004 records every format run id and trace id once (docs/ledger-v1.md, "Ids
# are recorded once"): a legacy trace holding one cannot become that run.
_RECORDED_BEFORE = text(
    "SELECT u.trace_id, r.ledger_seq,"
    " (u.tenant_id = :tenant_id AND u.run_id = :run_id) AS same_run"
    " FROM run_proof_run_ids u LEFT JOIN run_proof_retirements r ON r.trace_id = u.trace_id"
    " WHERE (u.tenant_id = :tenant_id AND u.run_id = :run_id) OR u.trace_id = :trace_id"
    " ORDER BY 3 DESC LIMIT 1"
)


async def _recorded_before(conn: AsyncConnection, row: Any) -> str | None:
    """Why the trace cannot be adopted under its ids, or None."""
    params = {"tenant_id": row.tenant_id, "run_id": row.run_id, "trace_id": row.trace_id}
    found = (await conn.execute(_RECORDED_BEFORE, params)).first()
    if found is None:
        return None
    retired = "" if found.ledger_seq is None else f" (tombstone: ledger entry {found.ledger_seq})"
    if found.same_run:
        return (
            f"run {row.run_id!r} was recorded before (trace {found.trace_id!r}){retired}: "
            "a run id is recorded once, so this trace cannot be adopted as it"
        )
    return f"its trace id was used before by a format trace{retired}: a trace id is used once"


async def _check(conn: AsyncConnection, row: Any) -> None:
    """Raise _Skip when the trace cannot be adopted now."""
    running = _still_running(row)
    if running is not None:
        raise _Skip(running)
    if row.same_run > 1:
        raise _Skip(
            f"run {row.run_id!r} has {row.same_run} traces and a format run has one; "
            "archive or delete the others (they are legacy), then adopt"
        )
    earlier = await _recorded_before(conn, row)
    if earlier is not None:
        raise _Skip(earlier)


async def _record(
    conn: AsyncConnection, row: Any, genesis: bytes, head: bytes, seal: str, n: int
) -> datetime:
    """Store the adoption: the chain's state, then the trace's columns of ours (the ledger's
    trigger appends the `adoption` entry as seal_hash gets its value)."""
    # Sealed at n: a step AOS inserts later is chained at position n, after the seal, and
    # the verdict names it ("extra step beyond the sealed chain").
    await conn.execute(
        text(
            "INSERT INTO run_proof_chain_heads (trace_id, next_position, head_hash, seal_at,"
            " sealed) VALUES (:trace_id, :n, :head, :n, true)"
        ),
        {"trace_id": row.trace_id, "n": n, "head": head.hex()},
    )
    return (
        await conn.execute(
            text(
                "UPDATE aos_traces SET chain_format = 2, genesis_hash = :genesis,"
                " seal_hash = :seal, chain_length = :length, adopted_at = now()"
                " WHERE trace_id = :trace_id AND chain_format IS NULL RETURNING adopted_at"
            ),
            {"genesis": genesis.hex(), "seal": seal, "length": n, "trace_id": row.trace_id},
        )
    ).scalar_one()


async def _adopt_one(engine: AsyncEngine, trace_id: str) -> AdoptedTrace | SkippedTrace | None:
    """Adopt one trace in its own transaction; None when it is gone or adopted meanwhile."""
    async with engine.begin() as conn:
        # Text output as the proof reads it (UTC timestamps, exact floats).
        statement, params = pin_statement()
        await conn.execute(text(statement), params)
        row = (await conn.execute(_LOCK, {"trace_id": trace_id})).first()
        if row is None or row.chain_format is not None:
            return None
        try:
            await _check(conn, row)
            genesis = _genesis(row)
            head, hashes = await _chain(conn, row, genesis)
            seal = _seal(row, head, len(hashes))
        except _Skip as skip:
            return SkippedTrace(
                tenant_id=row.tenant_id, run_id=row.run_id, trace_id=row.trace_id, reason=str(skip)
            )
        await _write_step_hashes(conn, row.trace_id, hashes)
        adopted_at = await _record(conn, row, genesis, head, seal, len(hashes))
    return AdoptedTrace(
        tenant_id=row.tenant_id,
        run_id=row.run_id,
        trace_id=row.trace_id,
        chain_length=len(hashes),
        root_hash=seal,
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
        candidates = await _count(conn, _LEGACY, selection)
    adopted: list[AdoptedTrace] = []
    skipped: list[SkippedTrace] = []
    after: tuple[str, str] | None = None
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
