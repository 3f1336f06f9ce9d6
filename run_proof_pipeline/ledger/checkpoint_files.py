"""Checkpoint notes on disk: one file per checkpoint, never overwritten, and the latest one.

File names carry the tree size: `checkpoint-<size, 12 digits>-<UTC time>.note`. The directory
is read fail-closed: every file in it (but the writer's hidden temp files) must be a readable
checkpoint whose name agrees with its body, or every read of the directory fails naming the
file. A truncated, garbled or renamed newest checkpoint must not let an older one stand in for
it (that would un-sign every run it covered).

Files are written atomically and durably: a temp file in the same directory, fsync, linked to
its final name (which fails if that name exists: never overwritten), then the directory is
fsynced. A crash leaves either no checkpoint or the whole one, never a partial file.

The same writer (write_durably, write_output_file) writes every file the CLI is asked for
with `--out` (`export`'s bundle too): a path that cannot take the file is refused before any
work (a directory, a missing folder, a taken name unless replacing was asked for), and a
write that fails (no space, no permission) leaves neither a partial nor a temp file behind
(OutputError, one line; the CLI exits 2). docs/bad-input.md lists the messages.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from run_proof_pipeline.errors import ExitCode, RunProofError
from run_proof_pipeline.ledger.checkpoint import CheckpointProblem, SignedCheckpoint
from run_proof_pipeline.settings import ConfigError

__all__ = [
    "OutputError",
    "OutputExists",
    "StoredCheckpoint",
    "check_output_path",
    "checkpoint_path",
    "prepare_checkpoint_target",
    "latest_checkpoint",
    "read_checkpoint",
    "scan_checkpoints",
    "write_checkpoint",
    "write_durably",
    "write_output_file",
]

_NAME = re.compile(r"checkpoint-(\d{12,})-(\d{8}T\d{12}Z)\.note")
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


class OutputError(RunProofError):
    """A file was not written where it was asked for; the message (one line) says why and
    what to do. Nothing is left behind: no partial file, no temp file, an old file intact.
    Exit 2, as a usage error."""

    exit_code = ExitCode.USAGE


class OutputExists(OutputError, FileExistsError):
    """The file's name is taken, and replacing it was not asked for (or is never allowed)."""


def write_checkpoint(target: Path, signed: SignedCheckpoint) -> Path:
    """Write the note into directory `target` (created if missing), or to the file `target`
    when it names a file that does not exist yet. Never overwrites; atomic and durable.
    OutputError when it cannot (the name is taken, a folder cannot be created, the write
    fails): nothing is left behind."""
    path = checkpoint_path(target, signed.checkpoint.size)
    write_durably(path, signed.note().encode("utf-8"), name="checkpoint")
    return path


def prepare_checkpoint_target(target: Path) -> None:
    """Refuse a `--out`/directory `target` no checkpoint can be written to, creating the
    folders on the way: OutputExists for a taken file name, OutputError for a folder that
    cannot be created. Called before signing, so that a bad target costs nothing."""
    directory = target.parent if _names_a_file(target) else target
    if _names_a_file(target) and os.path.lexists(target):
        raise _exists(target, "checkpoint")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create the checkpoint directory {directory}: {_reason(exc)}; "
            "nothing was written"
        ) from None
    probe_writable(directory, target if _names_a_file(target) else directory, "checkpoint")


def checkpoint_path(target: Path, size: int) -> Path:
    """Where a checkpoint of tree size `size` goes for `target` (prepared first)."""
    prepare_checkpoint_target(target)
    return target if _names_a_file(target) else target / _file_name(size)


def _names_a_file(target: Path) -> bool:
    return target.suffix == ".note" or (os.path.lexists(target) and not target.is_dir())


def check_output_path(path: Path, *, name: str, replace: bool, replace_hint: str) -> None:
    """Refuse, before any work, a path where a file cannot be written: a directory, a folder
    that does not exist or is not a folder, an existing file (unless `replace`). A device
    or a pipe (`/dev/stdout`, a FIFO) is written as it is. Replacing replaces the name given:
    a symbolic link there is replaced, what it points to is not written. `name` opens every
    message (the option, e.g. "--out"); `replace_hint` says how to ask for a replacement."""
    if path.is_dir():
        raise OutputError(f"{name} {path} is a directory: give a file name; nothing was written")
    parent = path.parent
    if not parent.is_dir():
        missing = "is not a folder" if os.path.lexists(parent) else "does not exist"
        raise OutputError(f"{name} {path}: the folder {parent} {missing}; nothing was written")
    if _special(path):
        return
    if os.path.lexists(path) and not replace:
        raise _exists(path, name, replace_hint)
    probe_writable(parent, path, name)


def probe_writable(directory: Path, path: Path, name: str) -> None:
    """Refuse now, not after the work, a folder where no file can be created (permissions,
    a read-only file system): a hidden temp file is created there and removed at once."""
    try:
        fd, temp = tempfile.mkstemp(prefix=".run-proof-probe-", suffix=_TEMP_SUFFIX, dir=directory)
    except OSError as exc:
        raise OutputError(
            f"cannot write {name} {path}: {_reason(exc)}; nothing was written"
        ) from None
    os.close(fd)
    os.unlink(temp)


def write_output_file(
    path: Path, data: bytes, *, name: str, replace: bool, replace_hint: str
) -> None:
    """`data` as the file `path`, checked as check_output_path() does: a regular file is
    written whole or not at all (write_durably), replacing an old one only if `replace`;
    a device or a pipe is written straight (there is no file to leave half-written)."""
    check_output_path(path, name=name, replace=replace, replace_hint=replace_hint)
    if _special(path):
        _write_special(path, data, name=name)
        return
    write_durably(path, data, name=name, replace=replace, replace_hint=replace_hint)


def write_durably(
    path: Path, data: bytes, *, name: str, replace: bool = False, replace_hint: str = ""
) -> None:
    """Write `data` as the file `path`: a temp file in its directory, fsync, then its final
    name in one step: a hard link, which never replaces a file (OutputExists), or with
    `replace` an atomic rename over the old file; then the directory is fsynced. On any
    failure (no space, no permission, a file size limit) the temp file is removed and an old
    file is untouched: OutputError, naming `name` and `path`."""
    try:
        fd, temp_name = tempfile.mkstemp(
            prefix=f".{path.name[:80]}-", suffix=_TEMP_SUFFIX, dir=path.parent
        )
    except OSError as exc:
        raise OutputError(
            f"cannot write {name} {path}: {_reason(exc)}; nothing was written"
        ) from None
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, 0o644)
        if replace:
            os.replace(temp, path)
        else:
            _publish(temp, path, name, replace_hint)
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(
            f"cannot write {name} {path}: {_reason(exc)}; nothing was written"
            + (" (the old file is unchanged)" if os.path.lexists(path) else "")
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    _fsync_directory(path.parent)


def _publish(temp: Path, path: Path, name: str, replace_hint: str) -> None:
    """Give the complete temp file its final name in one step, never replacing a file."""
    try:
        os.link(temp, path)  # atomic; FileExistsError when the name is taken
        return
    except FileExistsError:
        raise _exists(path, name, replace_hint) from None
    except OSError:
        pass  # a file system without hard links: rename, after checking the name is free
    if os.path.lexists(path):
        raise _exists(path, name, replace_hint)
    os.replace(temp, path)


def _write_special(path: Path, data: bytes, *, name: str) -> None:
    # No O_CREAT, no O_TRUNC: if a regular file took the name since the check, it is
    # refused, not truncated. Unbuffered: an error is raised by the write that failed.
    try:
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise OutputError(f"cannot write {name} {path}: {_reason(exc)}") from None
    written = 0
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise _exists(path, name, "")
        view = memoryview(data)
        while written < len(data):
            written += os.write(fd, view[written:])
    except OutputError:
        raise
    except OSError as exc:
        done = (
            "nothing was written"
            if written == 0
            else f"only {written} of {len(data)} bytes were written"
        )
        raise OutputError(f"cannot write {name} {path}: {_reason(exc)}; {done}") from None
    finally:
        os.close(fd)


def _special(path: Path) -> bool:
    """A device, a pipe or a socket, itself or where its link points (`/dev/stdout`): written
    straight, never replaced (a rename would put a file in place of the device)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _exists(path: Path, name: str, replace_hint: str = "") -> OutputExists:
    if name == "checkpoint":
        return OutputExists(
            f"checkpoint {path} exists already: never overwritten; nothing was written "
            "(give a new file name or a directory)"
        )
    hint = f" ({replace_hint})" if replace_hint else ""
    return OutputExists(f"{name} {path} exists already: nothing was written{hint}")


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


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
