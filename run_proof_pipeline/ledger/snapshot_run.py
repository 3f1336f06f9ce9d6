"""Run one ledger task in a read-only REPEATABLE READ snapshot, from synchronous code."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import async_engine
from run_proof_pipeline.store.snapshot import begin_snapshot

T = TypeVar("T")


def in_snapshot(url: DatabaseUrl, task: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    async def go() -> T:
        engine = async_engine(url)
        try:
            async with engine.connect() as conn:
                await begin_snapshot(conn)
                try:
                    return await task(conn)
                finally:
                    await conn.rollback()
        finally:
            await engine.dispose()

    return asyncio.run(go())
