"""`checkpoint create`: sign the ledger's current tree head, never over a rewritten history.

The signing key must be named by the log's origin (C2SP tlog-checkpoint): a key shared by two
logs would make each one's checkpoints pass for the other's. The new checkpoint is written
only when the ledger is intact (gapless, leaf hashes match their fields) and a consistent
extension of the previous checkpoint: signing a rolled-back or rewritten ledger would bless
the tampering.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.errors import ExitCode, RunProofError
from run_proof_pipeline.ledger.audit import check_extends
from run_proof_pipeline.ledger.checkpoint import (
    Checkpoint,
    CheckpointProblem,
    SignedCheckpoint,
    sign_checkpoint,
)
from run_proof_pipeline.ledger.checkpoint_files import prepare_checkpoint_target, write_checkpoint
from run_proof_pipeline.ledger.queries import database_name, ledger_present, read_entries
from run_proof_pipeline.ledger.settings import LedgerSettings
from run_proof_pipeline.ledger.signed_head import load_signed_head
from run_proof_pipeline.ledger.tree import LedgerTree
from run_proof_pipeline.settings import ConfigError

__all__ = ["CheckpointRefused", "CreatedCheckpoint", "create_checkpoint"]


class CheckpointRefused(RunProofError):
    """The ledger is not in a state that may be signed; the message says why."""

    exit_code = ExitCode.FAILED
    prefix = "checkpoint refused: "


@dataclass(frozen=True)
class CreatedCheckpoint:
    path: Path
    signed: SignedCheckpoint
    previous_size: int | None
    key_warning: str | None = None  # set when this call created the signing key


async def create_checkpoint(
    conn: AsyncConnection, settings: LedgerSettings, *, out: Path | None = None
) -> CreatedCheckpoint:
    # The one path that creates RUN_PROOF_CHECKPOINT_DIR; every verify path requires it.
    target = out or settings.checkpoint_dir(create=True)
    if target is None:
        raise ConfigError("RUN_PROOF_CHECKPOINT_DIR is not set (or pass --out)")
    # A target no checkpoint can be written to is refused before a key is created or the
    # ledger read (OutputError: one line, exit 2); the write itself never overwrites.
    prepare_checkpoint_target(target)
    if not await ledger_present(conn):
        raise CheckpointRefused("the ledger table run_proof_ledger is missing")
    name = await database_name(conn)
    origin = settings.origin(name)
    key, key_warning = settings.ensure_signing_key(origin)
    if key.name != origin:
        # One key, one log: a key named for another origin would let that log's checkpoints
        # (and bundles) pass for this one's, and this one's for that one's.
        raise ConfigError(
            f"checkpoint refused: the signing key is named {key.name!r}, not this log's origin "
            f"{origin!r}; a log signs only with a key named by its origin (C2SP "
            "tlog-checkpoint), so each database needs its own key"
        )
    tree = LedgerTree(await read_entries(conn))
    if tree.problems:
        raise CheckpointRefused("; ".join(tree.problems))
    try:
        previous = load_signed_head(settings, name)
    except CheckpointProblem as exc:
        raise CheckpointRefused(f"the previous checkpoint cannot be trusted: {exc}") from None
    if previous is not None:
        why = check_extends(tree, previous)
        if why is not None:
            raise CheckpointRefused(why)
    signed = sign_checkpoint(Checkpoint(origin, tree.size, tree.root()), key)
    path = write_checkpoint(target, signed)
    return CreatedCheckpoint(path, signed, None if previous is None else previous.size, key_warning)
