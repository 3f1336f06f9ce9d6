"""The write path producers use: start a trace, append steps, seal it (format v2).

One write path (issue 13, item 2): since migration 0006 the database chains every row any
client inserts (docs/hash-chain-v2.md, "Chain" and "When a trace is sealed"), and the recorder
is one more client. It inserts the content columns only; the triggers compute the genesis, each
step's hash and the seal, and the recorder takes them back with RETURNING. It then recomputes
each hash with the Python reference (integrity/records_v2.py, canonical_v2.py) from the values
it sent, exactly as stored (columns it left to the database are read back), and a disagreement
raises ChainMismatch inside the transaction: nothing is written.

The database never refuses a value (it stores the row with a NULL hash and a chain_problem),
so the recorder refuses what the format cannot represent, or PostgreSQL cannot store, itself
and before any write (InvalidRecord, naming the field).

Each call is one transaction and locks the trace row (`FOR UPDATE`) while it reads the head,
so two recorders racing on one run are serialized: the chain never forks, and a step's
index is its chain position. Format-v1 traces are written by no producer any more (tests make
them with run_proof_pipeline_tests/support/v1_writer.py); the recorder refuses to extend them.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from run_proof_pipeline.errors import ExitCode, RunProofError
from run_proof_pipeline.integrity import (
    HEADER_V2_FIELDS,
    CanonicalizationError,
    InvalidTimestamp,
    canonical_timestamp,
    canonicalize_v2,
    header_record_v2,
    parse_stored_json_v2,
    seal_record_v2,
    step_record_v2,
)
from run_proof_pipeline.integrity.fields import FieldType, column_of, fields_of_type


class RecorderError(RunProofError):
    """A write was refused; nothing was written."""

    exit_code = ExitCode.FAILED


class InvalidRecord(RecorderError):
    """A value the format cannot represent, or PostgreSQL cannot store (the message names
    the field): bad input, refused before any write."""

    exit_code = ExitCode.USAGE


class TraceNotFound(RecorderError):
    exit_code = ExitCode.NOT_FOUND


class TraceSealed(RecorderError):
    pass


class StepIndexConflict(RecorderError):
    pass


class DuplicateRun(RecorderError):
    pass


class RunRetired(DuplicateRun):
    """The run id or trace id was recorded before and its run retired or removed: an id is
    recorded once (migration 0004, docs/ledger-v1.md "Ids are recorded once")."""


class ChainMismatch(RecorderError):
    """The database's hash (or chain position) differs from the Python reference of the
    format; the transaction was rolled back, nothing was written."""


# Migration 0004's refusal: SQLSTATE 23505 with one of these constraint names.
IDS_RECORDED_ONCE = frozenset({"run_proof_run_id_used", "run_proof_trace_id_used"})

# PostgreSQL's integer column ranges (a value outside one would make the insert raise).
_INT4 = (-(2**31), 2**31 - 1)
_INT8 = (-(2**63), 2**63 - 1)
# Stands in for a created_at the database fills, to refuse a bad header before the write.
_SOME_TIME = datetime(2000, 1, 1, tzinfo=UTC)


class TraceStart(BaseModel):
    """A trace header (integrity/fields.py HEADER_V1_FIELDS): the columns producers write.
    A column left out is not inserted and takes the database's default (created_at: now();
    correlation_id: the run id); the hash covers the value stored. FullTraceStart has every
    header column format v2 covers."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str = Field(min_length=1)
    run_id: str = Field(min_length=1)
    trace_id: str | None = None
    agent_id: str | None = None
    plan_id: str | None = None
    plan: Any = None
    started_at: datetime | str


class FullTraceStart(TraceStart):
    """TraceStart and the further header columns (AOS's; docs/hash-chain-v2.md, "Records";
    HEADER_V2_ONLY_FIELDS).
    None: not inserted, the database's default."""

    created_at: datetime | str | None = None
    correlation_id: str | None = None
    seed: int | None = None
    frozen_timestamp: str | None = None
    plan_hash: str | None = None
    schema_version: str | None = None
    trace: Any = None
    stored_by: str | None = None
    checksum: str | None = None
    incident_id: str | None = None
    is_synthetic: bool | None = None
    synthetic_scenario_id: str | None = None
    # The `root_hash` column as a writer inserts it (AOS: 'pending'); AOS's value, covered by
    # the header as aos_root_hash and never the format's seal.
    aos_root_hash: str | None = None


class StepAppend(BaseModel):
    """A step: the columns producers write (STEP_STORED_FIELDS but step_index, which the
    recorder assigns; FullStepAppend: every step column format v2 covers). A column left
    out or None is not inserted and takes the database's default."""

    model_config = ConfigDict(frozen=True)

    skill_id: str | None = None
    skill_name: str | None = None
    params: Any = None
    status: str | None = None
    outcome_category: str | None = None
    outcome_code: str | None = None
    outcome_data: Any = None
    cost_cents: float | None = None
    duration_ms: float | None = None
    retry_count: int | None = None
    timestamp: datetime | str


class FullStepAppend(StepAppend):
    """StepAppend and AOS's further step columns; None: the database's default
    (replay_behavior 'execute', source 'engine', level 'INFO', is_synthetic false)."""

    input_hash: str | None = None
    output_hash: str | None = None
    rng_state_before: str | None = None
    idempotency_key: str | None = None
    replay_behavior: str | None = None
    source: str | None = None
    level: str | None = None
    is_synthetic: bool | None = None
    synthetic_scenario_id: str | None = None


class StepWritten(BaseModel):
    step_index: int
    prev_hash: str
    step_hash: str


class SealWritten(BaseModel):
    chain_length: int
    # The format's seal (aos_traces.seal_hash), not AOS's root_hash column.
    root_hash: str


# Columns of each record (integrity/fields.py), and how each is sent and read back. JSON
# columns travel as text.
_JSON_COLUMNS = fields_of_type(FieldType.JSON)
_TIME_COLUMNS = fields_of_type(FieldType.TIMESTAMP)
# (record field, column): the header's aos_root_hash is AOS's root_hash column.
_HEADER_COLUMNS: tuple[tuple[str, str], ...] = tuple((f, column_of(f)) for f in HEADER_V2_FIELDS)
# What a producer writes of a step (the models above, pinned to fields.py by test_fields.py).
_STEP_FIELDS = tuple(FullStepAppend.model_fields)


def _returning(column: str, alias: str | None = None) -> str:
    name = f'"{column}"' if column == "timestamp" else column
    expression = f"{name}::text" if column in _JSON_COLUMNS else name
    return f"{expression} AS {alias or column}"


def _stored(column: str, value: Any) -> Any:
    """A value read back (RETURNING) as the record takes it: JSON parsed exactly."""
    if column in _JSON_COLUMNS and value is not None:
        return parse_stored_json_v2(value)
    return value


def _refuse(what: str, exc: Exception) -> InvalidRecord:
    return InvalidRecord(f"{what}: {exc}")


def _no_nul(record: dict[str, Any], what: str) -> None:
    """PostgreSQL stores no U+0000 in text or jsonb, though JSON and C2 can write it.
    Iterative: the record was canonicalized first, so its nesting is bounded anyway."""
    pending: list[tuple[str, Any]] = list(record.items())
    while pending:
        path, value = pending.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise InvalidRecord(f"{what}: {path} contains U+0000 (PostgreSQL cannot store it)")
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and "\x00" in key:
                    raise InvalidRecord(f"{what}: a key in {path} contains U+0000")
                pending.append((f"{path}.{key}", item))
        elif isinstance(value, list):
            pending.extend((f"{path}[{i}]", item) for i, item in enumerate(value))


def _in_range(value: Any, bounds: tuple[int, int], what: str) -> None:
    if value is not None and not bounds[0] <= value <= bounds[1]:
        raise InvalidRecord(f"{what}: {value} is outside the column's range {bounds}")


def _canonical(builder: Any, what: str, **fields: Any) -> tuple[dict[str, Any], bytes]:
    """The record and its C2 bytes; a value the format cannot represent is refused by name."""
    try:
        record = builder(**fields)
        canonical = canonicalize_v2(record)
    except (InvalidTimestamp, CanonicalizationError, ValueError) as exc:
        raise _refuse(what, exc) from None
    _no_nul(record, what)
    return record, canonical


def _json_text(value: Any, what: str) -> str | None:
    """The jsonb text to insert: C2 itself (exact numbers, no exponent where a double would
    round), so the stored numeric values are the hashed ones (docs/hash-chain-v2.md)."""
    if value is None:
        return None
    try:
        return canonicalize_v2(value).decode()
    except CanonicalizationError as exc:
        raise _refuse(what, exc) from None


def _param(column: str, value: Any, what: str) -> Any:
    if column in _JSON_COLUMNS:
        return _json_text(value, f"{what}: {column}")
    if column in _TIME_COLUMNS and value is not None:
        try:
            return canonical_timestamp(value)
        except InvalidTimestamp as exc:
            raise _refuse(f"{what}: {column}", exc) from None
    return value


def _check(what: str, name: str, database: Any, reference: Any, problem: Any = None) -> None:
    if database != reference:
        why = f" (the database's chain_problem: {problem})" if problem else ""
        raise ChainMismatch(
            f"{what}: the database's {name} is {database!r}, the Python reference of format v2"
            f" is {reference!r}{why}; nothing was written"
        )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def insert_refused(exc: IntegrityError, run_id: str, tenant_id: str, trace_id: str) -> Exception:
    diag = getattr(exc.orig, "diag", None)
    if diag is not None and diag.constraint_name in IDS_RECORDED_ONCE:
        message = diag.message_primary or ""
        if message.startswith("duplicate key"):
            # The constraint itself refused it (a snapshot older than the earlier run).
            message = (
                f"run {run_id!r} of tenant {tenant_id!r} or trace {trace_id!r} was recorded"
                " before: an id is recorded once, even after its run is retired or removed;"
                " record this run under new ids"
            )
        return RunRetired(message)
    return DuplicateRun(f"run {run_id!r} or trace {trace_id!r} already has a trace")


class TraceRecorder:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def start_trace(self, trace: TraceStart) -> str:
        trace_id = trace.trace_id or f"trace-{uuid.uuid4().hex}"
        given = {
            field: getattr(trace, field, None)
            for field, _ in _HEADER_COLUMNS
            if field != "trace_id"
        }
        given["trace_id"] = trace_id
        # Refused before any write: what the format cannot hash, what a column cannot hold.
        _canonical(
            header_record_v2,
            "trace header",
            **{**given, "created_at": given["created_at"] or _SOME_TIME},
        )
        _in_range(given["seed"], _INT8, "trace header: seed")
        sent = {f: v for f, v in given.items() if v is not None}
        columns = [column for field, column in _HEADER_COLUMNS if field in sent]
        params = {c: _param(c, sent[f], "trace header") for f, c in _HEADER_COLUMNS if f in sent}
        values = ", ".join(
            f"CAST(:{c} AS jsonb)" if c in _JSON_COLUMNS else f":{c}" for c in columns
        )
        returning = ", ".join(_returning(column, field) for field, column in _HEADER_COLUMNS)
        statement = text(
            f"INSERT INTO aos_traces ({', '.join(columns)}, status) VALUES ({values}, 'running')"  # noqa: S608 (fixed column names)
            f" RETURNING genesis_hash AS db_genesis_hash, chain_format AS db_chain_format,"
            f" chain_problem AS db_chain_problem, {returning}"
        )
        try:
            async with self._engine.begin() as conn:
                row = (await conn.execute(statement, params)).one()._mapping
                stored = {
                    field: sent[field] if field in sent else _stored(column, row[field])
                    for field, column in _HEADER_COLUMNS
                }
                _, canonical = _canonical(header_record_v2, "trace header", **stored)
                what = f"trace {trace_id!r}"
                _check(what, "chain_format", row["db_chain_format"], 2)
                _check(
                    what,
                    "genesis_hash",
                    row["db_genesis_hash"],
                    _sha256(canonical),
                    row["db_chain_problem"],
                )
        except IntegrityError as exc:
            raise insert_refused(exc, trace.run_id, trace.tenant_id, trace_id) from exc
        except DataError as exc:
            raise InvalidRecord(f"trace header: {exc.orig}") from None
        return trace_id

    async def append_step(
        self,
        tenant_id: str,
        run_id: str,
        step: StepAppend,
        *,
        expected_index: int | None = None,
    ) -> StepWritten:
        """Append the next step; `expected_index` makes a racing writer fail instead of
        silently landing after the step that beat it."""
        try:
            async with self._engine.begin() as conn:
                trace = await _lock_trace(conn, tenant_id, run_id)
                if trace["seal_hash"] is not None or trace["status"] != "running":
                    raise TraceSealed(f"run {run_id!r} is sealed: no step may be appended")
                head = (
                    await conn.execute(
                        text(
                            "SELECT step_index, step_hash FROM aos_trace_steps"
                            " WHERE trace_id = :trace_id ORDER BY step_index DESC LIMIT 1"
                        ),
                        {"trace_id": trace["trace_id"]},
                    )
                ).first()
                index = 0 if head is None else head.step_index + 1
                prev = trace["genesis_hash"] if head is None else head.step_hash
                if expected_index is not None and expected_index != index:
                    raise StepIndexConflict(
                        f"run {run_id!r}: step {expected_index} was requested but the chain"
                        f" head is at step {index - 1}; the next step is {index}"
                    )
                return await self._insert_step(conn, trace, index, prev, step)
        except DataError as exc:
            raise InvalidRecord(f"step: {exc.orig}") from None

    async def _insert_step(
        self,
        conn: AsyncConnection,
        trace: dict[str, Any],
        index: int,
        prev: str,
        step: StepAppend,
    ) -> StepWritten:
        what = f"step {index}"
        ids = {
            "tenant_id": trace["tenant_id"],
            "run_id": trace["run_id"],
            "trace_id": trace["trace_id"],
            "step_index": index,
        }
        given = {field: getattr(step, field, None) for field in _STEP_FIELDS}
        # Refused before the write; the defaults a None leaves to the database are text or a
        # boolean, which cannot make an otherwise valid record invalid.
        _canonical(step_record_v2, what, **ids, **given)
        _in_range(step.retry_count, _INT4, f"{what}: retry_count")
        sent = {f: v for f, v in given.items() if v is not None}
        columns = [*ids, *sent]
        params = {**ids, **{f: _param(f, v, what) for f, v in sent.items()}}
        values = ", ".join(
            f"CAST(:{c} AS jsonb)" if c in _JSON_COLUMNS else f":{c}" for c in columns
        )
        names = ", ".join(f'"{c}"' if c == "timestamp" else c for c in columns)
        returning = ", ".join(_returning(field) for field in _STEP_FIELDS)
        row = (
            (
                await conn.execute(
                    text(
                        f"INSERT INTO aos_trace_steps ({names}) VALUES ({values})"  # noqa: S608 (fixed column names)
                        " RETURNING chain_position AS db_chain_position,"
                        " prev_hash AS db_prev_hash, step_hash AS db_step_hash,"
                        f" chain_problem AS db_chain_problem, {returning}"
                    ),
                    params,
                )
            )
            .one()
            ._mapping
        )
        stored = {f: sent[f] if f in sent else _stored(f, row[f]) for f in _STEP_FIELDS}
        _, canonical = _canonical(step_record_v2, what, **ids, **stored)
        digest = _sha256(bytes.fromhex(prev) + canonical)
        problem = row["db_chain_problem"]
        _check(what, "chain_position", row["db_chain_position"], index, problem)
        _check(what, "prev_hash", row["db_prev_hash"], prev, problem)
        _check(what, "step_hash", row["db_step_hash"], digest, problem)
        return StepWritten(step_index=index, prev_hash=prev, step_hash=digest)

    async def seal(
        self,
        tenant_id: str,
        run_id: str,
        *,
        status: str,
        completed_at: datetime | str | None,
        metadata: Any = None,
    ) -> SealWritten:
        """End the run: the database seals it when status leaves 'running' (the seal covers
        status, completed_at, metadata and the chain length). `metadata` None keeps the
        column as it is."""
        if status == "running":
            raise InvalidRecord("seal: status 'running' does not end the run")
        try:
            async with self._engine.begin() as conn:
                trace = await _lock_trace(conn, tenant_id, run_id)
                if trace["seal_hash"] is not None or trace["status"] != "running":
                    raise TraceSealed(f"run {run_id!r} is already sealed")
                head = (
                    await conn.execute(
                        text(
                            "SELECT count(*) AS n,"
                            " (SELECT step_hash FROM aos_trace_steps WHERE trace_id = :trace_id"
                            "  ORDER BY step_index DESC LIMIT 1) AS head"
                            " FROM aos_trace_steps WHERE trace_id = :trace_id"
                        ),
                        {"trace_id": trace["trace_id"]},
                    )
                ).one()
                n = int(head.n)
                fields = {
                    "tenant_id": tenant_id,
                    "run_id": run_id,
                    "trace_id": trace["trace_id"],
                    "status": status,
                    "completed_at": completed_at,
                    "chain_length": n,
                    "metadata": trace["metadata"] if metadata is None else metadata,
                }
                _, canonical = _canonical(seal_record_v2, "seal", **fields)
                head_hash = trace["genesis_hash"] if n == 0 else head.head
                seal = _sha256(bytes.fromhex(head_hash) + canonical)
                assignments = "status = :status, completed_at = :completed_at"
                params: dict[str, Any] = {
                    "status": status,
                    "completed_at": _param("completed_at", completed_at, "seal"),
                    "trace_id": trace["trace_id"],
                }
                if metadata is not None:
                    assignments += ", metadata = CAST(:metadata AS jsonb)"
                    params["metadata"] = _json_text(metadata, "seal: metadata")
                row = (
                    await conn.execute(
                        text(
                            f"UPDATE aos_traces SET {assignments} WHERE trace_id = :trace_id"  # noqa: S608 (fixed column names)
                            " RETURNING seal_hash, chain_length, chain_problem"
                        ),
                        params,
                    )
                ).one()
                _check("seal", "chain_length", row.chain_length, n, row.chain_problem)
                _check("seal", "seal_hash", row.seal_hash, seal, row.chain_problem)
        except DataError as exc:
            raise InvalidRecord(f"seal: {exc.orig}") from None
        return SealWritten(chain_length=n, root_hash=seal)


async def _lock_trace(conn: AsyncConnection, tenant_id: str, run_id: str) -> dict[str, Any]:
    row = (
        await conn.execute(
            text(
                "SELECT trace_id, tenant_id, run_id, genesis_hash, chain_format, chain_problem,"
                " seal_hash, status, metadata::text AS metadata FROM aos_traces"
                " WHERE tenant_id = :tenant_id AND run_id = :run_id FOR UPDATE"
            ),
            {"tenant_id": tenant_id, "run_id": run_id},
        )
    ).first()
    if row is None:
        raise TraceNotFound(f"no trace for tenant {tenant_id!r}, run {run_id!r}")
    if row.chain_format is None and row.genesis_hash is None:
        raise InvalidRecord(f"run {run_id!r} is a legacy trace without a genesis hash")
    if row.chain_format != 2:
        raise InvalidRecord(
            f"run {run_id!r} is in format v{row.chain_format}: the recorder extends format-v2"
            " traces only (docs/hash-chain-v2.md)"
        )
    if row.genesis_hash is None:
        raise InvalidRecord(f"run {run_id!r}: its header could not be hashed ({row.chain_problem})")
    trace = dict(row._mapping)
    trace["metadata"] = _stored("metadata", trace["metadata"])
    return trace
