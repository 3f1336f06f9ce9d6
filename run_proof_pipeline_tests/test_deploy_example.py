"""deploy/ (the production example, Dagster's three long-running services on PostgreSQL
storage): the commands its systemd units name, started as written with the environment its
example file lists, serve the UI with the code location loaded over gRPC and a daemon that
heartbeats; stopped by PID, nothing of them is left."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from run_proof_pipeline.cli.dagster_env import shipped_file
from run_proof_pipeline.plan.coordinator_tests import project_root
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.dagster_ui import free_port

DEPLOY = project_root() / "deploy"
UNITS = ("run-proof-code-location", "run-proof-webserver", "run-proof-daemon")
# The example's install locations (deploy/README.md), replaced by the test's own.
VENV_BIN = "/opt/run-proof/bin"
CONFIG_DIR = "/etc/run-proof"
STATE_DIR = "/var/lib/run-proof"
CODE_PORT = "4000"
WEB_PORT = "3000"

QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message }
      ... on RepositoryLocation { repositories { jobs { name } } } } } } }
  instance { daemonHealth { allDaemonStatuses { daemonType required healthy
    lastHeartbeatTime } } } }
"""


@dataclass
class Unit:
    exec_start: list[str]
    environment: dict[str, str]
    environment_files: list[str]
    working_directory: str


def _read_unit(path: Path) -> Unit:
    """The [Service] keys the test needs; systemd's own syntax (continuation lines, quoting)
    beyond what these files use is refused rather than guessed."""
    section = ""
    exec_start: list[str] = []
    environment: dict[str, str] = {}
    environment_files: list[str] = []
    working_directory = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\") and '"' not in line, f"{path.name}: {raw!r}"
        if line.startswith("["):
            section = line
            continue
        if section != "[Service]":
            continue
        key, _, value = line.partition("=")
        if key == "ExecStart":
            assert not exec_start, f"{path.name}: one ExecStart"
            exec_start = value.split()
        elif key == "Environment":
            for item in value.split():
                name, _, setting = item.partition("=")
                environment[name] = setting
        elif key == "EnvironmentFile":
            environment_files.append(value)
        elif key == "WorkingDirectory":
            working_directory = value
    assert exec_start, f"{path.name}: no ExecStart"
    return Unit(exec_start, environment, environment_files, working_directory)


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep and name.isidentifier() and not name.startswith("export"), raw
            values[name] = value
    return values


def _graphql(port: int) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": QUERY}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the service's PID, SIGKILL to that PID after 20 s: as systemd's stop, by PID."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_units_use_the_example_files() -> None:
    workspace = (DEPLOY / "workspace.yaml").read_text()
    assert f"port: {CODE_PORT}" in workspace and "location_name: run_proof_pipeline" in workspace
    for name in UNITS:
        unit = _read_unit(DEPLOY / f"{name}.service")
        assert unit.environment_files == [f"{CONFIG_DIR}/run-proof.env"]
        assert unit.exec_start[0].startswith(f"{VENV_BIN}/")
    example = _read_env_file(DEPLOY / "run-proof.env.example")
    assert set(example) == {
        "DAGSTER_HOME",
        "DAGSTER_PG_URL",
        "DATABASE_URL",
        "USE_POSTGRES_TRACES",
        "RUN_PROOF_REPORT_DIR",
    }
    # Placeholders, no credentials.
    for name in ("DAGSTER_PG_URL", "DATABASE_URL"):
        assert example[name].startswith("postgresql://USER:PASSWORD@HOST:5432/")
    assert example["USE_POSTGRES_TRACES"] == "true"


@pytest.mark.slow
def test_the_three_services_serve_the_ui_on_postgres_storage(
    store: DatabaseUrl, new_database: Any, tmp_path: Path
) -> None:
    storage = DatabaseUrl.parse(new_database("deploy_dagster"))
    venv_bin = str(Path(sys.executable).parent)
    config_dir, state_dir = tmp_path / "etc", tmp_path / "var"
    config_dir.mkdir()
    state_dir.mkdir()
    code_port, web_port = str(free_port()), str(free_port())

    def local(value: str) -> str:
        return (
            value.replace(VENV_BIN, venv_bin)
            .replace(CONFIG_DIR, str(config_dir))
            .replace(STATE_DIR, str(state_dir))
        )

    # The install steps of deploy/README.md, into the test's directories.
    (config_dir / "workspace.yaml").write_text(
        (DEPLOY / "workspace.yaml").read_text().replace(f"port: {CODE_PORT}", f"port: {code_port}")
    )
    example = _read_env_file(DEPLOY / "run-proof.env.example")
    filled = {name: local(value) for name, value in example.items()}
    filled["DAGSTER_PG_URL"] = storage.psycopg2()
    filled["DATABASE_URL"] = store.libpq()
    (config_dir / "run-proof.env").write_text(
        "".join(f"{name}={value}\n" for name, value in filled.items())
    )
    home = Path(filled["DAGSTER_HOME"])
    home.mkdir(parents=True)
    shutil.copy(shipped_file("dagster.yaml"), home / "dagster.yaml")
    Path(filled["RUN_PROOF_REPORT_DIR"]).mkdir(parents=True)

    # systemd starts services with a clean environment: only what the unit gives them.
    base = {"PATH": f"{venv_bin}:/usr/bin:/bin", "HOME": str(state_dir), "LANG": "C.UTF-8"}
    migrate = subprocess.run(
        [f"{venv_bin}/dagster", "instance", "migrate"],
        env={**base, **filled},
        cwd=state_dir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr

    processes: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    try:
        for name in UNITS:
            unit = _read_unit(DEPLOY / f"{name}.service")
            env = dict(base)
            for env_file in unit.environment_files:
                env.update(_read_env_file(Path(local(env_file))))
            env.update(unit.environment)
            argv = [local(arg) for arg in unit.exec_start]
            argv = [
                code_port if arg == CODE_PORT else web_port if arg == WEB_PORT else arg
                for arg in argv
            ]
            logs[name] = tmp_path / f"{name}.log"
            with logs[name].open("wb") as log:
                processes[name] = subprocess.Popen(
                    argv,
                    env=env,
                    cwd=local(unit.working_directory),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

        def tails() -> str:
            return "\n".join(f"--- {n}\n{p.read_text()[-2000:]}" for n, p in logs.items())

        deadline = time.monotonic() + 90
        loaded = heartbeat = False
        answer: dict[str, Any] = {}
        while time.monotonic() < deadline and not (loaded and heartbeat):
            for name, process in processes.items():
                assert process.poll() is None, f"{name} exited\n{tails()}"
            try:
                answer = _graphql(int(web_port))["data"]
            except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError):
                time.sleep(1)
                continue
            entries = answer["workspaceOrError"]["locationEntries"]
            loaded = any(
                e["name"] == "run_proof_pipeline"
                and e["loadStatus"] == "LOADED"
                and e["locationOrLoadError"]["__typename"] == "RepositoryLocation"
                and any(
                    j["name"] == "run_proof_plan"
                    for r in e["locationOrLoadError"]["repositories"]
                    for j in r["jobs"]
                )
                for e in entries
            )
            statuses = answer["instance"]["daemonHealth"]["allDaemonStatuses"]
            required = [s for s in statuses if s["required"]]
            heartbeat = bool(required) and all(s["healthy"] for s in required)
            if not (loaded and heartbeat):
                time.sleep(1)
        assert loaded, f"code location not loaded over gRPC: {answer}\n{tails()}"
        assert heartbeat, f"daemon not healthy: {answer}\n{tails()}"
        daemons = {s["daemonType"] for s in answer["instance"]["daemonHealth"]["allDaemonStatuses"]}
        assert {"SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR"} <= daemons
    finally:
        for process in reversed(processes.values()):
            _stop(process)
        # Whatever a service started must have ended with it (systemd would kill the rest of
        # its cgroup; the test wants the services to leave none). A leftover group is killed
        # by its id and the test fails.
        time.sleep(0.5)
        leftovers = [n for n, p in processes.items() if _group_alive(p.pid)]
        for name in leftovers:
            os.killpg(processes[name].pid, signal.SIGKILL)

    assert not leftovers, f"processes left in the groups of {leftovers}"
    # Each service ends on SIGTERM, within the 20 s (systemd's TimeoutStopSec is 30).
    codes = {name: process.returncode for name, process in processes.items()}
    assert all(code is not None and code != -signal.SIGKILL for code in codes.values()), codes
    for log in logs.values():
        text = log.read_text()
        for password in (store.url.password, storage.url.password):
            assert not password or password not in text
