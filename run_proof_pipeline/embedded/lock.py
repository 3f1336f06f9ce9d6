"""The base directory's lock: initdb, start and stop of one server never run at once, between
processes that share its base directory (the CLI, a daemon, tests)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from run_proof_pipeline.embedded.paths import ServerPaths

__all__ = ["base_dir_lock"]


@contextlib.contextmanager
def base_dir_lock(paths: ServerPaths) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<base_dir>/.lock`` (made, with the base directory,
    when missing); released when the block ends, or by the kernel when the process dies."""
    paths.base_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
