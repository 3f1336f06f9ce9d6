"""One clear line on stderr and a documented exit code for every expected failure."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import psycopg
import typer
from sqlalchemy.exc import DBAPIError, OperationalError

from run_proof_pipeline.cli.exit_codes import ExitCode
from run_proof_pipeline.settings import ConfigError, redact

P = ParamSpec("P")
R = TypeVar("R")


class CommandError(Exception):
    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: ExitCode) -> typer.Exit:
    print(f"run-proof: {redact(message)}", file=sys.stderr)
    return typer.Exit(int(code))


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def handled(func: Callable[P, R]) -> Callable[P, R]:
    """Map expected failures to exit codes; anything else is a bug and keeps its traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from run_proof_pipeline.local_postgres import LocalPostgresError
        from run_proof_pipeline.proof.segments import SegmentWorkerError
        from run_proof_pipeline.store.relations import UntrustedStore

        try:
            return func(*args, **kwargs)
        except CommandError as exc:
            raise fail(str(exc), exc.code) from None
        except UntrustedStore as exc:
            # Fail closed: the store's relations are not what a proof may read (exit 1).
            raise fail(f"refusing to prove: {exc}", ExitCode.FAILED) from None
        except SegmentWorkerError as exc:
            code = ExitCode.UNREACHABLE if exc.unreachable else ExitCode.FAILED
            raise fail(str(exc), code) from None
        except ConfigError as exc:
            raise fail(f"configuration error: {exc}", ExitCode.USAGE) from None
        except (OperationalError, psycopg.OperationalError, ConnectionError) as exc:
            raise fail(f"database unreachable: {_first_line(exc)}", ExitCode.UNREACHABLE) from None
        except LocalPostgresError as exc:
            raise fail(f"embedded PostgreSQL: {_first_line(exc)}", ExitCode.UNREACHABLE) from None
        except DBAPIError as exc:
            raise fail(f"database error: {_first_line(exc)}", ExitCode.FAILED) from None

    return wrapper
