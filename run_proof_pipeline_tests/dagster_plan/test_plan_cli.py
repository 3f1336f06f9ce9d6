"""`run-proof plan`, the README's main command, end to end: the CLI starts
`dagster job execute` in a subprocess, with Dagster's storage in PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from run_proof_pipeline.cli.dagster_env import LOCATION_VARIABLES
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.plan.coordinator_tests import project_root
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.stores import owner_sql, record_run

pytestmark = pytest.mark.slow

RUN_PROOF = str(Path(sys.executable).with_name("run-proof"))


def _plan(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RUN_PROOF, "plan", "--no-coordinator-tests", *args],
        env={**{k: v for k, v in os.environ.items() if k not in LOCATION_VARIABLES}, **env},
        cwd=cwd or project_root(),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def test_plan_prints_the_report_then_exits_1_once_a_step_is_altered(
    store: DatabaseUrl, dagster_storage: DatabaseUrl, tmp_path: Path
) -> None:
    record_run(store, "tenant-a", "run-cli", steps=3)
    reports = tmp_path / "reports"
    env = {
        "DATABASE_URL": store.libpq(),
        "DAGSTER_PG_URL": dagster_storage.libpq(),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "RUN_PROOF_REPORT_DIR": str(reports),
    }

    verified = _plan(env)

    assert verified.returncode == 0, verified.stderr
    assert f"Using DATABASE_URL={store.redacted()}" in verified.stdout
    assert "| **Run ID** | `run-cli` |" in verified.stdout
    assert "| **Coordinator verification_status** | `VERIFIED` |" in verified.stdout
    assert "| **Pytest result** | `skipped by configuration` |" in verified.stdout
    assert len(list(reports.glob("run-proof-report-*.md"))) == 1
    assert store.url.password not in verified.stdout + verified.stderr

    touched = owner_sql(
        store,
        "UPDATE aos_trace_steps SET status = 'succeeded-ish' WHERE run_id = %s AND step_index = 2",
        ("run-cli",),
        table="aos_trace_steps",
    )
    assert touched == 1
    altered = _plan(env)

    assert altered.returncode == 1
    assert "the run-proof plan stopped" in altered.stderr
    assert "step 2: step_hash mismatch" in altered.stdout + altered.stderr
    # The quiet output's line for the failed step carries the step's stop message.
    assert "Step 4 (integrity expectations): failed: " in altered.stdout
    assert len(list(reports.glob("run-proof-report-*.md"))) == 1
    assert store.url.password not in altered.stdout + altered.stderr


def test_plan_refuses_a_run_id_without_its_tenant(
    store: DatabaseUrl, dagster_storage: DatabaseUrl, tmp_path: Path
) -> None:
    env = {
        "DATABASE_URL": store.libpq(),
        "DAGSTER_PG_URL": dagster_storage.libpq(),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }

    refused = _plan(env, "--run-id", "run-1")

    assert refused.returncode == 2
    assert "--tenant-id and --run-id go together" in refused.stderr


@pytest.fixture
def elsewhere() -> Iterator[Path]:
    """A RUN_PROOF_HOME of the test's own, on a short path (a server's unix socket path must
    stay under 108 bytes); whatever embedded server the CLI starts there is stopped afterwards
    (pg_ctl on that data directory)."""
    home = Path(tempfile.mkdtemp(prefix="rp-"))
    try:
        yield home
    finally:
        server = LocalPostgres(home / ".run-proof" / "postgres")
        if server.is_initialized():
            server.stop()
        shutil.rmtree(home, ignore_errors=True)


def test_plan_on_the_embedded_default_keeps_dagster_on_the_same_server(
    elsewhere: Path, tmp_path: Path
) -> None:
    env = {
        "RUN_PROOF_HOME": str(elsewhere),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "RUN_PROOF_REPORT_DIR": str(tmp_path / "reports"),
    }

    completed = _plan(env, cwd=elsewhere)

    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert completed.stdout.startswith("Using the embedded default PostgreSQL")
    assert "seeded 12 demo traces" in completed.stdout
    assert "| **Coordinator verification_status** | `VERIFIED` |" in completed.stdout
    server = LocalPostgres(elsewhere / ".run-proof" / "postgres")
    assert server.is_running()
    with psycopg.connect(server.url(driver="")) as conn:
        databases = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
    assert {"run_proof", "dagster"} <= databases
