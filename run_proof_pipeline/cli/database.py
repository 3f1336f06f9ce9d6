"""Which database a command works on, said on its first line of output, and the embedded
default made ready (migrated, seeded) for the commands that use it implicitly. Shared by
every command module, which import it instead of each other (docs/architecture.md)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from run_proof_pipeline.store.engine import ResolvedDatabase, resolve_database, run_on_engine

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


def announced_database(*, machine_output: bool = False) -> ResolvedDatabase:
    resolved = resolve_database()
    # First line of output, so nobody mistakes the demo database for theirs; on stderr when
    # stdout must stay machine-readable.
    print(resolved.banner(), file=sys.stderr if machine_output else sys.stdout)
    return resolved


def embedded_store_ready(resolved: ResolvedDatabase) -> None:
    """The embedded default is ours: migrate it and seed demo traces when it is empty.
    A user's own database is never migrated or seeded implicitly."""
    from run_proof_pipeline.demo import seed_demo, store_is_empty
    from run_proof_pipeline.store.migrate import upgrade

    upgrade(resolved.url)

    async def seed(engine: AsyncEngine) -> None:
        if await store_is_empty(engine):
            summary = await seed_demo(engine)
            print(f"seeded {summary.traces} demo traces ({summary.steps} steps)")

    run_on_engine(resolved.url, seed)
