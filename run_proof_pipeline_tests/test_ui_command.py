"""`run-proof ui` (the README's UI command) serves the plan, the assets, their checks and the
automation: asked through the webserver's GraphQL endpoint, as the UI itself asks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from run_proof_pipeline.plan.coordinator_tests import project_root
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.dagster_ui import free_port

QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message }
    ... on RepositoryLocation { repositories {
      jobs { name graphName }
      schedules { name }
      sensors { name }
      assetNodes { assetKey { path }
        assetChecksOrError { __typename ... on AssetChecks { checks { name } } } }
} } } } } } }
"""


def _graphql(port: int) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": QUERY}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _stop(process: subprocess.Popen[bytes]) -> None:
    # `run-proof ui` stops its whole tree (dagster dev, webserver, daemon, code servers) when
    # its own PID gets SIGTERM, within 10 s (docs/ui.md, "Stopping the UI";
    # test_ui_signals.py proves it by PID).
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


@pytest.mark.slow
def test_run_proof_ui_lists_the_plan_assets_checks_and_automation(
    store: DatabaseUrl, new_database: Any, tmp_path: Path
) -> None:
    storage = DatabaseUrl.parse(new_database("ui_dagster"))
    home = tmp_path / "dagster_home"
    home.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": store.libpq(),
        "USE_POSTGRES_TRACES": "true",
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": storage.psycopg2(),
        "RUN_PROOF_REPORT_DIR": str(tmp_path / "reports"),
    }
    cli = str(Path(sys.executable).with_name("run-proof"))
    log = (tmp_path / "ui.log").open("wb")
    process = subprocess.Popen(
        [cli, "ui", "--port", str(port)],
        env=env,
        cwd=project_root(),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 240
        repositories: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not repositories:
            assert process.poll() is None, (tmp_path / "ui.log").read_text()[-3000:]
            try:
                entries = _graphql(port)["data"]["workspaceOrError"]["locationEntries"]
            except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError):
                time.sleep(2)
                continue
            loaded = [e for e in entries if e["loadStatus"] == "LOADED"]
            if loaded:
                location = loaded[0]["locationOrLoadError"]
                assert location["__typename"] == "RepositoryLocation", location
                repositories = location["repositories"]
            else:
                time.sleep(2)
        assert repositories, "the UI did not load the code location in time"
    finally:
        _stop(process)
        log.close()

    [repository] = repositories
    jobs = {j["name"] for j in repository["jobs"]}
    assert {"run_proof_plan", "run_proof_checkpoint", "aos_traces_sweep_job"} <= jobs
    assert {s["name"] for s in repository["schedules"]} >= {"nightly_run_proof", "nightly_sweep"}
    assert {s["name"] for s in repository["sensors"]} >= {
        "new_sealed_traces",
        "run_proof_failure_alert",
    }
    checks = {
        "/".join(node["assetKey"]["path"]): {
            c["name"] for c in node["assetChecksOrError"].get("checks", [])
        }
        for node in repository["assetNodes"]
    }
    assert checks["aos_traces"] == {
        "hash_chain_integrity",
        "chain_length_matches_step_count",
        "seal_present",
    }
    assert checks["aos_traces_sweep"] == {"sweep_integrity"}
    assert store.url.password not in (tmp_path / "ui.log").read_text()
