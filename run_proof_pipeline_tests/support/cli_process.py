"""Run the run-proof CLI (or another program of this venv) as a real process, as a user would.

A test that needs what only a process shows (the exit code the shell sees, stdout and stderr
as written, environment variables read at start, limits set before exec) builds the
environment itself and calls `run_process([CLI, ...], env)`. The helper only fixes how the
process is run: output captured as text, no exception on a non-zero exit (the tests assert
the code), a timeout.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["CLI", "file_size_limit", "retire_words", "run_process", "verify_run"]

CLI = str(Path(sys.executable).with_name("run-proof"))


def run_process(
    command: Sequence[str],
    env: Mapping[str, str],
    *,
    timeout: float = 120,
    cwd: Path | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`command` run with exactly `env`, its output captured as text; never raises on a
    non-zero exit code (the caller asserts it)."""
    return subprocess.run(
        list(command),
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        preexec_fn=preexec_fn,  # runs in the child, before exec
    )


def file_size_limit(limit: int) -> Callable[[], None]:
    """A preexec_fn giving the child RLIMIT_FSIZE `limit` bytes: a write beyond fails with
    EFBIG, as a full disk's ENOSPC would stop it."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def retire_words(tenant_id: str, run_id: str, reason: str = "retention") -> list[str]:
    """The arguments of `run-proof retire` for one run."""
    return ["retire", "--tenant-id", tenant_id, "--run-id", run_id, "--reason", reason]


def verify_run(database_url: str, tenant_id: str, run_id: str) -> subprocess.CompletedProcess[str]:
    """`run-proof verify` of one run as a process, DATABASE_URL `database_url` (the rest of
    the environment as it is, but for the developer's USE_POSTGRES_TRACES)."""
    env = {k: v for k, v in os.environ.items() if k != "USE_POSTGRES_TRACES"}
    env["DATABASE_URL"] = database_url
    return run_process([CLI, "verify", "--tenant-id", tenant_id, "--run-id", run_id], env)
