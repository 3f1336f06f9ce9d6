"""The write path producers use: start a trace, append steps, seal it.

Hashes are computed here, at write time, by the pure integrity core. Each call is one
transaction, and the trace row is locked (`FOR UPDATE`) while its head is read, so two
writers racing on one run are serialised: the chain never forks and never has a gap.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from run_proof_pipeline.integrity import (
    CanonicalizationError,
    InvalidTimestamp,
    canonicalize,
    genesis_hash,
    header_record,
    root_hash,
    seal_record,
    step_hash,
    step_record,
)


class RecorderError(Exception):
    """A write was refused; nothing was written."""


class InvalidRecord(RecorderError):
    pass


class TraceNotFound(RecorderError):
    pass


class TraceSealed(RecorderError):
    pass


class StepIndexConflict(RecorderError):
    pass


class DuplicateRun(RecorderError):
    pass


class RunRetired(DuplicateRun):
    """The run id or trace id was recorded before and its run retired or removed: an id is
    recorded once (migration 0004, docs/ledger-v1.md "Ids are recorded once")."""


# Migration 0004's refusal: SQLSTATE 23505 with one of these constraint names.
_IDS_RECORDED_ONCE = frozenset({"run_proof_run_id_used", "run_proof_trace_id_used"})


class TraceStart(BaseModel):
    model_config = ConfigDict(frozen=True)

    tenant_id: str = Field(min_length=1)
    run_id: str = Field(min_length=1)
    trace_id: str | None = None
    agent_id: str | None = None
    plan_id: str | None = None
    plan: Any = None
    started_at: datetime | str


class StepAppend(BaseModel):
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


class StepWritten(BaseModel):
    step_index: int
    prev_hash: str
    step_hash: str


class SealWritten(BaseModel):
    chain_length: int
    root_hash: str


def _json_param(value: Any, what: str) -> str | None:
    """The jsonb text of a value canonicalize() already accepted (so nested at most
    MAX_JSON_DEPTH levels, docs/json-nesting.md, well within what orjson writes)."""
    # SQL NULL and JSON null canonicalize alike (spec), so None is stored as SQL NULL.
    if value is None:
        return None
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:  # a TypeError: never raw out of the recorder
        raise InvalidRecord(f"{what}: cannot be stored as JSON ({exc})") from None


def _canonical(record: dict[str, Any], what: str) -> bytes:
    try:
        return canonicalize(record, strict=True)
    except CanonicalizationError as exc:
        raise InvalidRecord(f"{what}: {exc}") from None


def _build(builder: Any, what: str, **fields: Any) -> Any:
    """Build a record or hash it; a value the spec cannot represent is refused by name."""
    try:
        return builder(**fields)
    except (InvalidTimestamp, CanonicalizationError, ValueError) as exc:
        raise InvalidRecord(f"{what}: {exc}") from None


class TraceRecorder:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def start_trace(self, trace: TraceStart) -> str:
        trace_id = trace.trace_id or f"trace-{uuid.uuid4().hex}"
        header = _build(
            header_record,
            "trace header",
            tenant_id=trace.tenant_id,
            run_id=trace.run_id,
            trace_id=trace_id,
            agent_id=trace.agent_id,
            plan_id=trace.plan_id,
            plan=trace.plan,
            started_at=trace.started_at,
        )
        # Hashing refuses what the format cannot represent (a value nested deeper than
        # MAX_JSON_DEPTH included, naming the field and its depth): before any write.
        genesis = _build(genesis_hash, "trace header", header=header).hex()
        plan = _json_param(trace.plan, "trace header: plan")
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO aos_traces (trace_id, run_id, tenant_id, agent_id, plan_id,"
                        " plan, status, started_at, genesis_hash)"
                        " VALUES (:trace_id, :run_id, :tenant_id, :agent_id, :plan_id,"
                        " CAST(:plan AS jsonb), 'running', :started_at, :genesis_hash)"
                    ),
                    {
                        "trace_id": trace_id,
                        "run_id": trace.run_id,
                        "tenant_id": trace.tenant_id,
                        "agent_id": trace.agent_id,
                        "plan_id": trace.plan_id,
                        "plan": plan,
                        "started_at": header["started_at"],
                        "genesis_hash": genesis,
                    },
                )
        except IntegrityError as exc:
            diag = getattr(exc.orig, "diag", None)
            if diag is not None and diag.constraint_name in _IDS_RECORDED_ONCE:
                message = diag.message_primary or ""
                if message.startswith("duplicate key"):
                    # The constraint itself refused it (a snapshot older than the earlier run).
                    message = (
                        f"run {trace.run_id!r} of tenant {trace.tenant_id!r} or trace "
                        f"{trace_id!r} was recorded before: an id is recorded once, even after "
                        "its run is retired or removed; record this run under new ids"
                    )
                raise RunRetired(message) from exc
            raise DuplicateRun(
                f"run {trace.run_id!r} or trace {trace_id!r} already has a trace"
            ) from exc
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
        async with self._engine.begin() as conn:
            trace = await _lock_trace(conn, tenant_id, run_id)
            if trace["root_hash"] is not None:
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
                    f"run {run_id!r}: step {expected_index} was requested but the chain head "
                    f"is at step {index - 1}; the next step is {index}"
                )
            record = _build(
                step_record,
                f"step {index}",
                tenant_id=tenant_id,
                run_id=run_id,
                step_index=index,
                **step.model_dump(),
            )
            digest = step_hash(bytes.fromhex(prev), _canonical(record, f"step {index}")).hex()
            params = _json_param(step.params, f"step {index}: params")
            outcome_data = _json_param(step.outcome_data, f"step {index}: outcome_data")
            await conn.execute(
                text(
                    "INSERT INTO aos_trace_steps (trace_id, run_id, tenant_id, step_index,"
                    " skill_id, skill_name, params, status, outcome_category, outcome_code,"
                    ' outcome_data, cost_cents, duration_ms, retry_count, "timestamp",'
                    " prev_hash, step_hash)"
                    " VALUES (:trace_id, :run_id, :tenant_id, :step_index, :skill_id,"
                    " :skill_name, CAST(:params AS jsonb), :status, :outcome_category,"
                    " :outcome_code, CAST(:outcome_data AS jsonb), :cost_cents, :duration_ms,"
                    " :retry_count, :timestamp, :prev_hash, :step_hash)"
                ),
                {
                    **record,
                    "trace_id": trace["trace_id"],
                    "params": params,
                    "outcome_data": outcome_data,
                    "prev_hash": prev,
                    "step_hash": digest,
                },
            )
        return StepWritten(step_index=index, prev_hash=prev, step_hash=digest)

    async def seal(
        self, tenant_id: str, run_id: str, *, status: str, completed_at: datetime | str
    ) -> SealWritten:
        async with self._engine.begin() as conn:
            trace = await _lock_trace(conn, tenant_id, run_id)
            if trace["root_hash"] is not None:
                raise TraceSealed(f"run {run_id!r} is already sealed")
            head = (
                await conn.execute(
                    text(
                        "SELECT count(*) AS n, max(step_index) AS last,"
                        " (SELECT step_hash FROM aos_trace_steps WHERE trace_id = :trace_id"
                        "  ORDER BY step_index DESC LIMIT 1) AS head"
                        " FROM aos_trace_steps WHERE trace_id = :trace_id"
                    ),
                    {"trace_id": trace["trace_id"]},
                )
            ).one()
            seal = _build(
                seal_record,
                "seal",
                tenant_id=tenant_id,
                run_id=run_id,
                status=status,
                completed_at=completed_at,
                chain_length=head.n,
            )
            head_hash = trace["genesis_hash"] if head.n == 0 else head.head
            root = _build(root_hash, "seal", head=bytes.fromhex(head_hash), seal=seal).hex()
            await conn.execute(
                text(
                    "UPDATE aos_traces SET status = :status, completed_at = :completed_at,"
                    " root_hash = :root_hash, chain_length = :chain_length"
                    " WHERE trace_id = :trace_id"
                ),
                {
                    "status": status,
                    "completed_at": seal["completed_at"],
                    "root_hash": root,
                    "chain_length": head.n,
                    "trace_id": trace["trace_id"],
                },
            )
        return SealWritten(chain_length=head.n, root_hash=root)


async def _lock_trace(conn: AsyncConnection, tenant_id: str, run_id: str) -> dict[str, Any]:
    row = (
        await conn.execute(
            text(
                "SELECT trace_id, genesis_hash, root_hash FROM aos_traces"
                " WHERE tenant_id = :tenant_id AND run_id = :run_id FOR UPDATE"
            ),
            {"tenant_id": tenant_id, "run_id": run_id},
        )
    ).first()
    if row is None:
        raise TraceNotFound(f"no trace for tenant {tenant_id!r}, run {run_id!r}")
    if row.genesis_hash is None:
        raise InvalidRecord(f"run {run_id!r} is a legacy trace without a genesis hash")
    return dict(row._mapping)
