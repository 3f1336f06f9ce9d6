"""Exit codes shared by every `run-proof` command (documented in the README)."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # VERIFIED, or the command succeeded
    FAILED = 1  # integrity failure
    USAGE = 2  # usage or configuration error
    UNSEALED = 3  # the trace is still being written; its prefix verifies
    NOT_FOUND = 4  # no such run (a wrong tenant gives exactly this), or UNSUPPORTED
    UNREACHABLE = 5  # the database cannot be reached


STATUS_EXIT = {
    "VERIFIED": ExitCode.OK,
    "FAILED": ExitCode.FAILED,
    "UNSEALED": ExitCode.UNSEALED,
    "UNSUPPORTED": ExitCode.NOT_FOUND,
}
