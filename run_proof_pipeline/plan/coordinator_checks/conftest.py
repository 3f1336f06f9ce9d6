"""Fixtures of the shipped coordinator tests (Step 5 runs them with pytest, in a process of
their own): one throwaway PostgreSQL server for the session in pytest's temporary directory,
a new database per test, the trace store migrated to head. Never the target database, never
the embedded default."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Protocol

import pytest

from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.migrate import upgrade


class NewDatabase(Protocol):
    def __call__(self, prefix: str = "t") -> str: ...


@pytest.fixture(scope="session")
def pg_server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LocalPostgres]:
    """A running throwaway server (fsync off) on a free port, stopped at session end."""
    server = LocalPostgres(tmp_path_factory.mktemp("pg"), fast=True)
    request.addfinalizer(server.stop)  # before start(): a half-started server is stopped too
    server.start()
    yield server


@pytest.fixture
def new_database(pg_server: LocalPostgres) -> NewDatabase:
    """Factory: an empty, uniquely named database on `pg_server`; returns its URL."""

    def create(prefix: str = "t") -> str:
        return pg_server.create_database(f"{prefix}_{uuid.uuid4().hex[:12]}", exist_ok=False)

    return create


@pytest.fixture
def store(new_database: NewDatabase) -> Iterator[DatabaseUrl]:
    """A new database with the trace store migrated to head."""
    url = DatabaseUrl.parse(new_database("store"))
    upgrade(url)
    yield url
