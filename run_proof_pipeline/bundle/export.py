"""`export`: write one run's proof bundle, read in one REPEATABLE READ snapshot.

A format-v1 trace gives a `run-proof-bundle/v1`, a format-v2 trace (chained by the database,
docs/hash-chain-v2.md) a `run-proof-bundle/v2` (bundle/model.py): its values travel as the
text PostgreSQL prints under the proof's pinned settings (store/session_pins.py), so that
no number is rounded on the way. A v2 bundle is written whatever the stored values are: a
value the format cannot represent is carried as stored, and the bundle's verdict names it
as the proof's does (format v2 never refuses a row, it names it)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.bundle.model import (
    BundleEntry,
    BundleLedger,
    BundleStep,
    BundleStepV2,
    BundleTrace,
    BundleTraceV2,
    ProofBundle,
    ProofBundleV2,
)
from run_proof_pipeline.errors import ExitCode, RunProofError
from run_proof_pipeline.integrity import canonical_timestamp, parse_stored_json
from run_proof_pipeline.integrity.canonical import CanonicalizationError, canonicalize_at
from run_proof_pipeline.ledger.entry import EntryKind
from run_proof_pipeline.ledger.queries import database_name, entries_for_run, read_entries
from run_proof_pipeline.ledger.settings import LedgerSettings
from run_proof_pipeline.ledger.signed_head import load_signed_head
from run_proof_pipeline.ledger.tree import LedgerTree
from run_proof_pipeline.store.snapshot import STEP_COLUMNS, read_trace, stream_step_rows
from run_proof_pipeline.store.step_rows import strict_float, strict_int

__all__ = ["RunNotFound", "Unexportable", "export_bundle"]

_JSON_COLUMNS = {"params", "outcome_data"}
_FLOAT_COLUMNS = {"cost_cents", "duration_ms"}
_INT_COLUMNS = {"step_index", "retry_count"}


class RunNotFound(RunProofError, LookupError):
    exit_code = ExitCode.NOT_FOUND


class Unexportable(RunProofError, ValueError):
    """A stored value the format cannot represent (docs/stored-numbers.md,
    docs/json-nesting.md): a bundle holding a stand-in for it would not be the stored run, so
    none is written (the run's proof is FAILED at the same place)."""


def _representable(value: Any, where: str) -> Any:
    try:
        canonicalize_at(value, strict=True, path=where)
    except CanonicalizationError as exc:
        raise Unexportable(f"{where}: {exc}; the bundle was not written") from None
    return value


def _value(column: str, text: str | None) -> Any:
    if text is None:
        return None
    if column in _JSON_COLUMNS:
        return parse_stored_json(text)
    # Strictly the text PostgreSQL prints for these types (store/step_rows.py).
    if column in _FLOAT_COLUMNS:
        return strict_float(text)
    if column in _INT_COLUMNS:
        return strict_int(text)
    return text


def _timestamp(value: datetime | None) -> str | None:
    return None if value is None else canonical_timestamp(value)


# Format v2 (docs/hash-chain-v2.md "Records"): every value as text where a JSON reader could
# change it (bundle/model.py). The header's aos_root_hash is AOS's root_hash column.
_TRACE_V2 = """
SELECT chain_format, tenant_id, run_id, trace_id, agent_id, plan_id, plan::text AS plan,
       started_at::text AS started_at, created_at::text AS created_at, correlation_id,
       seed::text AS seed, frozen_timestamp, plan_hash, schema_version, trace::text AS trace,
       stored_by, checksum, incident_id, is_synthetic, synthetic_scenario_id,
       root_hash AS aos_root_hash, status, completed_at::text AS completed_at, chain_length,
       metadata::text AS metadata, genesis_hash, seal_hash,
       adopted_at IS NOT NULL AS adopted
FROM aos_traces WHERE trace_id = :trace_id
"""

# Native steps carry their chain columns; an adopted trace's are in run_proof_adopted_steps
# (AOS's trigger allows no write to a step row), never the step row's.
_STEPS_V2 = """
SELECT s.step_index,
       CASE WHEN :adopted THEN a.chain_position ELSE s.chain_position END AS chain_position,
       s.skill_id, s.skill_name, s.params::text AS params, s.status, s.outcome_category,
       s.outcome_code, s.outcome_data::text AS outcome_data, s.cost_cents::text AS cost_cents,
       s.duration_ms::text AS duration_ms, s.retry_count, s."timestamp"::text AS "timestamp",
       s.input_hash, s.output_hash, s.rng_state_before, s.idempotency_key, s.replay_behavior,
       s.source, s.level, s.is_synthetic, s.synthetic_scenario_id,
       CASE WHEN :adopted THEN a.prev_hash ELSE s.prev_hash END AS prev_hash,
       CASE WHEN :adopted THEN a.step_hash ELSE s.step_hash END AS step_hash
FROM aos_trace_steps s
LEFT JOIN run_proof_adopted_steps a
       ON :adopted AND a.trace_id = s.trace_id AND a.step_index = s.step_index
WHERE s.trace_id = :trace_id
ORDER BY s.step_index
"""


async def export_bundle(
    conn: AsyncConnection,
    settings: LedgerSettings,
    tenant_id: str,
    run_id: str,
    *,
    progress: Callable[[int, int | None], None] | None = None,
    progress_every: int = 20_000,
) -> ProofBundle | ProofBundleV2:
    trace = await read_trace(conn, tenant_id, run_id)
    if trace is None:
        raise RunNotFound(f"no trace for tenant {tenant_id!r}, run {run_id!r}")
    row = (await conn.execute(text(_TRACE_V2), {"trace_id": trace.trace_id})).one()
    if row.chain_format == 2:
        return await _export_v2(conn, settings, row, progress, progress_every)
    steps: list[BundleStep] = []
    async for step_row in stream_step_rows(conn, trace.trace_id):
        fields = {c: _value(c, v) for c, v in zip(STEP_COLUMNS, step_row, strict=True)}
        for column in _JSON_COLUMNS:
            _representable(fields[column], f"step {fields['step_index']}: {column}")
        # The step's own tenant/run columns are not hashed: the trace's are (spec).
        del fields["tenant_id"], fields["run_id"]
        steps.append(BundleStep(**fields))
        if progress is not None and len(steps) % progress_every == 0:
            progress(len(steps), trace.chain_length)
    return ProofBundle(
        exported_at=canonical_timestamp(datetime.now(UTC)),
        trace=BundleTrace(
            tenant_id=trace.tenant_id,
            run_id=trace.run_id,
            trace_id=trace.trace_id,
            agent_id=trace.agent_id,
            plan_id=trace.plan_id,
            plan=_representable(trace.plan, "header: plan"),
            started_at=canonical_timestamp(trace.started_at),
            status=trace.status,
            completed_at=_timestamp(trace.completed_at),
            genesis_hash=trace.genesis_hash,
            # The format's seal: for format v1 the root_hash column, which migration 0006
            # copied to seal_hash (the proof checks both agree; the bundle names one).
            root_hash=trace.root_hash,
            chain_length=trace.chain_length,
        ),
        steps=steps,
        ledger=await _ledger_part(conn, settings, tenant_id, run_id),
    )


async def _export_v2(
    conn: AsyncConnection,
    settings: LedgerSettings,
    row: Any,
    progress: Callable[[int, int | None], None] | None,
    progress_every: int,
) -> ProofBundleV2:
    fields = dict(row._mapping)
    adopted = bool(fields.pop("adopted"))
    trace = BundleTraceV2(**fields)
    steps: list[BundleStepV2] = []
    result = await conn.stream(text(_STEPS_V2), {"trace_id": trace.trace_id, "adopted": adopted})
    async for step_row in result:
        steps.append(BundleStepV2(**step_row._mapping))
        if progress is not None and len(steps) % progress_every == 0:
            progress(len(steps), trace.chain_length)
    return ProofBundleV2(
        exported_at=canonical_timestamp(datetime.now(UTC)),
        trace=trace,
        steps=steps,
        ledger=await _ledger_part(conn, settings, trace.tenant_id, trace.run_id),
    )


async def _ledger_part(
    conn: AsyncConnection, settings: LedgerSettings, tenant_id: str, run_id: str
) -> BundleLedger:
    """The run's seal or adoption entry, with its inclusion proof under the latest signed
    checkpoint that covers it (docs/ledger-v1.md "Proof bundle")."""
    name = await database_name(conn)
    seals = [
        e
        for e in await entries_for_run(conn, tenant_id, run_id)
        if e.kind in (EntryKind.SEAL, EntryKind.ADOPTION)
    ]
    entry = seals[0] if seals else None
    ledger = BundleLedger(origin=settings.origin(name), entry=None)
    if entry is not None:
        ledger.entry = BundleEntry(
            **entry.model_dump(exclude={"recorded_at", "leaf_hash"}),
            recorded_at=canonical_timestamp(entry.recorded_at),
            leaf_hash=entry.leaf_hash or entry.leaf().hex(),
        )
        head = load_signed_head(settings, name)
        if head is not None and entry.index < head.size:
            tree = LedgerTree(await read_entries(conn, upto=head.size))
            ledger.tree_size = head.size
            ledger.inclusion_proof = [h.hex() for h in tree.inclusion(entry.index, head.size)]
            ledger.checkpoint = head.note
    return ledger
