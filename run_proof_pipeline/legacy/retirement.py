"""Retirement: a signed tombstone in the ledger before a format-v1 run's rows may go.

Retention and erasure are lawful; a silent deletion is not. `retire_run` signs a statement
naming the run as it stands (hash and length) and the reason, with the Ed25519 key that lives
outside the database, and inserts it into run_proof_retirements, whose trigger appends the
'tombstone' ledger entry (migration 0003). From then on the trace guard lets the trace row be
deleted or moved to an archive, and the checkpoint audit expects it gone. `audit_tombstones`
is the audit's half: every tombstone must carry a signature that verifies, or the deletion it
excuses is still an alarm.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from run_proof_pipeline.integrity import canonicalize
from run_proof_pipeline.ledger.keys import SigningKey, VerifierKey

STATEMENT_PREFIX = b"run-proof tombstone v1\n"


class RetirementError(Exception):
    """The run cannot be retired; nothing was written."""


class Tombstone(BaseModel):
    tenant_id: str
    run_id: str
    trace_id: str
    chain_length: int
    root_hash: str
    reason: str

    def message(self) -> bytes:
        """What the signature covers: a fixed prefix and the canonical JSON of the fields."""
        record = {"v": 1, "kind": "tombstone", **self.model_dump()}
        return STATEMENT_PREFIX + canonicalize(record, strict=True)


class Retirement(BaseModel):
    tombstone: Tombstone
    signer: str
    ledger_seq: int
    retired_at: datetime
    newly_retired: bool


def _signer(key: VerifierKey) -> str:
    return f"{key.name}+{key.id.hex()}"


async def _as_it_stands(conn: AsyncConnection, tenant_id: str, run_id: str) -> tuple[str, int, str]:
    """(trace_id, hash, length) of the run's format-v1 trace, locked against a seal."""
    # A format-v1 trace first: a legacy trace may share its run id (AOS allowed that).
    statement = text(
        "SELECT trace_id, genesis_hash, root_hash, chain_length FROM aos_traces"
        " WHERE tenant_id = :tenant_id AND run_id = :run_id"
        " ORDER BY genesis_hash IS NULL LIMIT 1 FOR UPDATE"
    )
    row = (await conn.execute(statement, {"tenant_id": tenant_id, "run_id": run_id})).first()
    if row is None:
        raise RetirementError(f"no trace for tenant {tenant_id!r}, run {run_id!r}")
    if row.genesis_hash is None:
        raise RetirementError(
            f"run {run_id!r} is a legacy trace: it was never in the ledger and needs no "
            "tombstone; archive or delete it as AOS does"
        )
    if row.root_hash is not None:
        return row.trace_id, row.root_hash, row.chain_length
    head = (
        await conn.execute(
            text(
                "SELECT count(*) AS n, (SELECT step_hash FROM aos_trace_steps"
                "  WHERE trace_id = :trace_id ORDER BY step_index DESC LIMIT 1) AS head"
                " FROM aos_trace_steps WHERE trace_id = :trace_id"
            ),
            {"trace_id": row.trace_id},
        )
    ).one()
    return row.trace_id, head.head or row.genesis_hash, int(head.n)


async def _existing(conn: AsyncConnection, trace_id: str) -> Retirement | None:
    statement = text(
        "SELECT tenant_id, run_id, trace_id, chain_length, root_hash, reason, signer,"
        " ledger_seq, retired_at FROM run_proof_retirements WHERE trace_id = :trace_id"
    )
    row = (await conn.execute(statement, {"trace_id": trace_id})).first()
    if row is None:
        return None
    return Retirement(
        tombstone=_tombstone_of(row),
        signer=row.signer,
        ledger_seq=row.ledger_seq,
        retired_at=row.retired_at,
        newly_retired=False,
    )


def _tombstone_of(row: Any) -> Tombstone:
    return Tombstone(**{name: getattr(row, name) for name in Tombstone.model_fields})


async def retire_run(
    engine: AsyncEngine, tenant_id: str, run_id: str, reason: str, key: SigningKey
) -> Retirement:
    """Append the run's signed tombstone to the ledger; idempotent (a retired run is kept)."""
    if not reason.strip():
        raise RetirementError("a retirement needs a reason (--reason)")
    async with engine.begin() as conn:
        trace_id, head, length = await _as_it_stands(conn, tenant_id, run_id)
        existing = await _existing(conn, trace_id)
        if existing is not None:
            return existing
        tombstone = Tombstone.model_validate(
            {"tenant_id": tenant_id, "run_id": run_id, "trace_id": trace_id}
            | {"chain_length": length, "root_hash": head, "reason": reason}
        )
        signer = _signer(key.verifier())
        row = (
            await conn.execute(
                text(
                    "INSERT INTO run_proof_retirements (tenant_id, run_id, trace_id,"
                    " chain_length, root_hash, reason, signer, signature)"
                    " VALUES (:tenant_id, :run_id, :trace_id, :chain_length, :root_hash,"
                    " :reason, :signer, :signature) RETURNING ledger_seq, retired_at"
                ),
                {
                    **tombstone.model_dump(),
                    "signer": signer,
                    "signature": base64.b64encode(key.sign(tombstone.message())).decode(),
                },
            )
        ).one()
    return Retirement(
        tombstone=tombstone,
        signer=signer,
        ledger_seq=row.ledger_seq,
        retired_at=row.retired_at,
        newly_retired=True,
    )


_TOMBSTONES = """
SELECT l.seq, l.tenant_id, l.run_id, l.trace_id, l.chain_length, l.root_hash,
       r.tenant_id AS r_tenant_id, r.run_id AS r_run_id, r.trace_id AS r_trace_id,
       r.chain_length AS r_chain_length, r.root_hash AS r_root_hash, r.reason, r.signer,
       r.signature
FROM run_proof_ledger l LEFT JOIN run_proof_retirements r ON r.ledger_seq = l.seq
WHERE l.kind = 'tombstone' ORDER BY l.seq
"""


def _signature_ok(signature: str, key: VerifierKey, message: bytes) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
    except ValueError:
        return False
    return key.verify(raw, message)


async def audit_tombstones(conn: AsyncConnection, key: VerifierKey) -> list[str]:
    """Every tombstone in the ledger that does not excuse a deletion, one sentence each."""
    problems: list[str] = []
    for row in await conn.execute(text(_TOMBSTONES)):
        where = f"ledger entry {row.seq} (tenant {row.tenant_id!r}, run {row.run_id!r})"
        ledger = (row.tenant_id, row.run_id, row.trace_id, row.chain_length, row.root_hash)
        recorded = (row.r_tenant_id, row.r_run_id, row.r_trace_id, row.r_chain_length)
        if row.signature is None:
            problems.append(f"{where}: tombstone without a signed retirement")
            continue
        if recorded + (row.r_root_hash,) != ledger:
            problems.append(f"{where}: tombstone disagrees with its retirement record")
            continue
        tombstone = _tombstone_of(row)
        if row.signer != _signer(key) or not _signature_ok(row.signature, key, tombstone.message()):
            problems.append(
                f"{where}: tombstone signature does not verify with key {_signer(key)}"
                " (the run's removal is not a lawful retirement)"
            )
    return problems
