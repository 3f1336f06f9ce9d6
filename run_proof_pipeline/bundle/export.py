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
    CARRIED_AS_TEXT,
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
from run_proof_pipeline.integrity.fields import (
    FIELD_TYPES,
    STEP_CHAIN_V2,
    TRACE_IDS,
    FieldType,
    column_of,
    values_of,
)
from run_proof_pipeline.ledger.entry import EntryKind
from run_proof_pipeline.ledger.queries import database_name, entries_for_run, read_entries
from run_proof_pipeline.ledger.settings import LedgerSettings
from run_proof_pipeline.ledger.signed_head import load_signed_head
from run_proof_pipeline.ledger.tree import LedgerTree
from run_proof_pipeline.store.column_text import strict_float, strict_int
from run_proof_pipeline.store.snapshot import STEP_COLUMNS, TraceRow, read_trace, stream_step_rows

__all__ = ["RunNotFound", "Unexportable", "export_bundle"]

# A v1 step column's text as the bundle holds it (bundle/model.py), by its type.
_JSON_COLUMNS = tuple(c for c in STEP_COLUMNS if FIELD_TYPES.get(c) is FieldType.JSON)
_PARSED = {FieldType.JSON: parse_stored_json, FieldType.DOUBLE: strict_float}
_PARSED |= {FieldType.INTEGER: strict_int}


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
    # Strictly the text PostgreSQL prints for these types (store/column_text.py).
    kind = FIELD_TYPES.get(column)
    parse = None if kind is None else _PARSED.get(kind)
    return text if parse is None else parse(text)


def _timestamp(value: datetime | None) -> str | None:
    return None if value is None else canonical_timestamp(value)


def _as_read(name: str, table: str = "") -> str:
    """The SELECT item of a bundle field: its column, as text where a JSON reader could
    change the value (bundle/model.py CARRIED_AS_TEXT)."""
    column = f'{table}"{column_of(name)}"'
    return f'{column}::text AS "{name}"' if name in CARRIED_AS_TEXT else f'{column} AS "{name}"'


# Format v2 (docs/hash-chain-v2.md "Records"): every field of the bundle's trace and steps
# (bundle/model.py), read by its name. The header's aos_root_hash is AOS's root_hash column.
_TRACE_V2 = f"""
SELECT {", ".join(_as_read(name) for name in BundleTraceV2.model_fields)},
       adopted_at IS NOT NULL AS adopted
FROM aos_traces WHERE trace_id = :trace_id
"""  # noqa: S608 - the model's field names


def _step_v2_item(name: str) -> str:
    """Native steps carry their chain columns; an adopted trace's are in
    run_proof_adopted_steps (AOS's trigger allows no write to a step row), never the step
    row's."""
    if name in STEP_CHAIN_V2:
        return f'CASE WHEN :adopted THEN a."{name}" ELSE s."{name}" END AS "{name}"'
    return _as_read(name, "s.")


_STEPS_V2 = f"""
SELECT {", ".join(_step_v2_item(name) for name in BundleStepV2.model_fields)}
FROM aos_trace_steps s
LEFT JOIN run_proof_adopted_steps a
       ON :adopted AND a.trace_id = s.trace_id AND a.step_index = s.step_index
WHERE s.trace_id = :trace_id
ORDER BY s.step_index
"""  # noqa: S608 - the model's field names


def _bundle_trace(trace: TraceRow) -> BundleTrace:
    """A v1 trace row as the bundle holds it: its fields by name (bundle/model.py), the plan
    checked representable, timestamps canonical."""
    values = values_of(trace, tuple(BundleTrace.model_fields))
    values["plan"] = _representable(trace.plan, "header: plan")
    values["started_at"] = canonical_timestamp(trace.started_at)
    values["completed_at"] = _timestamp(trace.completed_at)
    # root_hash: the format's seal, for format v1 the root_hash column, which migration 0006
    # copied to seal_hash (the proof checks both agree; the bundle names one).
    return BundleTrace(**values)


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
        for name in TRACE_IDS:
            del fields[name]
        steps.append(BundleStep(**fields))
        if progress is not None and len(steps) % progress_every == 0:
            progress(len(steps), trace.chain_length)
    return ProofBundle(
        exported_at=canonical_timestamp(datetime.now(UTC)),
        trace=_bundle_trace(trace),
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
