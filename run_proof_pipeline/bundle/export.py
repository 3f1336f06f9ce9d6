"""`export`: write one run's proof bundle, read in one REPEATABLE READ snapshot."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.bundle.model import (
    BundleEntry,
    BundleLedger,
    BundleStep,
    BundleTrace,
    ProofBundle,
)
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


class RunNotFound(LookupError):
    pass


class Unexportable(ValueError):
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


async def export_bundle(
    conn: AsyncConnection,
    settings: LedgerSettings,
    tenant_id: str,
    run_id: str,
    *,
    progress: Callable[[int, int | None], None] | None = None,
    progress_every: int = 20_000,
) -> ProofBundle:
    trace = await read_trace(conn, tenant_id, run_id)
    if trace is None:
        raise RunNotFound(f"no trace for tenant {tenant_id!r}, run {run_id!r}")
    steps: list[BundleStep] = []
    async for row in stream_step_rows(conn, trace.trace_id):
        fields = {c: _value(c, v) for c, v in zip(STEP_COLUMNS, row, strict=True)}
        for column in _JSON_COLUMNS:
            _representable(fields[column], f"step {fields['step_index']}: {column}")
        # The step's own tenant/run columns are not hashed: the trace's are (spec).
        del fields["tenant_id"], fields["run_id"]
        steps.append(BundleStep(**fields))
        if progress is not None and len(steps) % progress_every == 0:
            progress(len(steps), trace.chain_length)
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
            root_hash=trace.root_hash,
            chain_length=trace.chain_length,
        ),
        steps=steps,
        ledger=ledger,
    )
