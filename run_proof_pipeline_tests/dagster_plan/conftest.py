"""Fixtures for the Dagster job, its checks, schedule and sensors.

Dagster's own storage runs on the throwaway PostgreSQL server too: the project's dagster.yaml
(dagster-postgres) in a temporary DAGSTER_HOME, never Dagster's ephemeral instance (which keeps
its runs and events in SQLite).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance

from run_proof_pipeline.local_postgres import LocalPostgres
from run_proof_pipeline.plan.coordinator_tests import project_root
from run_proof_pipeline.settings import DatabaseUrl


@pytest.fixture(scope="session")
def dagster_storage(pg_server: LocalPostgres) -> DatabaseUrl:
    """The database that holds Dagster's runs, event logs and schedules for the session."""
    return DatabaseUrl.parse(pg_server.create_database("dagster_storage", exist_ok=False))


@pytest.fixture(scope="session")
def dagster_instance(
    dagster_storage: DatabaseUrl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DagsterInstance]:
    """One instance for the session (its schema takes seconds to create); tests tell their
    runs apart by run id."""
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(project_root() / "dagster.yaml", home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DAGSTER_PG_URL", dagster_storage.psycopg2())
        instance = DagsterInstance.from_config(str(home))
    try:
        yield instance
    finally:
        instance.dispose()


@pytest.fixture
def report_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where this test's Output Reports go; also the default for runs whose config names none
    (run requests from the schedule and sensors), so nothing lands in the project's reports/."""
    directory = tmp_path / "reports"
    monkeypatch.setenv("RUN_PROOF_REPORT_DIR", str(directory))
    return directory


@pytest.fixture(autouse=True)
def _no_ambient_target(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests configure the trace store explicitly; a DATABASE_URL or alert webhook in the
    developer's shell must never reach them."""
    for name in ("DATABASE_URL", "USE_POSTGRES_TRACES", "RUN_PROOF_ALERT_WEBHOOK"):
        monkeypatch.delenv(name, raising=False)
