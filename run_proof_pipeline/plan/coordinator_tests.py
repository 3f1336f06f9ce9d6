"""The seed's Step 5: run the coordinator's own test file in a subprocess and read its result.

The test file starts its own throwaway PostgreSQL; DATABASE_URL is removed from its
environment so it can never touch the target database.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

COORDINATOR_TESTS = "run_proof_pipeline_tests/test_run_introspection_coordinators.py"
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
    return Path(__file__).resolve().parents[2]


def resolve_tests_path(configured: str | None) -> Path:
    path = Path(configured) if configured else project_root() / COORDINATOR_TESTS
    if not path.is_absolute():
        path = project_root() / path
    return path


def run_coordinator_tests(path: Path, *, timeout: float = 600) -> PytestOutcome:
    if not path.is_file():
        raise FileNotFoundError(f"coordinator tests not found at {path}")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    command = [sys.executable, "-m", "pytest", str(path), "-q", "-p", "no:cacheprovider"]
    completed = subprocess.run(
        command,
        cwd=project_root(),
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
