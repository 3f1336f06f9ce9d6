"""The seed's production path (issue 13, "Done when"): on AOS as deployed, after `run-proof db
upgrade`, a run that AOS's own statements record passes the seed's plan, Steps 1-5 and the
report, with no `adopt`, no code of ours in the write path; and an owner's edit of such a run
is caught by the same plan.

AOS's database is the fixture of aos_deployed.py (every column and trigger of AOS's chain,
legacy rows written by AOS's statements). The plan runs as users run it: `run-proof plan`,
which starts `dagster job execute` with Dagster's storage in PostgreSQL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from run_proof_pipeline.cli.dagster_env import LOCATION_VARIABLES
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.plan.coordinator_tests import project_root
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.aos_deployed import (
    complete_trace,
    connect,
    create_aos_deployed_store,
    record_step,
    start_trace,
)
from run_proof_pipeline_tests.support.cli_process import run_process
from run_proof_pipeline_tests.support.stores import prove

pytestmark = pytest.mark.slow

RUN_PROOF = str(Path(sys.executable).with_name("run-proof"))
TENANT = "acme"


@dataclass(frozen=True)
class Production:
    url: DatabaseUrl
    env: dict[str, str]
    reports: Path


def _aos_run(url: DatabaseUrl, run_id: str, steps: int) -> str:
    """One run as AOS's PostgresTraceStore writes it: start, a step at a time, complete."""
    with connect(url) as conn:
        trace_id = start_trace(conn, run_id, f"corr-{run_id}", TENANT, "agent-7", [{"s": 1}])
        for index in range(steps):
            record_step(
                conn, trace_id, index, "http_call", {"url": f"https://x/{index}", "n": index},
                "success", "SUCCESS", "200", {"bytes": 10 * index} if index else None,
                0.25, 12.5 + index, 0,
            )  # fmt: skip
        assert complete_trace(conn, run_id, "completed", {"total_cost_cents": 0.75}) == 1
    return trace_id


@pytest.fixture(scope="module")
def production(
    pg_server: LocalPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Production]:
    name = f"aosprod_{uuid.uuid4().hex[:12]}"
    url = DatabaseUrl.parse(pg_server.create_database(name))
    storage = DatabaseUrl.parse(pg_server.create_database(f"{name}_dagster"))
    create_aos_deployed_store(url)
    upgraded = run_process(
        [RUN_PROOF, "db", "upgrade"], env={**os.environ, "DATABASE_URL": url.libpq()}
    )
    assert upgraded.returncode == 0, upgraded.stderr
    home = tmp_path_factory.mktemp("prod_home")
    reports = tmp_path_factory.mktemp("prod_reports")
    env = {
        "DATABASE_URL": url.libpq(),
        "DAGSTER_PG_URL": storage.libpq(),
        "DAGSTER_HOME": str(home),
        "RUN_PROOF_REPORT_DIR": str(reports),
    }
    try:
        yield Production(url, env, reports)
    finally:
        pg_server.drop_database(name)
        pg_server.drop_database(f"{name}_dagster")


def _plan(production: Production, run_id: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RUN_PROOF, "plan", "--tenant-id", TENANT, "--run-id", run_id, *extra],
        env={
            **{k: v for k, v in os.environ.items() if k not in LOCATION_VARIABLES},
            **production.env,
        },
        cwd=project_root(),
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )


def _rows(url: DatabaseUrl, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url.libpq()) as conn:
        return conn.execute(sql, params).fetchall()


def test_a_run_aos_records_passes_the_seed_plan_with_no_adopt(production: Production) -> None:
    trace_id = _aos_run(production.url, "run-prod-1", steps=3)

    # AOS's own values stay AOS's: its root hash is still 'pending'; the format's seal is ours.
    [(root_hash, seal_hash, chain_format, adopted_at)] = _rows(
        production.url,
        "SELECT root_hash, seal_hash, chain_format, adopted_at FROM aos_traces WHERE trace_id = %s",
        (trace_id,),
    )
    assert (root_hash, chain_format, adopted_at) == ("pending", 2, None)
    assert seal_hash is not None and len(seal_hash) == 64

    integrity = prove(production.url, TENANT, "run-prod-1").integrity
    assert integrity.verification_status == "VERIFIED", integrity.failure_reason
    assert integrity.model == "HASH_CHAIN"
    assert integrity.chain_length == 3
    assert integrity.root_hash == seal_hash

    before = set(production.reports.glob("run-proof-report-*.md"))
    result = _plan(production, "run-prod-1")

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "| **Run ID** | `run-prod-1` |" in out
    assert "| **Coordinator verification_status** | `VERIFIED` |" in out
    assert "| **Coordinator integrity_model** | `HASH_CHAIN` |" in out
    assert "| **Coordinator chain_length** | `3` |" in out
    assert "| **Trace step_count (DB)** | `3` |" in out
    assert f"| **Coordinator root_hash** | `{seal_hash}` |" in out
    # Step 5: the coordinator's own tests ran and passed, not skipped.
    assert "| **Pytest result** | `pass (" in out, out[-3000:]
    [report] = set(production.reports.glob("run-proof-report-*.md")) - before
    text = report.read_text()
    assert "`run-prod-1`" in text and "`VERIFIED`" in text


def _owner_edit(url: DatabaseUrl, sql: str, params: tuple[Any, ...]) -> int:
    """An edit as the database owner: AOS's triggers are off under session_replication_role
    = replica (they are ENABLE ORIGIN), and the owner disables run-proof's append-only guard
    (ENABLE ALWAYS) for the statement, then puts it back."""
    with psycopg.connect(url.libpq()) as conn:
        conn.execute("SET session_replication_role = replica")
        guard = "TRIGGER aos_trace_steps_append_only"
        conn.execute(f"ALTER TABLE aos_trace_steps DISABLE {guard}")
        touched = conn.execute(sql, params).rowcount
        conn.execute(f"ALTER TABLE aos_trace_steps ENABLE ALWAYS {guard}")
    return touched


def test_an_owner_edit_of_an_aos_written_run_stops_the_plan(production: Production) -> None:
    trace_id = _aos_run(production.url, "run-prod-2", steps=4)
    assert prove(production.url, TENANT, "run-prod-2").integrity.verification_status == "VERIFIED"

    touched = _owner_edit(
        production.url,
        'UPDATE aos_trace_steps SET params = \'{"url": "https://evil", "n": 2}\''
        " WHERE trace_id = %s AND step_index = 2",
        (trace_id,),
    )
    assert touched == 1

    integrity = prove(production.url, TENANT, "run-prod-2").integrity
    assert integrity.verification_status == "FAILED"
    assert integrity.failure_reason is not None
    assert integrity.failure_reason.startswith("step 2: step_hash mismatch")

    result = _plan(production, "run-prod-2", "--no-coordinator-tests")
    assert result.returncode == 1
    assert "step 2: step_hash mismatch" in result.stdout + result.stderr
