"""The trace store in tests: runs recorded and proven by the shipped helpers
(run_proof_pipeline/plan/coordinator_checks/support.py; their fixtures `pg_server`,
`new_database`, `new_store` and `store` are in fixtures.py there), plus what only the suite
needs: runs in format v1 (`record_run(..., chain_format=1)`) and stores of their own on any
server, recorded (`recorded_store`) or with password roles (`password_store`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql as pgsql

from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.plan.coordinator_checks.fixtures import migrated_copy
from run_proof_pipeline.plan.coordinator_checks.support import (
    BASE,
    make_step,
    owner_sql,
    prove,
    record_run_async,
    run,
)
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.recorder import TraceRecorder
from run_proof_pipeline_tests.support.v1_writer import V1TraceWriter

__all__ = [
    "BASE",
    "PasswordStore",
    "RecordedStore",
    "make_step",
    "owner_sql",
    "password_store",
    "prove",
    "record_run",
    "recorded_store",
    "run",
]


def record_run(
    url: DatabaseUrl, tenant_id: str, run_id: str, *, chain_format: int = 2, **kwargs: Any
) -> str:
    """A run as TraceRecorder writes it (`chain_format` 2: chained by the database, format
    v2) or as the format-v1 recorder did (1: support/v1_writer.py, the rows of a store
    recorded before migration 0006); the other arguments are record_run_async's."""
    writers = {1: V1TraceWriter, 2: TraceRecorder}
    if chain_format not in writers:
        raise ValueError(f"chain_format {chain_format!r}: 1 or 2")
    return run(record_run_async(url, tenant_id, run_id, writer=writers[chain_format], **kwargs))


@dataclass(frozen=True)
class RecordedStore:
    """A database of its own, migrated, holding one recorded run (see recorded_store)."""

    database: str
    url: DatabaseUrl


@contextmanager
def recorded_store(
    server: LocalPostgres,
    prefix: str,
    tenant_id: str,
    run_id: str,
    *,
    steps: int,
    chain_format: int = 2,
) -> Iterator[RecordedStore]:
    """Database `<prefix>_<12 hex>` on `server`, migrated (a copy of the server's migrated
    template), holding the sealed run (`tenant_id`, `run_id`) of `steps` steps; dropped
    afterwards. For a module's fixture when the cases only read the store, or a test's when
    it alters it."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    url = migrated_copy(server, name)
    try:
        record_run(url, tenant_id, run_id, steps=steps, chain_format=chain_format)
        yield RecordedStore(name, url)
    finally:
        server.drop_database(name)


@dataclass(frozen=True)
class PasswordStore:
    """A recorded store, and login roles that have passwords (see password_store)."""

    admin: DatabaseUrl
    database: str
    roles: tuple[str, ...]


@contextmanager
def password_store(
    server: LocalPostgres,
    prefix: str,
    passwords: Sequence[tuple[str, str]],
    tenant_run: tuple[str, str],
    *,
    steps: int,
) -> Iterator[PasswordStore]:
    """A recorded_store (`tenant_run`: tenant, run id) and per (role prefix, password) a
    LOGIN SUPERUSER role `<role prefix>_<hex of the database name>` with that password;
    database and roles are dropped afterwards.

    The trace store's own role is a superuser too: the roles have the same rights and only
    another password, so a test can log in with a password written in any URL form.
    """
    with recorded_store(server, prefix, *tenant_run, steps=steps) as made:
        suffix = made.database.rsplit("_", 1)[1]
        roles = tuple(f"{role}_{suffix}" for role, _ in passwords)
        try:
            with psycopg.connect(made.url.libpq(), autocommit=True) as conn:
                for role, (_, password) in zip(roles, passwords, strict=True):
                    conn.execute(
                        pgsql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                            pgsql.Identifier(role), pgsql.Literal(password)
                        )
                    )
            yield PasswordStore(made.url, made.database, roles)
        finally:
            server.drop_database(made.database)  # roles go once nothing connects as them
            with psycopg.connect(server.url(driver=""), autocommit=True) as conn:
                for role in roles:
                    drop = pgsql.SQL("DROP ROLE IF EXISTS {}").format(pgsql.Identifier(role))
                    conn.execute(drop)
