"""A format-v1 writer, for tests only: the recorder's write path as it was before format v2.

Format-v1 stores exist in the field and keep verifying as v1 (docs/hash-chain-v2.md: "Traces
stored in format v1 before the upgrade keep verifying as v1"), so tests still need v1 rows.
Since migration 0006 the recorder (store/recorder.py) writes format v2 through the database's
chaining; this module keeps the v1 logic (hashes computed here by the pure core, a genesis
hash inserted, root_hash written at the seal; docs/hash-chain-v1.md), which the database still
accepts: an insert with a genesis hash takes 0006's format-v1 branch.

Same models, errors and guarantees as the v1 recorder had: each call is one transaction, the
trace row is locked while its head is read, a value v1 cannot represent is refused before any
write. A field only format v2 covers, when set, is refused rather than silently dropped.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson
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
from run_proof_pipeline.integrity.fields import HEADER_V1_FIELDS, STEP_STORED_FIELDS
from run_proof_pipeline.store.recorder import (
    InvalidRecord,
    SealWritten,
    StepAppend,
    StepIndexConflict,
    StepWritten,
    TraceNotFound,
    TraceSealed,
    TraceStart,
    insert_refused,
)

# The fields format v1 hashes (integrity/fields.py); the others of the models are format
# v2's only. A step's index is the writer's, its tenant and run the trace's.
_V1_TRACE_FIELDS = frozenset(HEADER_V1_FIELDS)
_V1_STEP_FIELDS = frozenset(STEP_STORED_FIELDS) - {"step_index"}


def _v1_only(model: TraceStart | StepAppend, allowed: frozenset[str], what: str) -> None:
    extra = sorted(name for name in model.model_fields_set if name not in allowed)
    extra = [name for name in extra if getattr(model, name) is not None]
    if extra:
        raise InvalidRecord(f"{what}: format v1 does not cover {', '.join(extra)}")


def _json_param(value: Any, what: str) -> str | None:
    """The jsonb text of a value canonicalize() already accepted (so nested at most
    MAX_JSON_DEPTH levels, docs/json-nesting.md, well within what orjson writes)."""
    # SQL NULL and JSON null canonicalize alike (spec), so None is stored as SQL NULL.
    if value is None:
        return None
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:  # a TypeError: never raw out of the writer
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


class V1TraceWriter:
    """start_trace / append_step / seal in format v1 (the pre-0006 recorder)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def start_trace(self, trace: TraceStart) -> str:
        _v1_only(trace, _V1_TRACE_FIELDS, "trace header")
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
            raise insert_refused(exc, trace.run_id, trace.tenant_id, trace_id) from exc
        return trace_id

    async def append_step(
        self,
        tenant_id: str,
        run_id: str,
        step: StepAppend,
        *,
        expected_index: int | None = None,
    ) -> StepWritten:
        _v1_only(step, _V1_STEP_FIELDS, "step")
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
            fields = {name: getattr(step, name) for name in _V1_STEP_FIELDS}
            record = _build(
                step_record,
                f"step {index}",
                tenant_id=tenant_id,
                run_id=run_id,
                step_index=index,
                **fields,
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
        self,
        tenant_id: str,
        run_id: str,
        *,
        status: str,
        completed_at: datetime | str,
        metadata: Any = None,
    ) -> SealWritten:
        if metadata is not None:
            raise InvalidRecord("seal: format v1 does not cover metadata")
        async with self._engine.begin() as conn:
            trace = await _lock_trace(conn, tenant_id, run_id)
            if trace["root_hash"] is not None:
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
