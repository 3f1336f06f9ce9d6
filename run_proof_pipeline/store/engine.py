"""Connections to the trace store: which database, and sessions on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from run_proof_pipeline.settings import DatabaseUrl, Settings, load_settings
from run_proof_pipeline.store.bridge import run_sync
from run_proof_pipeline.store.session_pins import startup_options
from run_proof_pipeline.store.snapshot import begin_snapshot

EMBEDDED_DATABASE = "run_proof"
T = TypeVar("T")


@dataclass(frozen=True)
class ResolvedDatabase:
    url: DatabaseUrl
    embedded: bool

    def banner(self) -> str:
        """The first line CLI commands print, so nobody mistakes the demo database for theirs.
        `redacted()` masks the password wherever it sits (user:password@, ?password=)."""
        if self.embedded:
            return (
                f"Using the embedded default PostgreSQL ({self.url.redacted()}); "
                "set DATABASE_URL to use your own database."
            )
        return f"Using DATABASE_URL={self.url.redacted()}"


def embedded_database_url() -> DatabaseUrl:
    """Start (or reuse) the project's own PostgreSQL server and return its trace database."""
    from run_proof_pipeline.embedded.server import embedded_default

    server = embedded_default()
    server.ensure_initialized()
    server.start()
    return DatabaseUrl.parse(server.create_database(EMBEDDED_DATABASE, exist_ok=True))


def resolve_database(settings: Settings | None = None) -> ResolvedDatabase:
    settings = settings or load_settings()
    url = settings.database_url()
    if url is not None:
        return ResolvedDatabase(url, embedded=False)
    return ResolvedDatabase(embedded_database_url(), embedded=True)


def async_engine(url: DatabaseUrl) -> AsyncEngine:
    # NullPool: async connections are bound to the event loop that opened them, and callers
    # (Dagster ops, the CLI) each run their own loop; a pool would hand out dead connections.
    # Every connection starts with the pinned settings (store/session_pins.py).
    # The parsed URL itself, not its text: nothing is parsed twice (settings.py decides what
    # each part means, once).
    return create_async_engine(
        url.url, poolclass=NullPool, connect_args={"options": startup_options()}
    )


def sync_engine(url: DatabaseUrl, *, ddl: bool = False) -> Engine:
    """`ddl=True` for migrations, which create objects in the store's schema."""
    return create_engine(
        url.url, poolclass=NullPool, connect_args={"options": startup_options(ddl=ddl)}
    )


@asynccontextmanager
async def session_scope(url: DatabaseUrl) -> AsyncIterator[AsyncSession]:
    engine = async_engine(url)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            yield session
    finally:
        await engine.dispose()


@asynccontextmanager
async def get_session() -> AsyncIterator[AsyncSession]:
    """The seed's `app.db.get_session`: a session on DATABASE_URL (or the embedded default)."""
    async with session_scope(resolve_database().url) as session:
        yield session


def run_on_engine(url: DatabaseUrl, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """run_sync with an engine on `url`, disposed whatever happens (the adopt, retire and
    seed commands open their own transactions on it)."""

    async def go() -> T:
        engine = async_engine(url)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return run_sync(go)


def run_in_session(url: DatabaseUrl | None, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """run_sync with a session, as the coordinator is called (it takes its own snapshot and
    starts its segment workers from the session). `url=None`: `get_session()`, the plan's
    production path on DATABASE_URL or the embedded default (docs/test-plan.md, Step 3)."""

    async def go() -> T:
        async with get_session() if url is None else session_scope(url) as session:
            return await work(session)

    return run_sync(go)


def run_on_connection(
    url: DatabaseUrl,
    work: Callable[[AsyncConnection], Awaitable[T]],
    *,
    snapshot: bool = False,
) -> T:
    """run_sync on one new connection of `url`. `snapshot=True`: in a read-only REPEATABLE
    READ snapshot under the pinned settings (store.snapshot.begin_snapshot), rolled back
    after `work`."""

    async def on(engine: AsyncEngine) -> T:
        async with engine.connect() as conn:
            if not snapshot:
                return await work(conn)
            await begin_snapshot(conn)
            try:
                return await work(conn)
            finally:
                await conn.rollback()

    return run_on_engine(url, on)
