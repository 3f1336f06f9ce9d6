"""Shared pytest fixtures.

PostgreSQL: one throwaway server per test session (``pg_server``) in pytest's tmp dir, never the
project's embedded default under ``.run-proof/``. Tests get isolation from fresh databases
(``new_database``) rather than from truncating tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Protocol

import pytest

from run_proof_pipeline.embedded.server import LocalPostgres


class NewDatabase(Protocol):
    def __call__(self, prefix: str = "t") -> str: ...


@pytest.fixture(scope="session")
def pg_server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LocalPostgres]:
    """A running throwaway server (fsync off) on a free port, stopped at session end."""
    server = LocalPostgres(tmp_path_factory.mktemp("pg"), fast=True)
    # Registered before start() so that even a half-started server is shut down (pg_ctl on its
    # own data dir); finalizers run whether tests pass or fail.
    request.addfinalizer(server.stop)
    server.start()
    yield server


@pytest.fixture
def new_database(pg_server: LocalPostgres) -> NewDatabase:
    """Factory: ``new_database(prefix="t")`` creates an empty, uniquely named database on
    ``pg_server`` and returns its ``postgresql+psycopg://`` URL."""

    def create(prefix: str = "t") -> str:
        return pg_server.create_database(f"{prefix}_{uuid.uuid4().hex[:12]}", exist_ok=False)

    return create


# Fixtures live beside their helpers and are registered here, for every test module: no test
# file imports a fixture (an import that only pytest would use).
pytest_plugins = [
    "run_proof_pipeline_tests.store_fixtures",  # store: a migrated trace store per test
    "run_proof_pipeline_tests.dagster_fixtures",  # Dagster's storage on the throwaway server
    "run_proof_pipeline_tests.aos_fixtures",  # aos_store: AOS's own schema, as deployed
    "run_proof_pipeline_tests.ledger_fixtures",  # checkpoint_env: checkpoint dir and key
]
