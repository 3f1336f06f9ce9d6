"""The environment Dagster commands run in: DAGSTER_HOME, its PostgreSQL storage, and the
seed's variables. Imports no Dagster itself (the CLI starts Dagster as a subprocess)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from run_proof_pipeline.plan.coordinator_tests import project_root
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import ResolvedDatabase

DAGSTER_DATABASE = "dagster"
# Every setting that decides which databases and directories the plan uses (scripts and
# tests clear them, so that a developer's shell cannot point a check elsewhere).
LOCATION_VARIABLES = (
    "DATABASE_URL",
    "USE_POSTGRES_TRACES",
    "DAGSTER_HOME",
    "DAGSTER_PG_URL",
    "RUN_PROOF_HOME",
    "RUN_PROOF_REPORT_DIR",
)


def plan_execute_command() -> list[str]:
    """The plan's CI path: `dagster job execute` with this Python's dagster."""
    return [
        str(Path(sys.executable).with_name("dagster")),
        "job",
        "execute",
        "-m",
        "run_proof_pipeline.definitions",
        "-j",
        "run_proof_plan",
    ]


@dataclass(frozen=True)
class DagsterEnvironment:
    home: Path
    storage_url: DatabaseUrl
    report_dir: Path
    env: dict[str, str]


def dagster_home(root: Path | None = None) -> Path:
    """A DAGSTER_HOME whose dagster.yaml is the project's own (linked, so there is one copy)."""
    root = root or project_root()
    home = Path(os.environ.get("DAGSTER_HOME") or root / ".run-proof" / "dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.symlink_to(root / "dagster.yaml")
    return home


def dagster_storage_url() -> DatabaseUrl:
    """DAGSTER_PG_URL if set, else the embedded server's own `dagster` database. Set but empty
    or blank is a configuration error, as for DATABASE_URL (settings.py): a variable that
    expanded to nothing must not silently mean the embedded default."""
    configured = os.environ.get("DAGSTER_PG_URL")
    if configured is not None:
        return DatabaseUrl.parse(configured, variable="DAGSTER_PG_URL")
    from run_proof_pipeline.local_postgres import embedded_default

    # Located like the trace store's embedded default (RUN_PROOF_HOME, else the working
    # directory), so that both live on one server.
    server = embedded_default()
    server.ensure_initialized()
    server.start()
    return DatabaseUrl.parse(server.create_database(DAGSTER_DATABASE, exist_ok=True))


def dagster_environment(database: ResolvedDatabase) -> DagsterEnvironment:
    root = project_root()
    home = dagster_home(root)
    storage = dagster_storage_url()
    report_dir = Path(os.environ.get("RUN_PROOF_REPORT_DIR") or root / "reports")
    # The URLs go to the Dagster process in its environment only (never on its command line,
    # in run config or in tags, which Dagster stores): its steps show them redacted.
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": storage.psycopg2(),
        "DATABASE_URL": database.url.libpq(),
        "USE_POSTGRES_TRACES": "true",
        "RUN_PROOF_REPORT_DIR": str(report_dir),
    }
    return DagsterEnvironment(home, storage, report_dir, env)
