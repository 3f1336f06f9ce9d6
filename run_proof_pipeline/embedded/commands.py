"""Running the server's binaries (``initdb``, ``pg_ctl``): as the server's OS user, bounded in
time, from ``/``; a failure is one ``LocalPostgresError`` that quotes the command's output and,
where the server was involved, the last lines of its log, redacted."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from run_proof_pipeline.embedded.binaries import ServerBinaries
from run_proof_pipeline.embedded.errors import LocalPostgresError
from run_proof_pipeline.embedded.os_user import ServerUser
from run_proof_pipeline.embedded.paths import ServerPaths
from run_proof_pipeline.settings import redact

__all__ = ["LOG_TAIL_LINES", "ServerCommands", "log_tail"]

LOG_TAIL_LINES = 40


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The server log's last lines, redacted: the server logs the statement of a failed
    command, and an `ALTER ROLE ... PASSWORD '...'` would show its password."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(could not read {path}: {exc})"
    return redact("\n".join(text.splitlines()[-lines:])) or "(empty)"


class ServerCommands:
    """The binaries of one server, run as its OS user."""

    def __init__(self, binaries: ServerBinaries, user: ServerUser, paths: ServerPaths) -> None:
        self.binaries = binaries
        self.user = user
        self.paths = paths

    def bin(self, name: str) -> str:
        return self.binaries.path(name)

    def run(
        self,
        argv: Sequence[str],
        *,
        what: str,
        timeout: float,
        check: bool = True,
        include_server_log: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv``; ``what`` completes "failed to ..." in the error. With ``check``
        false a non-zero exit is the caller's to read."""
        argv = self.user.command(argv, self.paths.base_dir)
        try:
            # cwd="/" so the server user never inherits a working directory it cannot enter.
            result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd="/")
        except subprocess.TimeoutExpired as exc:
            raise LocalPostgresError(
                f"failed to {what}: `{' '.join(argv)}` timed out after {timeout:.0f}s"
                + self._log_suffix(include_server_log)
            ) from exc
        except OSError as exc:
            raise LocalPostgresError(f"failed to {what}: cannot run {argv[0]}: {exc}") from exc
        if check and result.returncode != 0:
            raise LocalPostgresError(
                f"failed to {what}: `{' '.join(argv)}` exited with {result.returncode}\n"
                f"--- output ---\n{redact((result.stdout + result.stderr).strip())}"
                + self._log_suffix(include_server_log)
            )
        return result

    def _log_suffix(self, include: bool) -> str:
        if not include:
            return ""
        log_path = self.paths.log_path
        return f"\n--- last lines of {log_path} ---\n{log_tail(log_path)}"
