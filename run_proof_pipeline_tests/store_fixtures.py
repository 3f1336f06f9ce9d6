"""Fixtures for tests that need a migrated trace store on the throwaway server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg import sql as pgsql

from run_proof_pipeline.coordinator import (
    RunProofCoordinator,
    RunProofResult,
    get_run_proof_coordinator,
)
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import async_engine, session_scope
from run_proof_pipeline.store.migrate import upgrade
from run_proof_pipeline.store.recorder import StepAppend, TraceRecorder, TraceStart
from run_proof_pipeline_tests.v1_writer import V1TraceWriter

T = TypeVar("T")
BASE = datetime(2026, 2, 9, 10, 0, tzinfo=UTC)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def make_step(index: int, *, at: datetime | None = None, **overrides: Any) -> StepAppend:
    fields: dict[str, Any] = {
        "skill_id": "skill.http_call",
        "skill_name": "http_call",
        "params": {"url": "https://example.invalid/api", "attempt": index, "note": "café ✓"},
        "status": "succeeded",
        "outcome_category": "success",
        "outcome_code": "200",
        "outcome_data": {"bytes": 1000 + index, "ok": True, "ratio": 0.1 * index},
        "cost_cents": 0.5,
        "duration_ms": 227.6,
        "retry_count": 0,
        "timestamp": at or BASE + timedelta(seconds=index, microseconds=123456),
    }
    fields.update(overrides)
    return StepAppend(**fields)


async def record_run_async(
    url: DatabaseUrl,
    tenant_id: str,
    run_id: str,
    *,
    steps: int = 3,
    seal: bool = True,
    started_at: datetime = BASE,
    status: str = "succeeded",
    step_fields: Callable[[int], dict[str, Any]] | None = None,
    plan: dict[str, Any] | None = None,
    chain_format: int = 2,
) -> str:
    """A run as TraceRecorder writes it (`chain_format` 2: chained by the database, format
    v2) or as the format-v1 recorder did (1: run_proof_pipeline_tests/v1_writer.py, the rows
    of a store recorded before migration 0006); `step_fields(i)` overrides fields of step i."""
    if chain_format not in (1, 2):
        raise ValueError(f"chain_format {chain_format!r}: 1 or 2")
    engine = async_engine(url)
    try:
        recorder = TraceRecorder(engine) if chain_format == 2 else V1TraceWriter(engine)
        trace_id = await recorder.start_trace(
            TraceStart(
                tenant_id=tenant_id,
                run_id=run_id,
                trace_id=f"trace-{run_id}",
                agent_id="agent-7",
                plan_id="plan-42",
                plan={"goal": "fetch and summarize"} if plan is None else plan,
                started_at=started_at,
            )
        )
        for index in range(steps):
            await recorder.append_step(
                tenant_id,
                run_id,
                make_step(
                    index,
                    at=started_at + timedelta(seconds=index),
                    **({} if step_fields is None else step_fields(index)),
                ),
            )
        if seal:
            await recorder.seal(
                tenant_id, run_id, status=status, completed_at=started_at + timedelta(hours=1)
            )
        return trace_id
    finally:
        await engine.dispose()


def record_run(url: DatabaseUrl, tenant_id: str, run_id: str, **kwargs: Any) -> str:
    return run(record_run_async(url, tenant_id, run_id, **kwargs))


def prove(
    url: DatabaseUrl,
    tenant_id: str,
    run_id: str,
    *,
    coordinator: RunProofCoordinator | None = None,
    **kwargs: Any,
) -> RunProofResult:
    """The run's proof by `coordinator` (default: get_run_proof_coordinator())."""
    chosen = get_run_proof_coordinator() if coordinator is None else coordinator

    async def go() -> RunProofResult:
        async with session_scope(url) as session:
            return await chosen.get_run_proof(session, tenant_id, run_id, **kwargs)

    return run(go())


def owner_sql(url: DatabaseUrl, sql: str, params: tuple[Any, ...] = (), *, table: str) -> int:
    """Run a tampering statement as the table owner with the append-only trigger of `table`
    disabled, the way an owner could; returns the number of rows it touched."""
    triggers = {
        "aos_trace_steps": "aos_trace_steps_append_only",
        "aos_traces": "aos_traces_seal_once",
    }
    with psycopg.connect(url.libpq()) as conn:
        conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER {triggers[table]}")
        cursor = conn.execute(sql, params)
        touched = cursor.rowcount
        conn.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {triggers[table]}")
    return touched


@dataclass(frozen=True)
class RecordedStore:
    """A database of its own, migrated, holding one recorded run (see recorded_store)."""

    database: str
    url: DatabaseUrl


@contextmanager
def recorded_store(
    server: LocalPostgres, prefix: str, tenant_id: str, run_id: str, *, steps: int
) -> Iterator[RecordedStore]:
    """Database `<prefix>_<12 hex>` on `server`, migrated, holding the sealed run
    (`tenant_id`, `run_id`) of `steps` steps; dropped afterwards. For a module's fixture
    when the cases only read the store, or a test's when it alters it."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    url = DatabaseUrl.parse(server.create_database(name, exist_ok=False))
    try:
        upgrade(url)
        record_run(url, tenant_id, run_id, steps=steps)
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


@pytest.fixture
def store(new_database: Any) -> Iterator[DatabaseUrl]:
    """A new database with the trace store migrated to head."""
    url = DatabaseUrl.parse(new_database("store"))
    upgrade(url)
    yield url
