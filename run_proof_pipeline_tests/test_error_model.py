"""One error model (docs/architecture.md, "Errors"): every expected failure is a
`RunProofError` carrying its exit code and its one line, and the CLI maps that root once.
Also: the status and failure-location vocabularies are defined once, in the integrity core,
and every Literal naming them elsewhere is checked against that source here.

No database: the classes are found by importing every module of the package and walking the
root's subclasses, so a new error class is checked the day it is written."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import psycopg
import pytest
import typer
from sqlalchemy.exc import DBAPIError, OperationalError

import run_proof_pipeline
from run_proof_pipeline.cli.errors import CommandError, _mapped, handled
from run_proof_pipeline.cli.exit_codes import STATUS_EXIT
from run_proof_pipeline.coordinator.models import (
    FailureDetail,
    FailureLocationName,
    IntegrityModelName,
    VerificationStatusName,
)
from run_proof_pipeline.errors import ExitCode, RunProofError
from run_proof_pipeline.integrity import IntegrityModel, VerificationStatus

PACKAGE = Path(run_proof_pipeline.__file__).resolve().parent
MESSAGE = "what failed, said once"


def _every_module() -> list[str]:
    names = [
        info.name
        for info in pkgutil.walk_packages(run_proof_pipeline.__path__, "run_proof_pipeline.")
    ]
    for name in names:
        importlib.import_module(name)
    return names


def _subclasses(cls: type[RunProofError]) -> Iterator[type[RunProofError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _package_errors() -> list[type[RunProofError]]:
    _every_module()
    ours = "run_proof_pipeline."
    found = {c for c in _subclasses(RunProofError) if c.__module__.startswith(ours)}
    return sorted(found, key=lambda c: (c.__module__, c.__qualname__))


ERRORS = _package_errors()

# A value for each required constructor argument, by its annotation (merkle's errors take
# sizes and hashes, CommandError its exit code).
_ARGUMENTS: dict[str, Any] = {
    "str": MESSAGE,
    "int": 7,
    "bytes": bytes(range(32)),
    "ExitCode": ExitCode.NOT_FOUND,
}


def _instances(cls: type[RunProofError]) -> list[RunProofError]:
    """Instances of `cls` as its constructor takes them; two when an instance chooses its
    exit code (`unreachable`), one per outcome."""
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    args = []
    for parameter in parameters:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.default is not parameter.empty:
            continue
        annotation = str(parameter.annotation)
        if annotation not in _ARGUMENTS:
            pytest.fail(f"{cls.__qualname__}({parameter.name}: {annotation}): add a value above")
        args.append(_ARGUMENTS[annotation])
    if not args:  # Exception's own constructor: one message
        args = [MESSAGE]
    if any(p.name == "unreachable" for p in parameters):
        return [cls(*args, unreachable=False), cls(*args, unreachable=True)]  # type: ignore[call-arg]
    return [cls(*args)]


def _expected_code(error: RunProofError) -> ExitCode:
    if isinstance(error, CommandError):
        return _ARGUMENTS["ExitCode"]
    if hasattr(error, "unreachable"):
        return ExitCode.UNREACHABLE if error.unreachable else ExitCode.FAILED
    return type(error).exit_code


def test_the_walk_finds_the_expected_failures_of_every_layer() -> None:
    names = {c.__qualname__ for c in ERRORS}
    # One of each layer, and the two worker errors the CLI's old list missed (issue 15).
    assert {
        "ConfigError",
        "CanonicalizationError",
        "ProofError",
        "UntrustedStore",
        "RecorderError",
        "LocalPostgresError",
        "CheckpointProblem",
        "OutputError",
        "RunNotFound",
        "CommandError",
        "SegmentWorkerError",
        "SweepWorkerError",
    } <= names
    # Private control flow is not a failure.
    assert not names & {"_Skip", "_NotFast", "FastPathRefused", "_Unreadable"}


@pytest.mark.parametrize("cls", ERRORS, ids=[c.__qualname__ for c in ERRORS])
def test_every_expected_failure_has_an_exit_code_and_the_cli_maps_it_to_its_line(
    cls: type[RunProofError],
) -> None:
    assert isinstance(cls.exit_code, ExitCode)
    assert isinstance(cls.prefix, str)
    for error in _instances(cls):
        line, code = error.line(), error.code()
        assert code is _expected_code(error)
        assert str(error) and line == f"{cls.prefix}{error}"  # merkle words its own message
        assert "\n" not in line
        assert _mapped(error) == (line, code)


# What the CLI printed for these before the root existed (docs/bad-input.md quotes them): the
# same line and exit code, now carried by the class.
@pytest.mark.parametrize(
    ("module", "name", "line", "code"),
    [
        ("settings", "ConfigError", f"configuration error: {MESSAGE}", ExitCode.USAGE),
        ("store.relations", "StoreNotMigrated", f"configuration error: {MESSAGE}", 2),
        ("store.harden", "HardenRefused", f"configuration error: {MESSAGE}", 2),
        ("store.relations", "UntrustedStore", f"refusing to prove: {MESSAGE}", ExitCode.FAILED),
        ("ledger.checkpoint_files", "OutputError", MESSAGE, ExitCode.USAGE),
        ("ledger.checkpoint_files", "OutputExists", MESSAGE, ExitCode.USAGE),
        ("ledger.create", "CheckpointRefused", f"checkpoint refused: {MESSAGE}", 1),
        ("ledger.keys", "KeyProblem", MESSAGE, ExitCode.USAGE),
        ("bundle.export", "RunNotFound", MESSAGE, ExitCode.NOT_FOUND),
        ("bundle.export", "Unexportable", MESSAGE, ExitCode.FAILED),
        ("embedded.server", "LocalPostgresError", f"embedded PostgreSQL: {MESSAGE}", 5),
    ],
)
def test_the_lines_and_codes_the_cli_printed_before_are_kept(
    module: str, name: str, line: str, code: int
) -> None:
    cls = getattr(importlib.import_module(f"run_proof_pipeline.{module}"), name)
    assert _mapped(cls(MESSAGE)) == (line, code)


def test_a_command_error_keeps_its_own_code_and_its_message_is_the_whole_line() -> None:
    assert _mapped(CommandError("no such run", ExitCode.NOT_FOUND)) == (
        "no such run",
        ExitCode.NOT_FOUND,
    )
    assert _mapped(CommandError("--workers must be ...", ExitCode.USAGE)) == (
        "--workers must be ...",
        ExitCode.USAGE,
    )


def test_the_embedded_server_says_the_first_line_of_its_message_only() -> None:
    from run_proof_pipeline.embedded.server import LocalPostgresError

    error = LocalPostgresError("  initdb failed (exit 1)\nlog tail line 1\nlog tail line 2")
    assert _mapped(error) == ("embedded PostgreSQL: initdb failed (exit 1)", 5)


def test_the_database_drivers_errors_are_mapped_after_the_root() -> None:
    gone = psycopg.OperationalError("connection refused\n\tIs the server running?")
    assert _mapped(gone) == ("database unreachable: connection refused", ExitCode.UNREACHABLE)
    assert _mapped(ConnectionResetError("reset by peer")) == (
        "database unreachable: reset by peer",
        ExitCode.UNREACHABLE,
    )
    wrapped = OperationalError("SELECT 1", {}, psycopg.OperationalError("server closed"))
    assert _mapped(wrapped) == ("database unreachable: server closed", ExitCode.UNREACHABLE)
    failed = DBAPIError("SELECT 1", {}, psycopg.errors.DivisionByZero("division by zero"))
    assert _mapped(failed) == ("database error: division by zero", ExitCode.FAILED)


@pytest.mark.parametrize(
    "bug", [ValueError("x"), RuntimeError("x"), KeyError("x"), TypeError("x"), OSError("x")]
)
def test_anything_else_is_a_bug_and_is_not_mapped(bug: Exception) -> None:
    assert _mapped(bug) is None


def test_a_handled_command_says_the_one_line_and_exits_with_the_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from run_proof_pipeline.store.relations import StoreNotMigrated

    @handled
    def command() -> None:
        raise StoreNotMigrated("aos_traces is missing: run `run-proof db upgrade`")

    with pytest.raises(typer.Exit) as exited:
        command()
    assert exited.value.exit_code == ExitCode.USAGE
    assert capsys.readouterr().err == (
        "run-proof: configuration error: aos_traces is missing: run `run-proof db upgrade`\n"
    )


def test_a_bug_in_a_handled_command_keeps_its_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    @handled
    def command() -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        command()
    assert capsys.readouterr().err == ""


# --- status and failure-location vocabularies: one source, the integrity core -------------


def test_the_verification_status_literal_is_the_integrity_core_s_enum() -> None:
    assert set(get_args(VerificationStatusName)) == {s.value for s in VerificationStatus}
    assert set(STATUS_EXIT) == {s.value for s in VerificationStatus}


def test_the_integrity_model_literal_is_the_integrity_core_s_enum() -> None:
    assert set(get_args(IntegrityModelName)) == {m.value for m in IntegrityModel}


def _failure_locations() -> dict[str, set[str]]:
    """Every literal failure location the package writes: `location="..."` in a call of
    IntegrityFailure or FailureDetail, and the location (first argument) of its class
    methods (IntegrityFailure.of(), the failure a Mismatch makes, and .unhashable())."""
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            callee = getattr(node.func, "id", getattr(node.func, "attr", None))
            owner = getattr(getattr(node.func, "value", None), "id", None)
            values = [k.value for k in node.keywords if k.arg == "location"]
            if callee in ("IntegrityFailure", "FailureDetail"):
                pass
            elif owner == "IntegrityFailure":  # .of(), .unhashable()
                values += node.args[:1]
            else:
                values = []
            for value in values:
                assert isinstance(value, ast.Constant | ast.Name | ast.Attribute), ast.dump(value)
                if isinstance(value, ast.Constant):
                    where = str(path.relative_to(PACKAGE))
                    found.setdefault(value.value, set()).add(where)
    return found


def test_the_failure_location_literal_is_every_location_the_core_fails_at() -> None:
    written = _failure_locations()
    assert "integrity/verdicts.py" in written["step"]  # the scan sees the core
    assert "integrity/seal_check.py" in written["ledger"]  # and IntegrityFailure.of()
    assert set(written) == set(get_args(FailureLocationName)), written
    assert FailureDetail.model_fields["location"].annotation == FailureLocationName
