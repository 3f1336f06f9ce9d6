"""Checkpoint notes on disk: one file per checkpoint, never overwritten, and the latest one.

File names carry the tree size so the latest checkpoint of an origin is found without
parsing every file: `checkpoint-<size, 12 digits>-<UTC time>.note`.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

from run_proof_pipeline.ledger.checkpoint import CheckpointProblem, SignedCheckpoint

__all__ = ["StoredCheckpoint", "latest_checkpoint", "read_checkpoint", "write_checkpoint"]

_NAME = re.compile(r"checkpoint-(\d{12,})-(\d{8}T\d{12}Z)\.note")


class StoredCheckpoint:
    def __init__(self, path: Path, signed: SignedCheckpoint) -> None:
        self.path = path
        self.signed = signed

    @property
    def size(self) -> int:
        return self.signed.checkpoint.size


def _file_name(size: int) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"checkpoint-{size:012d}-{stamp}.note"


def write_checkpoint(target: Path, signed: SignedCheckpoint) -> Path:
    """Write the note into directory `target` (created if missing), or to the file `target`
    when it names a file that does not exist yet. Never overwrites."""
    if target.suffix == ".note" or (target.exists() and not target.is_dir()):
        path = target
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        target.mkdir(parents=True, exist_ok=True)
        path = target / _file_name(signed.checkpoint.size)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
        f.write(signed.note())
    return path


def read_checkpoint(path: Path) -> StoredCheckpoint:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointProblem(f"cannot read checkpoint {path}: {exc}") from None
    try:
        return StoredCheckpoint(path, SignedCheckpoint.parse(text))
    except CheckpointProblem as exc:
        raise CheckpointProblem(f"checkpoint {path}: {exc}") from None


def latest_checkpoint(directory: Path, origin: str) -> StoredCheckpoint | None:
    """The checkpoint of `origin` with the largest tree size (the newest among equals)."""
    if not directory.is_dir():
        return None
    named = ((p, _NAME.fullmatch(p.name)) for p in directory.iterdir())
    candidates = sorted(
        ((int(m.group(1)), m.group(2), p) for p, m in named if m is not None), reverse=True
    )
    for _size, _stamp, path in candidates:
        with path.open(encoding="utf-8", errors="replace") as f:
            first_line = f.readline().rstrip("\n")
        if first_line == origin:
            return read_checkpoint(path)
    return None
