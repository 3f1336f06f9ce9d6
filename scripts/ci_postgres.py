"""A throwaway PostgreSQL server for CI, with a Dagster instance stored on it.

Dagster's storage is PostgreSQL only (the project's dagster.yaml), so even loading the
definitions needs a server. This one lives in a temporary directory and is stopped (pg_ctl on
its own data directory) whatever happens, SIGTERM included.

As a script, `python scripts/ci_postgres.py -- COMMAND [ARGS...]` runs COMMAND from the project
root with DAGSTER_HOME and DAGSTER_PG_URL set for that server, and exits with its exit code.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from run_proof_pipeline.cli.dagster_env import LOCATION_VARIABLES
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.settings import DatabaseUrl

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class CiPostgres:
    server: LocalPostgres
    scratch: Path
    dagster_home: Path
    dagster_storage: DatabaseUrl

    def env(self, **extra: str) -> dict[str, str]:
        """The caller's environment without its location settings, on this server."""
        kept = {k: v for k, v in os.environ.items() if k not in LOCATION_VARIABLES}
        return {
            **kept,
            "DAGSTER_HOME": str(self.dagster_home),
            "DAGSTER_PG_URL": self.dagster_storage.psycopg2(),
            **extra,
        }


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def ci_postgres() -> Iterator[CiPostgres]:
    # A short path: the server's unix socket path must stay under 108 bytes.
    scratch = Path(tempfile.mkdtemp(prefix="rp-ci-"))
    server = LocalPostgres(scratch / "pg", fast=True)
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        server.start()
        home = scratch / "dagster_home"
        home.mkdir()
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
        storage = DatabaseUrl.parse(server.create_database("dagster"))
        yield CiPostgres(server, scratch, home, storage)
    finally:
        try:
            server.stop()
        finally:
            signal.signal(signal.SIGTERM, previous)
            shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str]) -> int:
    command = argv[1:] if argv[:1] == ["--"] else argv
    if not command:
        print("usage: ci_postgres.py -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    with ci_postgres() as pg:
        return subprocess.run(command, env=pg.env(), cwd=ROOT, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
