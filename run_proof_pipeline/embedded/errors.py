"""The embedded server's one expected failure: ``LocalPostgresError`` (docs/architecture.md,
"Errors"). Every module of ``embedded/`` raises it when the server cannot be located,
initialised, started or stopped; the CLI maps it to exit 5 and its message's first line."""

from __future__ import annotations

from run_proof_pipeline.errors import ExitCode, RunProofError

__all__ = ["LocalPostgresError"]


class LocalPostgresError(RunProofError, RuntimeError):
    """The local server could not be located, initialised, started or stopped: the
    database cannot be reached (exit 5). The line is the message's first line (a message may
    carry the server's log tail)."""

    exit_code = ExitCode.UNREACHABLE
    prefix = "embedded PostgreSQL: "

    def line(self) -> str:
        text = str(self).strip()
        return f"{self.prefix}{text.splitlines()[0] if text else type(self).__name__}"
