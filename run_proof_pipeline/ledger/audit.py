"""`checkpoint verify`: the current ledger against the latest signed checkpoint, and every
run it records against the trace tables. Reads one REPEATABLE READ snapshot.

It attests the ledger, not the rows: each recorded run's trace must still be there, in its
proof format (v1 or v2), with the recorded trace_id, seal (`seal_hash`, and for format v1
`root_hash` as well: docs/hash-chain-v2.md) and length, and every sealed format trace must
have an entry; but no step is re-hashed (`verify` and `sweep` do that). A recorded run whose
trace was turned legacy (chain_format cleared, or a format-v1 genesis_hash cleared) is an
inconsistency: its steps would be rows any client may change. So is a run recorded again
after its tombstone (its ids reused past migration 0004's guard, docs/ledger-v1.md "Ids are
recorded once")."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.ledger.checkpoint import CheckpointProblem
from run_proof_pipeline.ledger.queries import (
    database_name,
    ledger_present,
    ledger_run_id_collisions,
    ledger_trace_mismatches,
    read_entries,
)
from run_proof_pipeline.ledger.retirement import audit_reuses, audit_tombstones
from run_proof_pipeline.ledger.settings import LedgerSettings
from run_proof_pipeline.ledger.signed_head import SignedHead, load_signed_head
from run_proof_pipeline.ledger.tree import LedgerTree

__all__ = ["AuditReport", "audit_ledger", "check_extends"]


@dataclass
class AuditReport:
    origin: str
    size: int = 0
    root: bytes = b""
    checkpoint_path: Path | None = None
    checkpoint_size: int | None = None
    problems: list[str] = field(default_factory=list)
    # Not failures: other traces holding a recorded run's id (named, so nobody takes their
    # fields for the recorded run's).
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def root_b64(self) -> str:
        return base64.b64encode(self.root).decode()


def check_extends(tree: LedgerTree, head: SignedHead) -> str | None:
    """Why the ledger is not a consistent extension of the signed head, or None: the roots
    named as the checkpoint holds one and the ledger's entries recompute the other."""
    if tree.size < head.size:
        return (
            f"the ledger has {tree.size} entries but checkpoint {head.path} signed {head.size}: "
            "entries were removed (the ledger was rolled back)"
        )
    mismatch = tree.consistency_mismatch(head.size, head.root)
    if mismatch is not None:
        return (
            f"the ledger's first {head.size} entries no longer hash to the root signed in "
            f"checkpoint {head.path}: {mismatch.text('the checkpoint')}: "
            "the ledger was rewritten (the consistency proof fails)"
        )
    return None


async def audit_ledger(
    conn: AsyncConnection, settings: LedgerSettings, *, checkpoint: Path | None = None
) -> AuditReport:
    """Everything wrong with the ledger right now; `report.ok` when nothing is.

    ConfigError when no checkpoint can be checked (none configured, or no key)."""
    name = await database_name(conn)
    report = AuditReport(origin=settings.origin(name))
    if not await ledger_present(conn):
        report.problems.append("the ledger table run_proof_ledger is missing")
        return report
    tree = LedgerTree(await read_entries(conn))
    report.size, report.root = tree.size, tree.root()
    report.problems.extend(tree.problems)
    try:
        head = load_signed_head(settings, name, path=checkpoint)
    except CheckpointProblem as exc:
        report.problems.append(str(exc))
        head = None
    if head is not None:
        report.checkpoint_path, report.checkpoint_size = head.path, head.size
        why = check_extends(tree, head)
        if why is not None:
            report.problems.append(why)
    report.problems.extend(await ledger_trace_mismatches(conn))
    # No key needed: the ledger alone shows a retired run recorded again.
    report.problems.extend(await audit_reuses(conn))
    report.notes.extend(await ledger_run_id_collisions(conn))
    key = settings.verifier_key()
    if key is not None:
        # A tombstone excuses a deletion only when the key outside the database signed it.
        report.problems.extend(await audit_tombstones(conn, key))
    return report
