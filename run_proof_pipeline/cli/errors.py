"""One clear line on stderr and a documented exit code for every expected failure.

`handled()` wraps every command. It maps expected failures to exit codes: every
`RunProofError` (run_proof_pipeline/errors.py) with its own line and code, so no class can be
forgotten here, and the database drivers' errors (`_expected()`); anything else is a bug and
keeps its traceback. It also guards the standard streams for the command's
duration: a write that fails because standard output is closed, a broken pipe (the reader
exited: `run-proof retire ... | true`) or a full device never fails the command. The
command runs to its end, so whatever it commits is committed, and keeps its exit code; one
line on stderr then says the output was lost (and what the command did, when it said so with
`record_outcome`). If stderr is lost too, the command exits quietly with its code. Without
this, a broken pipe surfaced as BrokenPipeError, a ConnectionError, and was reported as
"database unreachable" after `retire` had committed its tombstone (issue 12); and Python's
own flush at exit printed "Exception ignored ... BrokenPipeError" and exited 120.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ParamSpec, TextIO, TypeVar

import psycopg
import typer
from sqlalchemy.exc import DBAPIError, OperationalError

from run_proof_pipeline.errors import ExitCode, RunProofError
from run_proof_pipeline.settings import redact

__all__ = ["CommandError", "fail", "handled", "output_lost", "record_outcome", "say"]

P = ParamSpec("P")
R = TypeVar("R")


class CommandError(RunProofError):
    """A command's own refusal: the message is the whole line, the exit code is the
    instance's (a usage error, no such run, ...)."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self._code = code

    def code(self) -> ExitCode:
        return self._code


# --- the standard streams, guarded for the duration of a command -------------------------


class _GuardedStream:
    """Stands in for sys.stdout / sys.stderr while a command runs. The first write or flush
    that fails (EPIPE, ENOSPC, EBADF, a closed file) marks the stream lost and points its
    file descriptor at /dev/null, so that nothing later (Python's flush at exit included)
    fails on it; later writes are discarded. Everything else is the wrapped stream's."""

    def __init__(self, stream: TextIO | None, fd: int, name: str) -> None:
        self._name = name
        self.lost: str | None = None
        if stream is None:
            # Python sets sys.stdout to None when fd 1 was closed at start (`>&-`).
            self.lost = f"{name} is closed"
            _occupy_closed_fd(fd)
            stream = open(os.devnull, "w", encoding="utf-8")  # kept open: it is our stdout now
        self.wrapped: TextIO = stream

    def write(self, text: str) -> int:
        if self.lost is None:
            try:
                return self.wrapped.write(text)
            except (OSError, ValueError) as exc:
                self._lose(exc)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self.lost is None:
            try:
                self.wrapped.flush()
            except (OSError, ValueError) as exc:
                self._lose(exc)

    def isatty(self) -> bool:
        return self.lost is None and self.wrapped.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)

    def _lose(self, exc: BaseException) -> None:
        if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
            self.lost = f"{self._name} is a broken pipe (its reader exited)"
        elif isinstance(exc, OSError) and exc.errno == errno.EBADF:
            self.lost = f"{self._name} is closed"
        elif isinstance(exc, OSError):
            self.lost = f"{self._name}: {exc.strerror or exc}"
        else:
            self.lost = f"{self._name} is closed"
        _silence(self.wrapped)


def _occupy_closed_fd(fd: int) -> None:
    """A closed fd 1 or 2 would be reused by the next file or socket we open, and anything
    (a child process, a C library) writing "stdout" would write into it: hold it on
    /dev/null instead."""
    try:
        os.fstat(fd)
    except OSError:
        null = os.open(os.devnull, os.O_WRONLY)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)


def _silence(stream: TextIO) -> None:
    # Python's `signal` docs, "Note on SIGPIPE": point the descriptor at /dev/null, so the
    # data still buffered is flushed there at exit instead of failing again.
    with contextlib.suppress(OSError, ValueError, AttributeError):
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, stream.fileno())
        finally:
            os.close(null)


@dataclass
class _Invocation:
    stdout: _GuardedStream
    stderr: _GuardedStream
    originals: tuple[Any, Any]
    outcome: str | None = None  # what the command did, said when its output was lost
    failure_said: bool = False  # a failure line is on stderr already: no second line
    loss_said: bool = False  # the lost-output line is said once (handled() may nest)


_current: _Invocation | None = None


@contextlib.contextmanager
def _guarded_streams() -> Iterator[_Invocation]:
    global _current
    if _current is not None:  # a handled command calling another: one guard
        yield _current
        return
    originals = (sys.stdout, sys.stderr)
    invocation = _Invocation(
        stdout=_GuardedStream(sys.stdout, 1, "standard output"),
        stderr=_GuardedStream(sys.stderr, 2, "standard error"),
        originals=originals,
    )
    sys.stdout, sys.stderr = invocation.stdout, invocation.stderr
    _current = invocation
    try:
        yield invocation
    finally:
        invocation.stdout.flush()
        invocation.stderr.flush()
        sys.stdout, sys.stderr = originals
        _current = None


def output_lost() -> str | None:
    """Why the command's standard output was lost (closed, a broken pipe, a full device), or
    None while it is intact. Flushes first, so a lost pipe is noticed now."""
    if _current is None:
        return None
    _current.stdout.flush()
    return _current.stdout.lost


def record_outcome(text: str) -> None:
    """What the command has done (committed), for the one line said if its output is lost:
    e.g. "the tombstone of tenant 't', run 'r' is committed as ledger entry 3"."""
    if _current is not None:
        _current.outcome = text


def say(line: str) -> None:
    """One line on stderr (`run-proof: ...`), never failing: a lost stderr is silent."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        print(f"run-proof: {redact(line)}", file=stream, flush=True)
    except (OSError, ValueError):
        _silence(stream)


def fail(message: str, code: ExitCode) -> typer.Exit:
    if _current is not None:
        _current.failure_said = True
    say(message)
    return typer.Exit(int(code))


def _say_output_lost(invocation: _Invocation, code: int | None) -> None:
    why = invocation.stdout.lost
    if why is None or invocation.failure_said or invocation.loss_said or code is None:
        return
    invocation.loss_said = True
    if invocation.outcome is not None and code == ExitCode.OK:
        say(f"{invocation.outcome}; only the output was lost: {why}")
    else:
        say(f"the command finished with exit code {code}; only its output was lost: {why}")


# --- expected failures -------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass(frozen=True)
class Expected:
    """Exceptions of `types` are expected: `say(exc)` gives the line and the exit code."""

    types: tuple[type[BaseException], ...]
    say: Callable[[Any], tuple[str, ExitCode]]


def _expected() -> tuple[Expected, ...]:
    # The root once: each expected failure carries its line and its exit code
    # (run_proof_pipeline/errors.py). Then the drivers' errors, which are not ours to root:
    # a connection that failed or went away is exit 5, any other database error exit 1.
    return (
        Expected((RunProofError,), lambda e: (e.line(), e.code())),
        Expected(
            (OperationalError, psycopg.OperationalError, ConnectionError),
            lambda e: (f"database unreachable: {_first_line(e)}", ExitCode.UNREACHABLE),
        ),
        Expected((DBAPIError,), lambda e: (f"database error: {_first_line(e)}", ExitCode.FAILED)),
    )


def _mapped(exc: Exception) -> tuple[str, ExitCode] | None:
    for expected in _expected():
        if isinstance(exc, expected.types):
            return expected.say(exc)
    return None


def handled(func: Callable[P, R]) -> Callable[P, R]:
    """Map expected failures to exit codes; anything else is a bug and keeps its traceback.
    Standard output and error are guarded for the command's duration (module docstring)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with _guarded_streams() as invocation:
            code: int | None = None  # stays None for a bug or an interrupt: no extra line
            try:
                result = func(*args, **kwargs)
                code = int(ExitCode.OK)
                return result
            except typer.Exit as exc:
                code = exc.exit_code
                raise
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
                raise
            except Exception as exc:
                mapped = _mapped(exc)
                if mapped is None:
                    raise
                message, exit_code = mapped
                code = int(exit_code)
                raise fail(message, exit_code) from None
            finally:
                invocation.stdout.flush()
                _say_output_lost(invocation, code)

    return wrapper
