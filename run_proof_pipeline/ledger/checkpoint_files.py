"""Checkpoint notes on disk: one file per checkpoint, never overwritten, and the latest one.

File names carry the tree size: `checkpoint-<size, 12 digits>-<UTC time>.note`. The directory
is read fail-closed: every file in it (but the writer's hidden temp files) must be a readable
checkpoint whose name agrees with its body, or every read of the directory fails naming the
file. A truncated, garbled or renamed newest checkpoint must not let an older one stand in for
it (that would un-sign every run it covered).

Files are written atomically and durably: a temp file in the same directory, fsync, linked to
its final name (which fails if that name exists: never overwritten), then the directory is
fsynced. A crash leaves either no checkpoint or the whole one, never a partial file.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from run_proof_pipeline.ledger.checkpoint import CheckpointProblem, SignedCheckpoint
from run_proof_pipeline.settings import ConfigError

__all__ = [
    "StoredCheckpoint",
    "latest_checkpoint",
    "read_checkpoint",
    "scan_checkpoints",
    "write_checkpoint",
]

_NAME = re.compile(r"checkpoint-(\d{12,})-(\d{8}T\d{12}Z)\.note")
_TEMP_PREFIX = ".checkpoint-"  # the writer's temp files; hidden files are not checkpoints
_TEMP_SUFFIX = ".tmp"


class StoredCheckpoint:
    def __init__(self, path: Path, signed: SignedCheckpoint) -> None:
        self.path = path
        self.signed = signed

    @property
    def size(self) -> int:
        return self.signed.checkpoint.size

    @property
    def origin(self) -> str:
        return self.signed.checkpoint.origin


def _file_name(size: int) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"checkpoint-{size:012d}-{stamp}.note"


def write_checkpoint(target: Path, signed: SignedCheckpoint) -> Path:
    """Write the note into directory `target` (created if missing), or to the file `target`
    when it names a file that does not exist yet. Never overwrites; atomic and durable."""
    if target.suffix == ".note" or (target.exists() and not target.is_dir()):
        path = target
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        target.mkdir(parents=True, exist_ok=True)
        path = target / _file_name(signed.checkpoint.size)
    _write_durably(path, signed.note().encode("utf-8"))
    return path


def _write_durably(path: Path, data: bytes) -> None:
    fd, temp_name = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX, dir=path.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, 0o644)
        _publish(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    _fsync_directory(path.parent)


def _publish(temp: Path, path: Path) -> None:
    """Give the complete temp file its final name in one step, never replacing a file."""
    try:
        os.link(temp, path)  # atomic; FileExistsError when the name is taken
        return
    except FileExistsError:
        raise FileExistsError(f"checkpoint {path} exists already: never overwritten") from None
    except OSError:
        pass  # a file system without hard links: rename, after checking the name is free
    if path.exists():
        raise FileExistsError(f"checkpoint {path} exists already: never overwritten")
    os.replace(temp, path)


def _fsync_directory(directory: Path) -> None:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(directory, flags)
    except OSError:
        return  # a platform that cannot open a directory (Windows): nothing to sync
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory; the file itself was synced
    finally:
        os.close(fd)


def read_checkpoint(path: Path) -> StoredCheckpoint:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointProblem(f"cannot read checkpoint {path}: {exc}") from None
    if not raw:
        raise CheckpointProblem(f"checkpoint {path} is empty (0 bytes): truncated or damaged")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointProblem(f"checkpoint {path} is not UTF-8 text: {exc}") from None
    try:
        return StoredCheckpoint(path, SignedCheckpoint.parse(text))
    except CheckpointProblem as exc:
        raise CheckpointProblem(f"checkpoint {path}: {exc}") from None


def scan_checkpoints(directory: Path, origin: str) -> list[StoredCheckpoint]:
    """Every checkpoint of `origin` in `directory`, each read and checked against its name.

    CheckpointProblem, naming the file, for anything in the directory (but hidden files: the
    writer's temp files) that is not a readable checkpoint whose name gives its tree size; for
    a checkpoint of another origin that carries a signature by this origin's key name (its
    origin line was edited); and for two checkpoints of `origin` signing one size with two
    roots. ConfigError when the directory holds checkpoints of other origins only: a wrong
    RUN_PROOF_CHECKPOINT_ORIGIN (or another log's directory) would otherwise drop the signed
    check without a word."""
    try:
        paths = sorted(directory.iterdir())
    except OSError as exc:
        raise CheckpointProblem(
            f"cannot list the checkpoint directory {directory}: {exc}"
        ) from None
    ours: list[StoredCheckpoint] = []
    others: dict[str, int] = {}
    for path in paths:
        if path.name.startswith("."):
            continue
        match = _NAME.fullmatch(path.name)
        if match is None:
            raise CheckpointProblem(
                f"{path} is not a checkpoint file (checkpoint-<12-digit size>-<UTC time>.note) "
                "in the checkpoint directory: a renamed or planted file is not skipped; "
                "keep only checkpoints there"
            )
        if not path.is_file():
            raise CheckpointProblem(f"checkpoint {path} is not a regular file")
        stored = read_checkpoint(path)
        named_size = int(match.group(1))
        if stored.size != named_size:
            raise CheckpointProblem(
                f"checkpoint {path}: its name says tree size {named_size} but it signs tree "
                f"size {stored.size}: renamed or altered"
            )
        if stored.origin == origin:
            ours.append(stored)
            continue
        if any(name == origin for name, _kid, _sig in stored.signed.signatures):
            raise CheckpointProblem(
                f"checkpoint {path} names origin {stored.origin!r} but carries a signature by "
                f"the key of {origin!r}: its origin line was altered"
            )
        others[stored.origin] = others.get(stored.origin, 0) + 1
    if not ours and others:
        found = ", ".join(f"{o!r} ({n})" for o, n in sorted(others.items()))
        raise ConfigError(
            f"the checkpoint directory {directory} holds no checkpoint of origin {origin!r} but "
            f"holds checkpoints of {found}: check RUN_PROOF_CHECKPOINT_ORIGIN and "
            "RUN_PROOF_CHECKPOINT_DIR (one directory per log)"
        )
    by_size: dict[int, StoredCheckpoint] = {}
    for stored in ours:
        first = by_size.setdefault(stored.size, stored)
        if first.signed.checkpoint.root != stored.signed.checkpoint.root:
            raise CheckpointProblem(
                f"checkpoints {first.path} and {stored.path} both sign tree size {stored.size} "
                "with different roots: the log was forked"
            )
    return ours


def latest_checkpoint(directory: Path, origin: str) -> StoredCheckpoint | None:
    """The checkpoint of `origin` with the largest tree size (the newest among equals); None
    when the directory holds no checkpoint at all. Fails closed as scan_checkpoints() does."""
    if not directory.is_dir():
        raise ConfigError(f"the checkpoint directory {directory} does not exist")
    ours = scan_checkpoints(directory, origin)
    if not ours:
        return None
    return max(ours, key=lambda s: (s.size, s.path.name))
