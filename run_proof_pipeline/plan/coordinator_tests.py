"""The seed's Step 5: run the coordinator's own test file in a subprocess and read its result.

The file ships in the package (run_proof_pipeline/plan/coordinator_checks/), and pytest is a
runtime dependency: an installed code location runs Step 5 as a checkout does, in a temporary
working directory.

Only the project's own file runs (`own_tests_path`): no run config names another, since any
`.py` file run under pytest is code run with the job's rights. The test file starts its own
throwaway PostgreSQL, so its environment is an allowlist (`step_5_environment`): what Python,
pytest and a local PostgreSQL need, never the target's DATABASE_URL, a key, a password or
Dagster's storage URL (docs/bad-input.md).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Inside the package (so a wheel ships it), relative to the directory that holds the package:
# site-packages when installed, the checkout in development.
COORDINATOR_TESTS = "run_proof_pipeline/plan/coordinator_checks/test_coordinators.py"
_PACKAGE_PARENT = Path(__file__).resolve().parents[2]
_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|deselected|xfailed|xpassed)")


@dataclass(frozen=True)
class PytestOutcome:
    passed: bool
    exit_code: int
    counts: dict[str, int]
    summary: str
    errors: list[str] = field(default_factory=list)
    command: str = ""

    def describe(self) -> str:
        verdict = "pass" if self.passed else "fail"
        errors = f" — {'; '.join(self.errors)}" if self.errors else ""
        return f"{verdict} ({self.summary}){errors}"


def project_root() -> Path:
    """The directory that holds the package: the checkout in development (the test suite
    uses it so), site-packages when installed. Nothing the plan writes or reads at run time
    is located by it."""
    return _PACKAGE_PARENT


def own_tests_path() -> Path:
    """The project's coordinator tests, the one file Step 5 runs (shipped in the package)."""
    return _PACKAGE_PARENT / COORDINATOR_TESTS


# Exactly these names pass to the tests' process, with the LC_* locale settings: the
# interpreter and its virtualenv, the locale, temporary files, and where PostgreSQL's
# binaries are (the fixtures start their own server).
_PASSED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TMP",
        "TEMP",
        "VIRTUAL_ENV",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONNOUSERSITE",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONHASHSEED",
        "PYTHONIOENCODING",
        "PYTHONUTF8",
        "LD_LIBRARY_PATH",
        "RUN_PROOF_PG_BINDIR",
        # Which server binaries the tests' throwaway server uses (docs/embedded-server.md).
        "RUN_PROOF_PG_SERVER",
    }
)


def step_5_environment(parent: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of the tests' process: the allowlisted names of `parent` (default: this
    process's environment), nothing else."""
    source = os.environ if parent is None else parent
    return {
        name: value
        for name, value in source.items()
        if name in _PASSED_NAMES or name.startswith("LC_")
    }


def run_coordinator_tests(path: Path, *, timeout: float = 600) -> PytestOutcome:
    if not path.is_file():
        raise FileNotFoundError(f"coordinator tests not found at {path}")
    env = step_5_environment()
    command = [sys.executable, "-m", "pytest", str(path), "-q", "-p", "no:cacheprovider"]
    # A working directory of its own, removed afterwards: never the checkout nor
    # site-packages, so that nothing the tests' process writes lands in either.
    with tempfile.TemporaryDirectory(prefix="run-proof-step5-") as workdir:
        completed = subprocess.run(
            command,
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    output = completed.stdout + completed.stderr
    lines = [line for line in output.splitlines() if line.strip()]
    summary = next(
        (line.strip("= ") for line in reversed(lines) if _COUNT.search(line)),
        lines[-1] if lines else "no output",
    )
    counts: dict[str, int] = {}
    for number, kind in _COUNT.findall(summary):
        counts[kind.rstrip("s") if kind.startswith("error") else kind] = int(number)
    errors = [
        line.strip()
        for line in lines
        if line.startswith(("FAILED ", "ERROR ")) or line.startswith("E ")
    ][:20]
    return PytestOutcome(
        passed=completed.returncode == 0 and counts.get("passed", 0) > 0,
        exit_code=completed.returncode,
        counts=counts,
        summary=summary,
        errors=errors,
        command=" ".join(command[1:]),
    )
