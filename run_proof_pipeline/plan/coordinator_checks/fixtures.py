"""pytest fixtures for tests on a throwaway PostgreSQL server, as a plugin module.

Registered by `conftest.py` beside it (Step 5 runs the shipped coordinator tests with them, in
a process of its own, from a checkout or an installed wheel alike) and by the checkout's suite
(`run_proof_pipeline_tests/conftest.py`, `pytest_plugins`): one definition of the server, of a
new database and of a migrated trace store for both. Never the target database, never the
embedded default.

A migrated store is a copy (`CREATE DATABASE ... TEMPLATE`) of a template database that the
migrations ran on once per server and schema (`migrated_copy`): copying takes a fraction of a
second where running every migration takes seconds. Nothing connects to a template once it is
made (it refuses connections), so every copy starts from the same state. Tests of the
migrations themselves (from scratch, from an older revision, on AOS's tables) call
`store.migrate.upgrade` on a database of their own instead.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Protocol

import psycopg
import pytest
from psycopg import errors
from psycopg import sql as pgsql

from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.migrate import head_revision, upgrade
from run_proof_pipeline.store.session_pins import store_schema

__all__ = ["NewDatabase", "NewStore", "migrated_copy"]


class NewDatabase(Protocol):
    def __call__(self, prefix: str = "t") -> str: ...


class NewStore(Protocol):
    def __call__(self, prefix: str = "store") -> DatabaseUrl: ...


# Per server (its admin URL: port and the credentials of its data dir) and store schema, the
# name of the database the migrations ran on. A process holds one entry per server it used.
_TEMPLATES: dict[tuple[str, str], str] = {}
_TEMPLATES_LOCK = threading.Lock()


def _template(server: LocalPostgres) -> str:
    """The server's migrated template for the current schema (RUN_PROOF_SCHEMA), made on
    first use: migrated to head, then closed to connections for good."""
    key = (server.url(driver=""), store_schema())
    with _TEMPLATES_LOCK:
        name = _TEMPLATES.get(key)
        if name is None:
            name = f"store_template_{head_revision()}_{uuid.uuid4().hex[:8]}"
            upgrade(DatabaseUrl.parse(server.create_database(name, exist_ok=False)))
            with psycopg.connect(server.url(driver=""), autocommit=True) as conn:
                conn.execute(
                    pgsql.SQL(
                        "ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
                    ).format(pgsql.Identifier(name))
                )
            _TEMPLATES[key] = name
        return name


def migrated_copy(server: LocalPostgres, name: str) -> DatabaseUrl:
    """Database `name` on `server`, new, holding the trace store at head (a copy of the
    server's migrated template, `_template`); returns its URL."""
    template = _template(server)
    statement = pgsql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
        pgsql.Identifier(name), pgsql.Identifier(template)
    )
    with psycopg.connect(server.url(driver=""), autocommit=True) as conn:
        try:
            conn.execute(statement)
        except errors.InvalidCatalogName:  # the template was dropped (a test reset the server)
            with _TEMPLATES_LOCK:
                _TEMPLATES.pop((server.url(driver=""), store_schema()), None)
            return migrated_copy(server, name)
    return DatabaseUrl.parse(server.url(name))


@pytest.fixture(scope="session")
def pg_server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LocalPostgres]:
    """A running throwaway server (fsync off) on a free port, stopped at session end (one per
    pytest-xdist worker)."""
    server = LocalPostgres(tmp_path_factory.mktemp("pg"), fast=True)
    # Registered before start(): even a half-started server is stopped (pg_ctl on its own
    # data dir); finalizers run whether tests pass or fail.
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


@pytest.fixture
def new_store(pg_server: LocalPostgres) -> NewStore:
    """Factory: ``new_store(prefix="store")``, a new uniquely named database on ``pg_server``
    with the trace store migrated to head (`migrated_copy`)."""

    def create(prefix: str = "store") -> DatabaseUrl:
        return migrated_copy(pg_server, f"{prefix}_{uuid.uuid4().hex[:12]}")

    return create


@pytest.fixture
def store(new_store: NewStore) -> DatabaseUrl:
    """A new database with the trace store migrated to head."""
    return new_store("store")
