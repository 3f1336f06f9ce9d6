"""One root for every expected failure, and the exit codes they map to (README, "The command
line"). An expected failure is a `RunProofError`: it carries its exit code and says in one line
exactly what failed (`line()`), so the CLI maps the root once and a new error class cannot be
forgotten by it (docs/architecture.md, "Errors"). Anything that is not a `RunProofError` (or a
database driver's connection error, which the CLI maps too) is a bug and keeps its traceback.

The bottom layer: the integrity core may raise these too, so this module imports nothing of
the project's and nothing but the standard library."""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar

__all__ = ["ExitCode", "RunProofError"]


class ExitCode(IntEnum):
    OK = 0  # VERIFIED, or the command succeeded
    FAILED = 1  # integrity failure (or a stopped plan)
    USAGE = 2  # usage or configuration error
    UNSEALED = 3  # the trace is still being written; its prefix verifies
    NOT_FOUND = 4  # no such run (a wrong tenant gives exactly this), or UNSUPPORTED
    UNREACHABLE = 5  # the database cannot be reached


class RunProofError(Exception):
    """An expected failure. Subclasses set `exit_code` (and `prefix`, the words that put the
    message in context, e.g. "configuration error: "); an instance may override the exit code
    when the same failure has two outcomes (a worker that lost its database is UNREACHABLE,
    one that found a bad row is FAILED)."""

    exit_code: ClassVar[ExitCode] = ExitCode.FAILED
    prefix: ClassVar[str] = ""

    def code(self) -> ExitCode:
        return type(self).exit_code

    def line(self) -> str:
        """What the CLI prints on stderr: the prefix and the message."""
        return f"{self.prefix}{self}" if str(self) else f"{self.prefix}{type(self).__name__}"
