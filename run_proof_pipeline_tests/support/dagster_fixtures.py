"""Dagster's own storage for tests: the project's dagster.yaml (dagster-postgres) in a
temporary DAGSTER_HOME on the throwaway PostgreSQL server, never Dagster's ephemeral
instance (which is not PostgreSQL). Session-wide, for every package."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance

from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.plan.coordinator_tests import project_root
from run_proof_pipeline.settings import DatabaseUrl


@pytest.fixture(scope="session")
def dagster_storage(pg_server: LocalPostgres) -> DatabaseUrl:
    """The database that holds Dagster's runs, event logs and schedules for the session."""
    return DatabaseUrl.parse(pg_server.create_database("dagster_storage", exist_ok=False))


def _instance_on(storage: DatabaseUrl, home: Path) -> DagsterInstance:
    shutil.copy(project_root() / "dagster.yaml", home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DAGSTER_PG_URL", storage.psycopg2())
        return DagsterInstance.from_config(str(home))


@pytest.fixture(scope="session")
def dagster_instance(
    dagster_storage: DatabaseUrl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DagsterInstance]:
    """One instance for the session (its schema takes seconds to create); tests tell their
    runs apart by run id."""
    instance = _instance_on(dagster_storage, tmp_path_factory.mktemp("dagster_home"))
    try:
        yield instance
    finally:
        instance.dispose()


@pytest.fixture
def fresh_dagster_instance(
    new_database: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DagsterInstance]:
    """An instance of its own, for tests that assert on instance-wide state (partitions,
    a check's whole history). DAGSTER_PG_URL stays set while the test runs, since Dagster
    re-creates the instance from its config (e.g. in schedule contexts)."""
    storage = DatabaseUrl.parse(new_database("dagster"))
    monkeypatch.setenv("DAGSTER_PG_URL", storage.psycopg2())
    instance = _instance_on(storage, tmp_path)
    try:
        yield instance
    finally:
        instance.dispose()
