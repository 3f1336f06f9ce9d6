"""The latest signed checkpoint of this database's ledger, checked against the public key.

What a verifier trusts instead of the database: a tree head signed outside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from run_proof_pipeline.ledger.checkpoint import Checkpoint, CheckpointProblem
from run_proof_pipeline.ledger.checkpoint_files import (
    StoredCheckpoint,
    latest_checkpoint,
    read_checkpoint,
)
from run_proof_pipeline.ledger.keys import VerifierKey
from run_proof_pipeline.ledger.settings import LedgerSettings
from run_proof_pipeline.settings import ConfigError

__all__ = ["SignedHead", "load_signed_head"]


@dataclass(frozen=True)
class SignedHead:
    path: Path
    checkpoint: Checkpoint
    note: str
    key: VerifierKey

    @property
    def size(self) -> int:
        return self.checkpoint.size

    @property
    def root(self) -> bytes:
        return self.checkpoint.root


def _verified(stored: StoredCheckpoint, key: VerifierKey, origin: str) -> SignedHead:
    if stored.signed.checkpoint.origin != origin:
        raise CheckpointProblem(
            f"checkpoint {stored.path} is for origin {stored.signed.checkpoint.origin!r}, "
            f"not {origin!r}"
        )
    try:
        stored.signed.verify(key)
    except CheckpointProblem as exc:
        raise CheckpointProblem(f"checkpoint {stored.path}: {exc}") from None
    return SignedHead(stored.path, stored.signed.checkpoint, stored.signed.note(), key)


def load_signed_head(
    settings: LedgerSettings, database_name: str, *, path: Path | None = None
) -> SignedHead | None:
    """The checkpoint at `path`, else the latest in RUN_PROOF_CHECKPOINT_DIR for this
    database's origin; None when checkpoints are not configured or none was written yet.

    ConfigError when checkpoints are configured without a key to check them;
    CheckpointProblem when the checkpoint is malformed or its signature does not verify.
    """
    directory = settings.checkpoint_dir()
    if path is None and directory is None:
        return None
    key = settings.verifier_key()
    if key is None:
        raise ConfigError(
            "checkpoints are configured but there is no key to check their signatures: "
            "set RUN_PROOF_PUBLIC_KEY (or RUN_PROOF_SIGNING_KEY)"
        )
    origin = settings.origin(database_name)
    if path is not None:
        return _verified(read_checkpoint(path), key, origin)
    assert directory is not None
    stored = latest_checkpoint(directory, origin)
    return None if stored is None else _verified(stored, key, origin)
