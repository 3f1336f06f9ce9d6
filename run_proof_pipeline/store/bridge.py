"""The one sync/async bridge (docs/architecture.md, "A proof"): `run_sync`, which the store's
ways in (store/engine.py: run_on_connection, run_on_engine, run_in_session) and the worker
pool (proof/workers.py) are built on.

A module of its own, importing nothing but asyncio: a worker process imports the pool first,
and SQLAlchemy would add over a second to every worker's start-up (measured: importing
proof.workers took 1.8-2.1 s with store/engine.py's imports, against 0.5 s for a segment
worker's own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")


def run_sync(work: Callable[[], Awaitable[T]]) -> T:
    """The one bridge from synchronous code (Dagster ops, schedules, sensors, the CLI, a
    sweep, a worker pool) to async work: `work()` runs in an event loop of its own, made and
    closed here. A loop per call, because an async connection belongs to the loop that opened
    it (see store/engine.py async_engine); no other module calls asyncio.run
    (run_proof_pipeline_tests/test_async_bridge.py checks that)."""

    async def go() -> T:
        return await work()

    return asyncio.run(go())
