"""Run one ledger task in a read-only REPEATABLE READ snapshot, from synchronous code."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import run_on_connection

T = TypeVar("T")


def in_snapshot(url: DatabaseUrl, task: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """store.engine.run_on_connection in a snapshot (kept for its callers' one word)."""
    return run_on_connection(url, task, snapshot=True)
