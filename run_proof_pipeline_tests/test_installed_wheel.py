"""The package as a code location is deployed: the wheel, installed in a fresh virtualenv,
run from a directory outside any checkout. `run-proof db upgrade`, `demo` and `plan` pass
Steps 1-5 (Step 5 runs the coordinator tests the wheel ships, with the pytest it depends on)
and the report lands in the working directory's reports/: never in site-packages, never in
the checkout (whose `git status` is unchanged).

Builds the wheel with uv (the bootstrap's pinned one in .run-proof/tools, else uv on PATH)
and installs its dependencies from the package registry or uv's cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from run_proof_pipeline.cli.dagster_env import LOCATION_VARIABLES
from run_proof_pipeline.local_postgres import LocalPostgres
from run_proof_pipeline.plan.coordinator_tests import project_root

pytestmark = pytest.mark.slow

ROOT = project_root()


def _uv() -> str:
    pinned = ROOT / ".run-proof" / "tools" / "bin" / "uv"
    found = str(pinned) if pinned.is_file() else shutil.which("uv")
    if found is None:
        pytest.skip("no uv (scripts/bootstrap.sh installs it in .run-proof/tools)")
    return found


# Where a run could write into the checkout: its ignored state directories and build output.
_RUN_OUTPUTS = ("reports/", ".run-proof/", "dagster_home/", "build/", "dist/")


def _git_status() -> set[str]:
    """`git status --porcelain --ignored`: the entries a run from the wheel could add. Edits
    of tracked or new source files are left out (other work may change the checkout while
    this test runs); ignored entries and the state and build directories are kept."""
    lines = subprocess.run(
        ["git", "status", "--porcelain", "--ignored"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return {
        line
        for line in lines
        if line.startswith("!!")
        or line[3:].startswith(_RUN_OUTPUTS)
        or line.endswith((".whl", ".egg-info/", ".tar.gz"))
    }


def _newest_write(*directories: Path) -> float:
    """The latest modification time of anything in `directories` (0: nothing there)."""
    times = [p.lstat().st_mtime for d in directories if d.exists() for p in [d, *d.rglob("*")]]
    return max(times, default=0.0)


def _run(
    command: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert completed.returncode == 0, (
        f"{' '.join(command)} exited {completed.returncode}\n"
        f"--- stdout\n{completed.stdout[-4000:]}\n--- stderr\n{completed.stderr[-4000:]}"
    )
    return completed


def _clean_env(venv: Path) -> dict[str, str]:
    """This process's environment without the plan's settings and without anything that
    would import the checkout (PYTHONPATH, the development virtualenv)."""
    dropped = {*LOCATION_VARIABLES, "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "UV_PROJECT"}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_the_installed_wheel_runs_the_whole_plan_outside_the_checkout(
    pg_server: LocalPostgres, tmp_path: Path
) -> None:
    uv = _uv()
    before = _git_status()
    checkout_state = (ROOT / "reports", ROOT / ".run-proof" / "dagster_home")
    wall_start = time.time()
    timings: dict[str, float] = {}
    started = time.monotonic()

    def timed(name: str, command: list[str], **kwargs: object) -> str:
        mark = time.monotonic()
        completed = _run(command, **kwargs)  # type: ignore[arg-type]
        timings[name] = time.monotonic() - mark
        return completed.stdout

    dist, venv, work = tmp_path / "dist", tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    build_env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    timed(
        "build",
        [uv, "build", "--wheel", "--out-dir", str(dist), str(ROOT)],
        cwd=tmp_path,
        env=build_env,
    )
    [wheel] = dist.glob("run_proof_pipeline-*.whl")
    timed("venv", [uv, "venv", "--python", sys.executable, str(venv)], cwd=tmp_path, env=build_env)
    python = venv / "bin" / "python"
    timed(
        "install",
        [uv, "pip", "install", "--python", str(python), str(wheel)],
        cwd=tmp_path,
        env=build_env,
    )

    env = _clean_env(venv)
    env["DATABASE_URL"] = pg_server.create_database("wheel_store", exist_ok=False)
    env["DAGSTER_PG_URL"] = pg_server.create_database("wheel_dagster", exist_ok=False)
    # The package the plan runs is the installed one, not the checkout.
    where = timed(
        "import",
        [
            str(python),
            "-c",
            "import run_proof_pipeline, pytest; print(run_proof_pipeline.__file__)",
        ],
        cwd=work,
        env=env,
    )
    site_packages = Path(where.strip()).resolve().parent.parent
    assert site_packages.is_relative_to(venv.resolve()), where
    assert (site_packages / "run_proof_pipeline" / "dagster.yaml").is_file()
    shipped = site_packages / "run_proof_pipeline" / "plan" / "coordinator_checks"
    assert (shipped / "test_coordinators.py").is_file() and (shipped / "conftest.py").is_file()

    run_proof = str(venv / "bin" / "run-proof")
    timed("db upgrade", [run_proof, "db", "upgrade"], cwd=work, env=env)
    timed("demo", [run_proof, "demo"], cwd=work, env=env)
    plan = timed("plan", [run_proof, "plan"], cwd=work, env=env)
    total = time.monotonic() - started

    reports = sorted((work / "reports").glob("run-proof-report-*.json"))
    assert len(reports) == 1, (plan, list(work.rglob("*"))[:50])
    report = json.loads(reports[0].read_text(encoding="utf-8"))
    # Written by output_report, which runs only once Steps 1-5 passed.
    assert report["verification_status"] == "VERIFIED", report
    assert report["integrity_model"] == "HASH_CHAIN"
    assert report["chain_length"] == report["step_count"] > 0
    pytest_result = str(report["pytest_result"])
    assert pytest_result.startswith("pass (") and " passed" in pytest_result, pytest_result
    assert "failed" not in pytest_result and "error" not in pytest_result
    assert reports[0].with_suffix(".md").is_file()
    assert f"(report written to {work / 'reports'}" in plan
    # The instance lives in the working directory too; nothing was written into the package.
    assert (work / ".run-proof" / "dagster_home" / "dagster.yaml").exists()
    assert not list(site_packages.rglob("run-proof-report-*"))
    assert not (site_packages / "reports").exists()
    assert not (site_packages / ".run-proof").exists()
    assert _git_status() == before
    assert _newest_write(*checkout_state) < wall_start

    summary = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in timings.items())
    print(f"\ninstalled wheel: {summary}; total {total:.1f}s")
