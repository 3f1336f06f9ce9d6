"""The package as a code location is deployed: the wheel, installed in a fresh virtualenv,
run from a directory outside any checkout. `run-proof db upgrade`, `demo` and `plan` pass
Steps 1-5 (Step 5 runs the coordinator tests the wheel ships, with the pytest it depends on)
and the report lands in the working directory's reports/: never in site-packages, never in
the checkout (whose `git status` is unchanged).

The wheel is built and installed once for the module, by README.md's "## Installed as a
package" block itself (issue #14, item 4): extracted from README.md and run with bash from the
checkout, placeholders filled only (the venv, the working directory, the URLs of a throwaway
server's databases; `uv` on PATH is the bootstrap's pinned one in .run-proof/tools, else uv on
PATH); it installs the dependencies from the package registry or uv's cache. The same venv then
runs `demo` and `plan` on a fresh store, and `run-proof ui` outside any checkout (issue item 3),
stopped by SIGTERM with its whole process tree (item 6)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from run_proof_pipeline.cli.dagster_env import LOCATION_VARIABLES
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.plan.coordinator_tests import project_root
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.dagster_ui import free_port
from run_proof_pipeline_tests.support.stores import recorded_store
from run_proof_pipeline_tests.test_ui_signals import (
    STOP_LIMIT_SECONDS,
    _descendants,
    _port_open,
    _roles,
    _running,
)

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
    # Python's bytecode caches are left out too: any import from the checkout (a command
    # run there, another test) writes them, and git ignores them.
    return {
        line
        for line in lines
        if not line.endswith("__pycache__/")
        and (
            line.startswith("!!")
            or line[3:].startswith(_RUN_OUTPUTS)
            or line.endswith((".whl", ".egg-info/", ".tar.gz"))
        )
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


# The block's placeholders, exactly as README.md writes them.
SECTION = "\n## Installed as a package (a code location)\n"
VENV_PLACEHOLDER = "/opt/run-proof"
WORK_PLACEHOLDER = "/srv/run-proof"
DIST_PLACEHOLDER = "/tmp/run-proof-dist"
STORE_PLACEHOLDER = "postgresql://user:password@host:5432/dbname"
DAGSTER_PLACEHOLDER = "postgresql://user:password@host:5432/dagster"


def install_block() -> str:
    """The first ```bash block of README.md's "## Installed as a package" section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert SECTION in readme, "README.md lost its '## Installed as a package' section"
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    found = re.search(r"^```bash\n(.*?)^```", section, re.DOTALL | re.MULTILINE)
    assert found, "'## Installed as a package' has no ```bash block"
    return found.group(1)


def filled(block: str, values: dict[str, str]) -> str:
    for placeholder, value in values.items():
        assert placeholder in block, f"the install block lost its placeholder {placeholder}"
        block = block.replace(placeholder, shlex.quote(value))
    return block


@dataclass(frozen=True)
class Installed:
    """What the README's block left: the venv, its working directory, its run's output."""

    venv: Path
    work: Path
    dist: Path
    store: DatabaseUrl
    storage: DatabaseUrl
    completed: subprocess.CompletedProcess[str]
    seconds: float
    checkout_before: set[str]
    checkout_after: set[str]


@pytest.fixture(scope="module")
def installed(
    pg_server: LocalPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installed]:
    """README.md's install block, run once for the module with bash from the checkout (its
    `uv build` runs there, as the block says), on a store holding one recorded run (a trace
    store in use: the plan proves its latest trace) and a Dagster storage of its own."""
    uv = _uv()
    tmp = tmp_path_factory.mktemp("readme_wheel")
    venv, work, dist, bin_dir = tmp / "venv", tmp / "work", tmp / "dist", tmp / "bin"
    work.mkdir()
    bin_dir.mkdir()
    (bin_dir / "uv").symlink_to(uv)  # `uv` on PATH is the pinned one, and nothing else
    with recorded_store(pg_server, "wheel_readme", "tenant-w", "run-w", steps=5) as recorded:
        storage = DatabaseUrl.parse(pg_server.create_database("wheel_readme_dagster"))
        script = tmp / "install.sh"
        script.write_text(
            filled(
                install_block(),
                {
                    DIST_PLACEHOLDER: str(dist),
                    VENV_PLACEHOLDER: str(venv),
                    WORK_PLACEHOLDER: str(work),
                    STORE_PLACEHOLDER: recorded.url.libpq(),
                    DAGSTER_PLACEHOLDER: storage.libpq(),  # plain postgresql://
                },
            ),
            encoding="utf-8",
        )
        dropped = {*LOCATION_VARIABLES, "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "UV_PROJECT"}
        env = {k: v for k, v in os.environ.items() if k not in dropped}
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
        before = _git_status()
        started = time.monotonic()
        completed = subprocess.run(
            ["bash", "-euo", "pipefail", str(script)],
            cwd=ROOT,  # `uv build` in the checkout, as the block says
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        yield Installed(
            venv=venv,
            work=work,
            dist=dist,
            store=recorded.url,
            storage=storage,
            completed=completed,
            seconds=time.monotonic() - started,
            checkout_before=before,
            checkout_after=_git_status(),
        )


def _installed_ok(installed: Installed) -> Installed:
    completed = installed.completed
    assert completed.returncode == 0, (
        f"README's install block exited {completed.returncode}\n"
        f"--- stdout\n{completed.stdout[-4000:]}\n--- stderr\n{completed.stderr[-4000:]}"
    )
    return installed


def test_the_readme_install_block_runs_as_pasted_and_passes_the_five_steps(
    installed: Installed,
) -> None:
    completed = _installed_ok(installed).completed
    output = completed.stdout
    for step in range(1, 6):
        [line] = [line for line in output.splitlines() if line.startswith(f"Step {step} (")]
        assert line.split(": ", 1)[1].startswith("passed"), line
    [wheel] = installed.dist.glob("run_proof_pipeline-*.whl")
    assert (installed.venv / "bin" / "run-proof").is_file()
    reports = sorted((installed.work / "reports").glob("run-proof-report-*.json"))
    assert len(reports) == 1, output[-3000:]
    report = json.loads(reports[0].read_text(encoding="utf-8"))
    assert report["verification_status"] == "VERIFIED", report
    assert (report["tenant_id"], report["run_id"]) == ("tenant-w", "run-w"), report
    assert installed.checkout_after == installed.checkout_before
    print(f"\nREADME install block ({wheel.name}): exit 0 in {installed.seconds:.1f}s")


def test_the_installed_wheel_runs_the_whole_plan_outside_the_checkout(
    pg_server: LocalPostgres, installed: Installed, tmp_path: Path
) -> None:
    """The README block's venv (its wheel built once for the module), on a fresh store:
    `db upgrade`, `demo` and `plan` from another directory outside the checkout."""
    venv = _installed_ok(installed).venv
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

    work = tmp_path / "work"
    work.mkdir()
    python = venv / "bin" / "python"

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


REPOSITORIES_QUERY = (
    "{ repositoriesOrError { __typename ... on RepositoryConnection"
    " { nodes { name jobs { name } } } } }"
)


def _repositories(port: int) -> dict[str, Any] | None:
    """The webserver's answer to the repositories query, None while it does not answer."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": REPOSITORIES_QUERY}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return None


def _jobs(body: dict[str, Any] | None) -> set[str]:
    if not body:
        return set()
    found = (body.get("data") or {}).get("repositoriesOrError") or {}
    return {job["name"] for node in found.get("nodes") or [] for job in node.get("jobs") or []}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_run_proof_ui_from_the_wheel_serves_the_plan_outside_any_checkout_and_stops_on_sigterm(
    installed: Installed, tmp_path: Path
) -> None:
    venv = _installed_ok(installed).venv
    work = tmp_path / "ui_work"  # not a checkout: no pyproject, no workspace.yaml
    work.mkdir()
    before = _git_status()
    env = _clean_env(venv)
    env["DATABASE_URL"] = installed.store.libpq()
    env["DAGSTER_PG_URL"] = installed.storage.libpq()
    port = free_port()
    log = tmp_path / "ui.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(venv / "bin" / "run-proof"), "ui", "--port", str(port)],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    tree: list[Any] = []
    try:
        deadline = time.monotonic() + 240
        body = _repositories(port)
        while "run_proof_plan" not in _jobs(body):
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"no run_proof_plan in time: {body}"
            time.sleep(1)
            body = _repositories(port)
        assert body is not None
        assert body["data"]["repositoriesOrError"]["__typename"] == "RepositoryConnection"
        # The code location is the installed package, loaded from outside any checkout.
        tree = _descendants(process.pid)
        roles = _roles(tree)
        assert roles["webserver"] and roles["daemon"], tree
        assert all(str(ROOT) not in p.cmdline for p in tree), tree

        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        while time.monotonic() - sent < STOP_LIMIT_SECONDS + 5:
            if process.poll() is not None and not [p for p in tree if _running(p)]:
                break
            time.sleep(0.05)
        elapsed = time.monotonic() - sent
        left = [p for p in tree if _running(p)]
        assert not left, f"still running {elapsed:.1f} s after SIGTERM: {left}"
        assert elapsed <= STOP_LIMIT_SECONDS, f"stopped in {elapsed:.1f} s"
        assert process.returncode == -signal.SIGTERM
        assert not _port_open(port)
    finally:
        for proc in [*tree, *_descendants(process.pid)]:
            if _running(proc):
                os.kill(proc.pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
    assert (work / ".run-proof" / "dagster_home" / "dagster.yaml").exists()
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    assert _git_status() == before
    print(
        f"\nrun-proof ui from the wheel: {len(tree)} processes, gone {elapsed:.2f} s after SIGTERM"
    )
