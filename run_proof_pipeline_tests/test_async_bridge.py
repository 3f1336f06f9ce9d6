"""The one sync/async bridge (store/bridge.py: run_sync; store/engine.py: the helpers built
on it): no other module starts an event loop, and the helpers give their work what they
promise, on a real server (docs/architecture.md, "A proof")."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

import run_proof_pipeline
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.bridge import run_sync
from run_proof_pipeline.store.engine import run_in_session, run_on_connection, run_on_engine

PACKAGE = Path(run_proof_pipeline.__file__).parent
BRIDGE = PACKAGE / "store" / "bridge.py"
# What starts (or drives) an event loop of its own.
LOOP_STARTERS = {"run", "run_until_complete", "new_event_loop", "Runner"}


def _loop_starts(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in LOOP_STARTERS
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "asyncio"
        ) or (isinstance(node, ast.Attribute) and node.attr == "run_until_complete"):
            found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_only_the_bridge_starts_an_event_loop() -> None:
    starts = {str(p): _loop_starts(p) for p in sorted(PACKAGE.rglob("*.py"))}
    assert starts.pop(str(BRIDGE)) == [f"run_proof_pipeline/store/bridge.py:{_bridge_line()}"]
    assert [where for found in starts.values() for where in found] == []


def _bridge_line() -> int:
    (line,) = [
        i
        for i, text_line in enumerate(BRIDGE.read_text().splitlines(), 1)
        if "asyncio.run(" in text_line and not text_line.lstrip().startswith("#")
    ]
    return line


def test_the_scan_sees_a_loop_started_elsewhere(tmp_path: Path) -> None:
    # The check above must be able to fail: a module that calls asyncio.run is reported.
    module = tmp_path / "rogue.py"
    module.write_text("import asyncio\n\nasyncio.run(main())\nloop.run_until_complete(x)\n")
    assert _loop_starts(module, tmp_path) == ["rogue.py:3", "rogue.py:4"]


def test_run_sync_returns_the_result_and_raises_the_error() -> None:
    async def answer() -> int:
        return 42

    async def broken() -> int:
        raise LookupError("no such run")

    assert run_sync(answer) == 42
    with pytest.raises(LookupError, match="no such run"):
        run_sync(broken)


def test_run_on_connection_in_a_snapshot_is_read_only_repeatable_read(store: DatabaseUrl) -> None:
    async def isolation(conn: AsyncConnection) -> tuple[str, str]:
        level = (await conn.execute(text("SHOW transaction_isolation"))).scalar_one()
        read_only = (await conn.execute(text("SHOW transaction_read_only"))).scalar_one()
        return level, read_only

    assert run_on_connection(store, isolation, snapshot=True) == ("repeatable read", "on")
    assert run_on_connection(store, isolation)[1] == "off"

    async def write(conn: AsyncConnection) -> None:
        await conn.execute(text("CREATE TABLE written_in_a_snapshot (x int)"))

    with pytest.raises(DBAPIError, match="read-only transaction"):
        run_on_connection(store, write, snapshot=True)


def test_run_on_engine_and_run_in_session_reach_the_store(store: DatabaseUrl) -> None:
    async def on_engine(engine: AsyncEngine) -> str:
        async with engine.connect() as conn:
            return str((await conn.execute(text("SELECT current_database()"))).scalar_one())

    async def in_session(session: AsyncSession) -> str:
        return str((await session.execute(text("SELECT current_database()"))).scalar_one())

    assert run_on_engine(store, on_engine) == store.url.database
    assert run_in_session(store, in_session) == store.url.database


def test_the_worker_pool_starts_without_sqlalchemy() -> None:
    # Every worker is a fresh interpreter that imports the pool first (proof/workers.py):
    # SQLAlchemy there cost each worker over a second of start-up (store/bridge.py).
    probe = (
        "import sys, run_proof_pipeline.proof.workers; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sqlalchemy'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
