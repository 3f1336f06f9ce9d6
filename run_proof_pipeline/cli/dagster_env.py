"""The environment Dagster commands run in: DAGSTER_HOME, its PostgreSQL storage, and the
seed's variables. Imports no Dagster itself (the CLI starts Dagster as a subprocess)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

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


def shipped_file(name: str) -> Path:
    """A file the wheel ships inside the package (pyproject's force-include: dagster.yaml),
    else, in a checkout, the one at the checkout's root."""
    package = Path(__file__).resolve().parents[1]
    shipped = package / name
    return shipped if shipped.is_file() else package.parent / name


def location_root() -> Path:
    """Where the CLI keeps its state by default: RUN_PROOF_HOME, else the working directory
    (as the embedded default server does); never the installed package's directory."""
    return Path(os.environ.get("RUN_PROOF_HOME") or Path.cwd())


def dagster_home(root: Path | None = None) -> Path:
    """A DAGSTER_HOME whose dagster.yaml is the project's own (linked, so there is one copy;
    a link left dangling by a removed install is replaced)."""
    root = root or location_root()
    home = Path(os.environ.get("DAGSTER_HOME") or root / ".run-proof" / "dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if config.is_symlink() and not config.exists():
        config.unlink()
    if not config.exists():
        config.symlink_to(shipped_file("dagster.yaml"))
    return home


WORKSPACE = """\
# Written by run-proof: the code location is the installed package.
load_from:
  - python_module:
      module_name: run_proof_pipeline.definitions
      location_name: run_proof_pipeline
"""


def workspace_file(home: Path) -> Path:
    """A workspace.yaml in `home` (DAGSTER_HOME) naming the installed code location, written
    when absent: `dagster dev -w` needs no checkout."""
    workspace = home / "workspace.yaml"
    if not workspace.exists():
        workspace.write_text(WORKSPACE, encoding="utf-8")
    return workspace


def dagster_storage_url() -> DatabaseUrl:
    """DAGSTER_PG_URL if set, else the embedded server's own `dagster` database. Set but empty
    or blank is a configuration error, as for DATABASE_URL (settings.py): a variable that
    expanded to nothing must not silently mean the embedded default."""
    configured = os.environ.get("DAGSTER_PG_URL")
    if configured is not None:
        return DatabaseUrl.parse(configured, variable="DAGSTER_PG_URL")
    from run_proof_pipeline.embedded.server import embedded_default

    # Located like the trace store's embedded default (RUN_PROOF_HOME, else the working
    # directory), so that both live on one server.
    server = embedded_default()
    server.ensure_initialized()
    server.start()
    return DatabaseUrl.parse(server.create_database(DAGSTER_DATABASE, exist_ok=True))


def dagster_environment(database: ResolvedDatabase) -> DagsterEnvironment:
    home = dagster_home()
    storage = dagster_storage_url()
    # As the plan's own default (defs/plan/ops.py report_directory): the working directory's.
    report_dir = Path(os.environ.get("RUN_PROOF_REPORT_DIR") or Path.cwd() / "reports")
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
