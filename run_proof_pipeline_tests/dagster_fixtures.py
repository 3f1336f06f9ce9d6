"""Dagster's own storage for tests: the project's dagster.yaml (dagster-postgres) in a
temporary DAGSTER_HOME on the throwaway PostgreSQL server, never Dagster's ephemeral
instance (which keeps its runs and events in SQLite). Session-wide, for every package."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

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
