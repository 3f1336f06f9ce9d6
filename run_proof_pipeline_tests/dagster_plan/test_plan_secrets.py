"""Issue 12: the plan run on a DATABASE_URL that carries a real password (`?password=`, and
`user:pw@with@at@host` with an unencoded '@' and ':') connects, proves, and shows the
password nowhere: not in the Output Report (.md, .json), not in any row of Dagster's
PostgreSQL storage (every table, whole rows as text), not in what the run printed or logged,
not in any file under the instance's directory. The last case runs `run-proof plan` as a
process with a password in DAGSTER_PG_URL's query too."""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterInstance
from psycopg import sql

from run_proof_pipeline.cli.dagster_env import LOCATION_VARIABLES
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.plan.coordinator_tests import project_root
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.cli_process import CLI, run_process
from run_proof_pipeline_tests.support.plan_runs import (
    PLAN_STEPS,
    everything_logged,
    plan_config,
    run_plan,
    succeeded_steps,
    trace_store,
)
from run_proof_pipeline_tests.support.stores import password_store

TENANT, RUN = "tenant-secret", "run-secret"
# Each piece is distinctive, so that finding any one of them anywhere is a leak of (part of)
# the password, whatever encoding it was written in.
QUERY_PASSWORD = f"S3cretPW{uuid.uuid4().hex[:10]}"
AT_PASSWORD = "Qv7Lp@Xw3Rt:Mn8Bk@Zt5Hd"


def _pieces(secret: str) -> list[str]:
    return [secret, *(p for p in secret.replace(":", "@").split("@") if p)]


@dataclass(frozen=True)
class SecretStore:
    """A migrated store with one recorded run, and a login role per password form."""

    admin: DatabaseUrl
    port: int
    database: str
    query_role: str
    at_role: str

    def query_form(self) -> str:
        return (
            f"postgresql://{self.query_role}@127.0.0.1:{self.port}/{self.database}"
            f"?password={QUERY_PASSWORD}&sslmode=prefer"
        )

    def at_form(self) -> str:
        # Unencoded, as people write it: the userinfo ends at the LAST '@'.
        return f"postgresql://{self.at_role}:{AT_PASSWORD}@127.0.0.1:{self.port}/{self.database}"


@pytest.fixture(scope="module")
def secret_store(pg_server: LocalPostgres) -> Iterator[SecretStore]:
    passwords = (("query_pw", QUERY_PASSWORD), ("at_pw", AT_PASSWORD))
    with password_store(pg_server, "secrets", passwords, (TENANT, RUN), steps=3) as made:
        yield SecretStore(made.admin, pg_server.port, made.database, *made.roles)


def _dagster_storage_text(storage: DatabaseUrl) -> str:
    """Every row of every table of Dagster's storage database, as text."""
    with psycopg.connect(storage.libpq()) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        assert {"runs", "event_logs"} <= set(tables)
        return "\n".join(
            str(row[0])
            for table in tables
            for row in conn.execute(
                sql.SQL("SELECT t::text FROM {} AS t").format(sql.Identifier(table))
            )
        )


def _files_text(root: Path) -> str:
    return "\n".join(
        path.read_text(encoding="utf-8", errors="replace")
        for path in sorted(root.rglob("*"))
        if path.is_file()
    )


@pytest.mark.parametrize(
    ("form", "secret"),
    [("query_form", QUERY_PASSWORD), ("at_form", AT_PASSWORD)],
    ids=["query-password", "at-and-colon-in-password"],
)
def test_plan_on_a_secret_url_proves_and_shows_the_password_nowhere(
    secret_store: SecretStore,
    dagster_instance: DagsterInstance,
    dagster_storage: DatabaseUrl,
    report_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    form: str,
    secret: str,
) -> None:
    raw = getattr(secret_store, form)()
    # As the CLI hands it to `dagster job execute`: in the environment, not in run config.
    monkeypatch.setenv("DATABASE_URL", raw)
    monkeypatch.setenv("USE_POSTGRES_TRACES", "true")
    caplog.set_level(logging.DEBUG)

    result = run_plan(
        dagster_instance,
        trace_store(None, use_postgres_traces=None),
        plan_config(report_dir, run_id=RUN, tenant_id=TENANT),
    )

    # It really connected with that password and proved the run (so every step wrote).
    assert result.success
    assert succeeded_steps(dagster_instance, result.run_id) == PLAN_STEPS
    markdown = (report_dir / f"run-proof-report-{result.run_id}.md").read_text("utf-8")
    report = json.loads((report_dir / f"run-proof-report-{result.run_id}.json").read_text())
    assert report["verification_status"] == "VERIFIED" and report["chain_length"] == 3
    assert report["db_url"] == DatabaseUrl.parse(raw).redacted()
    assert "***" in report["db_url"]
    printed = capfd.readouterr()
    places = {
        "report .md": markdown,
        "report .json": json.dumps(report) + _files_text(report_dir),
        "Dagster storage rows": _dagster_storage_text(dagster_storage),
        "Dagster event log": everything_logged(dagster_instance, result.run_id),
        "stdout and stderr": printed.out + printed.err,
        "log records": "\n".join(r.getMessage() for r in caplog.records),
        "instance directory": _files_text(Path(dagster_instance.root_directory)),
    }
    leaks = {
        place: piece for place, text in places.items() for piece in _pieces(secret) if piece in text
    }
    assert leaks == {}
    # The run's own record was searched, not an empty storage.
    assert result.run_id in places["Dagster storage rows"]


@pytest.mark.slow
def test_resource_configured_with_the_url_keeps_it_out_of_dagster_storage(
    secret_store: SecretStore,
    dagster_instance: DagsterInstance,
    dagster_storage: DatabaseUrl,
    report_dir: Path,
) -> None:
    # A deployment may set the resource's database_url itself instead of the environment.
    result = run_plan(
        dagster_instance,
        trace_store(secret_store.query_form()),
        plan_config(report_dir, run_id=RUN, tenant_id=TENANT),
    )

    assert result.success
    stored = _dagster_storage_text(dagster_storage)
    assert result.run_id in stored
    assert QUERY_PASSWORD not in stored


@pytest.mark.slow
def test_run_proof_plan_process_shows_neither_password(
    secret_store: SecretStore, dagster_storage: DatabaseUrl, tmp_path: Path
) -> None:
    # The README's main command: both URLs carry a password, Dagster's in its query.
    storage = (
        f"postgresql://{secret_store.query_role}@127.0.0.1:{secret_store.port}/"
        f"{dagster_storage.database}?password={QUERY_PASSWORD}"
    )
    reports, home = tmp_path / "reports", tmp_path / "dagster_home"
    env = {
        **{k: v for k, v in os.environ.items() if k not in LOCATION_VARIABLES},
        "DATABASE_URL": secret_store.at_form(),
        "DAGSTER_PG_URL": storage,
        "DAGSTER_HOME": str(home),
        "RUN_PROOF_REPORT_DIR": str(reports),
    }

    completed = run_process(
        [CLI, "plan", "--no-coordinator-tests", "--tenant-id", TENANT, "--run-id", RUN],
        env,
        cwd=project_root(),
        timeout=600,
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines()[0] == (
        f"Using DATABASE_URL={DatabaseUrl.parse(secret_store.at_form()).redacted()}"
    )
    assert "| **Coordinator verification_status** | `VERIFIED` |" in completed.stdout
    places = {
        "stdout and stderr": completed.stdout + completed.stderr,
        "reports": _files_text(reports),
        "DAGSTER_HOME": _files_text(home),
        "Dagster storage rows": _dagster_storage_text(dagster_storage),
    }
    secrets = _pieces(AT_PASSWORD) + _pieces(QUERY_PASSWORD)
    assert {p: s for p, text in places.items() for s in secrets if s in text} == {}
