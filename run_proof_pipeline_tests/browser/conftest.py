"""Session fixtures for the browser tests: a seeded trace store, Dagster's storage, a
dagster-webserver and dagster-daemon on a free loopback port, and Chromium.

Everything runs on the session's throwaway PostgreSQL (`pg_server`); the servers are child
processes stopped by their own handles in finalizers, whether the tests pass or fail.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from run_proof_pipeline.demo import seed_demo
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import async_engine
from run_proof_pipeline.store.migrate import upgrade
from run_proof_pipeline_tests.support.chromium import (
    CHROMIUM_ARGS,
    CHROMIUM_ENV,
    VIEWPORT,
    Screenshots,
    find_chromium,
)
from run_proof_pipeline_tests.support.dagster_ui import DagsterUI, free_port, start_dagster_ui

# The first page load compiles nothing but still takes 10-40 s on two busy cores.
PAGE_TIMEOUT_MS = 90_000


@dataclass(frozen=True)
class TraceTarget:
    tenant_id: str
    run_id: str
    chain_length: int


@dataclass(frozen=True)
class UIStore:
    """The seeded trace store the UI's runs prove, and the runs the tests aim at."""

    url: DatabaseUrl
    verified: TraceTarget  # the demo's latest run: proven from the Launchpad
    to_tamper: TraceTarget  # another sealed run: proven, altered, proven again


def _target(url: DatabaseUrl, where: str, params: tuple[object, ...]) -> TraceTarget:
    with psycopg.connect(url.libpq()) as conn:
        row = conn.execute(
            "SELECT tenant_id, run_id, chain_length FROM aos_traces "
            f"WHERE {where} ORDER BY started_at LIMIT 1",
            params,
        ).fetchone()
    assert row is not None, f"the demo seed has no trace where {where}"
    return TraceTarget(str(row[0]), str(row[1]), int(row[2]))


@pytest.fixture(scope="package")
def chromium_executable() -> str:
    found = find_chromium()
    if found is None:
        pytest.skip(
            f"no Chromium binary (install Debian's: apt-get install chromium, or set "
            f"{CHROMIUM_ENV}); Playwright's own browser download is not used"
        )
    return found


@pytest.fixture(scope="package")
def ui_store(pg_server: LocalPostgres) -> UIStore:
    # Unique names: under pytest-xdist a worker may leave this package and come back to it,
    # building the package's fixtures again on the same server.
    name = f"browser_traces_{uuid.uuid4().hex[:8]}"
    url = DatabaseUrl.parse(pg_server.create_database(name, exist_ok=False))
    upgrade(url)

    async def seed() -> str:
        engine = async_engine(url)
        try:
            return (await seed_demo(engine)).latest_run_id
        finally:
            await engine.dispose()

    latest = asyncio.run(seed())
    verified = _target(url, "run_id = %s", (latest,))
    # At least five steps, so that altering step 3 leaves a chain that is visibly cut short.
    to_tamper = _target(
        url, "seal_hash IS NOT NULL AND chain_length >= 5 AND run_id <> %s", (latest,)
    )
    return UIStore(url, verified, to_tamper)


@pytest.fixture(scope="package")
def dagster_ui(
    chromium_executable: str,
    pg_server: LocalPostgres,
    ui_store: UIStore,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> DagsterUI:
    """dagster-webserver + dagster-daemon (launches from the UI are queued: the daemon runs
    them) on the project's dagster.yaml, with Dagster's storage in its own database."""
    storage = DatabaseUrl.parse(
        pg_server.create_database(f"browser_dagster_{uuid.uuid4().hex[:8]}", exist_ok=False)
    )
    home = tmp_path_factory.mktemp("browser_dagster_home")
    reports = tmp_path_factory.mktemp("browser_reports")
    logs = tmp_path_factory.mktemp("browser_server_logs")
    port = free_port()
    ui = DagsterUI(f"http://127.0.0.1:{port}", home, reports)
    # Registered before anything starts, so a half-started pair is stopped too.
    request.addfinalizer(ui.stop)
    start_dagster_ui(ui, ui_store.url, storage, logs, port)
    return ui


@pytest.fixture(scope="package")
def playwright_session(dagster_ui: DagsterUI) -> Iterator[Playwright]:
    # expect() has its own 5 s default, too short for a first render on two busy cores.
    expect.set_options(timeout=PAGE_TIMEOUT_MS)
    # Started after the servers and the seeding (which uses asyncio.run): Playwright's sync
    # API keeps an event loop of its own in this thread from here on.
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="package")
def browser(playwright_session: Playwright, chromium_executable: str) -> Iterator[Browser]:
    browser = playwright_session.chromium.launch(
        executable_path=chromium_executable, args=CHROMIUM_ARGS
    )
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="package")
def screenshots(pg_server: LocalPostgres) -> Screenshots:
    return Screenshots.from_env(secret=pg_server.password)
