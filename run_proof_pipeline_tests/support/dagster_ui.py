"""dagster-webserver and dagster-daemon as child processes of the test session.

Each server is a `Popen` we started ourselves and stop by that handle (terminate, wait, kill):
never by process name, because other engineers run Dagster on the same machine.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from run_proof_pipeline.plan.coordinator_tests import project_root
from run_proof_pipeline.settings import DatabaseUrl, redact

MODULE = "run_proof_pipeline.definitions"
JOB = "run_proof_plan"
# Dagster names a `-m` code location after its module; Definitions live in `__repository__`.
LOCATION = MODULE
REPOSITORY = "__repository__"
# Variables from the developer's shell that would change what the servers do.
_AMBIENT = (
    "DATABASE_URL",
    "USE_POSTGRES_TRACES",
    "DAGSTER_HOME",
    "DAGSTER_PG_URL",
    "RUN_PROOF_REPORT_DIR",
    "RUN_PROOF_ALERT_WEBHOOK",
    "RUN_PROOF_SENSORS",
)


class DagsterUIError(RuntimeError):
    """A server did not come up, or a run did not reach the awaited state."""


@dataclass
class ServerProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return redact("\n".join(text.splitlines()[-lines:]))

    def stop(self, timeout: float = 30) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)


@dataclass
class DagsterUI:
    """A running webserver (and daemon) on one loopback port."""

    base_url: str
    home: Path
    report_dir: Path
    processes: list[ServerProcess] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base_url + path

    @property
    def job_path(self) -> str:
        return f"/locations/{LOCATION}/jobs/{JOB}"

    def stop(self) -> None:
        # The daemon first: it launches runs the webserver would otherwise still be serving.
        for server in reversed(self.processes):
            server.stop()

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            self.url("/graphql"), data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            payload: dict[str, Any] = json.load(response)
        if payload.get("errors"):
            raise DagsterUIError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def launch_run(self, run_config: dict[str, Any]) -> str:
        data = self.graphql(_LAUNCH, {"params": _execution_params(run_config)})
        result = data["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise DagsterUIError(f"launchRun failed: {redact(json.dumps(result))}")
        return str(result["run"]["runId"])

    def run_status(self, run_id: str) -> str:
        data = self.graphql(_RUN_STATUS, {"runId": run_id})
        return str(data["runOrError"].get("status", data["runOrError"]["__typename"]))

    def wait_for_run(self, run_id: str, timeout: float = 240) -> str:
        """Poll until the run leaves the queue and finishes; returns its final status."""
        deadline = time.monotonic() + timeout
        status = ""
        while time.monotonic() < deadline:
            status = self.run_status(run_id)
            if status in _FINAL:
                return status
            self._assert_alive()
            time.sleep(1)
        raise DagsterUIError(f"run {run_id} still {status} after {timeout:.0f} s\n{self._logs()}")

    def _assert_alive(self) -> None:
        for server in self.processes:
            if server.process.poll() is not None:
                raise DagsterUIError(f"{server.name} exited\n{self._logs()}")

    def _logs(self) -> str:
        return "\n".join(f"--- {s.name}\n{s.log_tail()}" for s in self.processes)


_FINAL = {"SUCCESS", "FAILURE", "CANCELED"}

_LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""

_RUN_STATUS = """
query Status($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status } }
}
"""

_LOCATION_STATUS = """
{
  workspaceOrError {
    __typename
    ... on Workspace { locationEntries { name loadStatus
      locationOrLoadError { __typename ... on PythonError { message } } } }
  }
}
"""


def _execution_params(run_config: dict[str, Any]) -> dict[str, Any]:
    return {
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "jobName": JOB,
        },
        "runConfigData": run_config,
        "mode": "default",
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_environment(
    trace_db: DatabaseUrl, storage: DatabaseUrl, home: Path, report_dir: Path
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _AMBIENT}
    env.update(
        {
            "DATABASE_URL": trace_db.libpq(),
            "USE_POSTGRES_TRACES": "true",
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_URL": storage.psycopg2(),
            "RUN_PROOF_REPORT_DIR": str(report_dir),
        }
    )
    return env


def _start(name: str, argv: list[str], env: dict[str, str], logs: Path) -> ServerProcess:
    log_path = logs / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            env=env,
            cwd=project_root(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return ServerProcess(name, process, log_path)


def _bin(name: str) -> str:
    # The venv's own entry point, next to the interpreter running the tests.
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def start_dagster_ui(
    ui: DagsterUI, trace_db: DatabaseUrl, storage: DatabaseUrl, logs: Path, port: int
) -> None:
    """Start the webserver and daemon into `ui.processes` (so a finalizer registered before
    this call stops whatever did start), then wait until the code location has loaded."""
    shutil.copy(project_root() / "dagster.yaml", ui.home / "dagster.yaml")
    env = server_environment(trace_db, storage, ui.home, ui.report_dir)
    webserver = [_bin("dagster-webserver"), "-m", MODULE, "-h", "127.0.0.1", "-p", str(port)]
    ui.processes.append(_start("webserver", webserver, env, logs))
    ui.processes.append(_start("daemon", [_bin("dagster-daemon"), "run", "-m", MODULE], env, logs))
    wait_until_loaded(ui)


def wait_until_loaded(ui: DagsterUI, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        ui._assert_alive()
        try:
            workspace = ui.graphql(_LOCATION_STATUS)["workspaceOrError"]
        except (urllib.error.URLError, ConnectionError, TimeoutError, DagsterUIError) as exc:
            last = str(exc)
        else:
            entries = {e["name"]: e for e in workspace.get("locationEntries", [])}
            entry = entries.get(LOCATION)
            if entry and entry["loadStatus"] == "LOADED":
                loaded = entry["locationOrLoadError"]
                if loaded and loaded["__typename"] == "PythonError":
                    raise DagsterUIError(f"code location failed: {redact(loaded['message'])}")
                return
            last = f"location entries: {list(entries)}"
        time.sleep(1)
    raise DagsterUIError(f"webserver not ready after {timeout:.0f} s ({last})\n{ui._logs()}")
