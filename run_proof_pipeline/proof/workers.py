"""The one worker layer: every proof that runs in other processes runs here.

    python -m run_proof_pipeline.proof.workers MODULE:FUNCTION   (started by run_worker)

A worker is a fresh Python interpreter (an exec'd `sys.executable`, never a fork: the parent
may be a threaded Dagster process or hold an event loop and connections, none of which a
forked child may touch). It runs one job, `FUNCTION(task, emit)` of a module of this package
named on its command line, so that `ps` shows what each worker does; the task (which may hold
a connection string with its password) travels as one JSON line on stdin, never in argv.
The worker writes JSON lines on stdout: `{"progress": ...}` for each `emit(...)`, and last
`{"result": ...}` (the job's return value) or `{"error": ..., "kind": ...}`.

Both parallel proofs use it: a long run's segments (proof/segments.py) and a sweep's shards
(sweep/runner.py). What a worker's failure was is decided here, once, in the worker
(`classify`): the database unreachable, the store untrusted or not migrated, a configuration
error, another database error, or a bug; and its text is redacted here, once, in the parent
(`redacted`). The parent raises the same error the failure would have raised in process, or
`WorkerError` (exit code 5 when unreachable, else 1); a bug is `WorkerBug` with the worker's
traceback, which is not an expected failure.

Imports stay light (the standard library and errors.py): a segment worker's start-up is part
of the proof's time. What the parent side and the classification need is imported when used.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import site
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from run_proof_pipeline.errors import ExitCode, RunProofError
from run_proof_pipeline.store.bridge import run_sync

__all__ = [
    "BUG",
    "CONFIG",
    "DATABASE",
    "NOT_MIGRATED",
    "UNREACHABLE",
    "UNTRUSTED",
    "WorkerBug",
    "WorkerError",
    "WorkerJob",
    "classify",
    "redacted",
    "run_worker",
    "run_workers",
    "worker_pythonpath",
]

_PACKAGE = "run_proof_pipeline."
_MODULE = "run_proof_pipeline.proof.workers"
# A worker that died without reporting (killed, out of memory): an error, not a bug of ours.
EXITED = "exited"
# A result line may be large (a segment's first row's C(step) and its step summaries).
_LINE_LIMIT = 256 * 1024 * 1024

# What a worker's failure was: the kinds the CLI tells apart (cli/errors.py), by type.
UNREACHABLE, UNTRUSTED, NOT_MIGRATED, CONFIG, DATABASE, BUG = (
    "unreachable",
    "untrusted",
    "not migrated",
    "config",
    "database",
    "bug",
)

Emit = Callable[[Any], None]


class WorkerError(RunProofError):
    """A worker could not finish: its message is one line as the same failure would say it
    in process (passwords redacted). `unreachable` when the database could not be reached or
    went away (exit code 5), else exit code 1."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable

    def code(self) -> ExitCode:
        return ExitCode.UNREACHABLE if self.unreachable else ExitCode.FAILED


class WorkerBug(RuntimeError):
    """A worker raised what no expected failure is: a bug. The message holds the worker's
    traceback (redacted); deliberately not a RunProofError, so it is shown as a bug."""


@dataclass(frozen=True)
class WorkerJob:
    """One worker's work: `function` ("run_proof_pipeline.module:function") called in the
    worker as `function(task, emit)`; `task` and the result are JSON values."""

    function: str
    task: dict[str, Any]


# --- in the worker ------------------------------------------------------------------------


def _loaded(module: str, *names: str) -> tuple[type[BaseException], ...]:
    """The named exception classes of `module` if this process imported it: an exception of a
    class can only exist once its module is loaded, so nothing is imported to classify."""
    loaded = sys.modules.get(module)
    return tuple(getattr(loaded, name) for name in names) if loaded is not None else ()


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def classify(exc: BaseException) -> tuple[str, str]:
    """(kind, message) of a worker's exception, the message as the CLI says the same failure
    in process (cli/errors.py); only a bug keeps its traceback."""
    unreachable: tuple[type[BaseException], ...] = (
        ConnectionError,
        *_loaded("psycopg", "OperationalError"),
        *_loaded("sqlalchemy.exc", "OperationalError"),
    )
    if isinstance(exc, unreachable):
        return UNREACHABLE, f"database unreachable: {_first_line(exc)}"
    relations = "run_proof_pipeline.store.relations"
    if isinstance(exc, _loaded(relations, "UntrustedStore")):
        return UNTRUSTED, str(exc)
    if isinstance(exc, _loaded(relations, "StoreNotMigrated")):  # before ConfigError: it is one
        return NOT_MIGRATED, str(exc)
    if isinstance(exc, _loaded("run_proof_pipeline.settings", "ConfigError")):
        return CONFIG, str(exc)
    if isinstance(exc, (*_loaded("psycopg", "Error"), *_loaded("sqlalchemy.exc", "DBAPIError"))):
        return DATABASE, f"database error: {_first_line(exc)}"
    return BUG, "".join(traceback.format_exception(exc)).rstrip()


def _job(function: str) -> Callable[[dict[str, Any], Emit], Any]:
    module, _, name = function.partition(":")
    if not module.startswith(_PACKAGE) or not name:
        raise ValueError(f"not a job of this package: {function!r}")
    job: Callable[[dict[str, Any], Emit], Any] = getattr(importlib.import_module(module), name)
    return job


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        job = _job(argv[0])
        result = job(json.loads(sys.stdin.readline()), lambda payload: _emit({"progress": payload}))
    except Exception as exc:  # reported to the parent, which raises it there
        kind, message = classify(exc)
        _emit({"error": message, "kind": kind})
        return 2
    _emit({"result": result})
    return 0


# --- in the parent ------------------------------------------------------------------------


def redacted(message: str, secret: str | None) -> str:
    """`message` with every secret settings.redact knows masked, and `secret` (the password
    the worker was given) wherever it appears."""
    from run_proof_pipeline.settings import redact

    text = message.replace(secret, "***") if secret else message
    return redact(text)


def _raise(kind: str, message: str) -> None:
    """Raise in the parent what the worker raised, as far as the CLI tells them apart."""
    from run_proof_pipeline.settings import ConfigError
    from run_proof_pipeline.store.relations import StoreNotMigrated, UntrustedStore

    if kind == UNTRUSTED:
        raise UntrustedStore(message)
    if kind == NOT_MIGRATED:
        raise StoreNotMigrated(message)
    if kind == CONFIG:
        raise ConfigError(message)
    if kind == BUG:
        raise WorkerBug(message)
    raise WorkerError(message, unreachable=kind == UNREACHABLE)


def _failure(
    outcome: dict[str, Any] | None, returncode: int | None, stderr: bytes, label: str | None
) -> tuple[str, str]:
    """(kind, message) of a worker that gave no result, `label` and its exit status first."""
    if outcome is None:  # it died without a word: what it wrote on stderr says why
        why = stderr.decode(errors="replace").strip()[-2000:] or "exited without a result"
        kind, message = EXITED, why
    else:
        kind, message = str(outcome.get("kind", BUG)), str(outcome["error"])
    if label is not None:
        message = f"{label} (exit {returncode}): {message}"
    elif kind == EXITED:
        message = f"a worker exited (status {returncode}) without a result: {message}"
    return kind, message


async def run_worker(
    job: WorkerJob,
    on_progress: Emit | None = None,
    *,
    secret: str | None = None,
    label: str | None = None,
    error: type[WorkerError] = WorkerError,
) -> Any:
    """One worker process for one job: its result, or the failure raised as `_raise` says
    (a WorkerError as `error`), its text redacted. `label` ("segment worker") starts the
    message with the worker and its exit status. Cancelled, the worker is killed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        _MODULE,
        job.function,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=_LINE_LIMIT,
        env=_worker_env(),
    )
    assert process.stdin is not None and process.stdout is not None
    assert process.stderr is not None
    # Read stderr all along: a worker that writes much there must not block on a full pipe.
    stderr = asyncio.ensure_future(process.stderr.read())
    try:
        process.stdin.write(json.dumps(job.task).encode() + b"\n")
        await process.stdin.drain()
        process.stdin.close()
        outcome: dict[str, Any] | None = None
        while line := await process.stdout.readline():
            try:
                message = json.loads(line)
            except ValueError:
                raise WorkerBug(f"{label or 'worker'} wrote a line that is not JSON") from None
            if "progress" in message:
                if on_progress is not None:
                    on_progress(message["progress"])
            else:
                outcome = message
        await process.wait()
        if outcome is not None and "result" in outcome:
            return outcome["result"]
        kind, message = _failure(outcome, process.returncode, await stderr, label)
        text = redacted(message, secret)
        if kind in (UNREACHABLE, DATABASE, EXITED):
            raise error(text, unreachable=kind == UNREACHABLE)
        _raise(kind, text)
    finally:
        if process.returncode is None:
            process.kill()  # our own child, by its handle
            await process.wait()
        stderr.cancel()


async def _all(runs: Iterable[Awaitable[Any]], on_result: Callable[[Any], None]) -> None:
    tasks = [asyncio.ensure_future(run) for run in runs]
    try:
        for done in asyncio.as_completed(tasks):
            on_result(await done)  # the first failure is raised here
    finally:
        for task in tasks:
            task.cancel()  # the others stop: their workers are killed
        await asyncio.gather(*tasks, return_exceptions=True)


def run_workers(
    jobs: list[WorkerJob],
    on_result: Callable[[Any], None],
    on_progress: Emit | None = None,
    *,
    secret: str | None = None,
    label: str | None = None,
    error: type[WorkerError] = WorkerError,
) -> None:
    """From synchronous code: one worker per job, all at once; `on_result` gets each result
    as its worker finishes. The first failure is raised (as run_worker raises it) once the
    other workers are stopped."""
    run_sync(
        lambda: _all(
            (run_worker(job, on_progress, secret=secret, label=label, error=error) for job in jobs),
            on_result,
        )
    )


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    path = worker_pythonpath()
    if path is None:
        env.pop("PYTHONPATH", None)
    else:
        env["PYTHONPATH"] = path
    return env


def worker_pythonpath(
    package_parent: str | None = None,
    current: str | None = None,
    site_dirs: list[str] | None = None,
) -> str | None:
    """PYTHONPATH for the workers, so that they import this package from where this process
    did: a checkout goes first on the path; an installed copy (in site-packages) needs
    nothing, and putting site-packages ahead of the standard library could shadow it."""
    parent = package_parent or os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    )
    current = os.environ.get("PYTHONPATH") if current is None else current
    sites = site_dirs
    if sites is None:
        sites = [*site.getsitepackages(), site.getusersitepackages()]
    if os.path.realpath(parent) in {os.path.realpath(d) for d in sites}:
        return current or None
    return parent if not current else f"{parent}{os.pathsep}{current}"


if __name__ == "__main__":
    sys.exit(main())
