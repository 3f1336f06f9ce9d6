"""Manage a local, real PostgreSQL server owned by this project: ``LocalPostgres``, and the
project's own one (``embedded_default``).

The server lives entirely under one base directory::

    <base_dir>/data/              PGDATA
    <base_dir>/socket/            unix socket directory (0700: local connections are trusted)
    <base_dir>/server.log         postmaster log
    <base_dir>/credentials.json   port, superuser name and password (0600)

TCP connections (127.0.0.1 only) require the password (scram-sha-256); the unix socket
uses ``trust`` but sits in a directory only the server's OS user (and root) can enter.

PostgreSQL refuses to run as root, so when this process is root the data and socket
directories are handed to the ``postgres`` OS user and every server binary is run through
``runuser -u postgres --``.

``LocalPostgres`` only orchestrates, under the base directory's lock (``lock.py``); each
concern has its module: where the files are (``paths.py``), the identity and URL
(``credentials.py``), which binaries (``binaries.py``), as whom they run (``os_user.py``)
and how (``commands.py``), initdb (``cluster.py``) and our settings (``server_conf.py``),
pg_ctl (``control.py``), databases (``databases.py``).
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg

from run_proof_pipeline.embedded import cluster, control
from run_proof_pipeline.embedded.binaries import ServerBinaries, find_pg_bindir
from run_proof_pipeline.embedded.commands import ServerCommands
from run_proof_pipeline.embedded.credentials import (
    Credentials,
    WantedIdentity,
    load_or_create_credentials,
)
from run_proof_pipeline.embedded.databases import create_database, drop_database
from run_proof_pipeline.embedded.errors import LocalPostgresError
from run_proof_pipeline.embedded.lock import base_dir_lock
from run_proof_pipeline.embedded.os_user import ServerUser
from run_proof_pipeline.embedded.paths import ServerPaths, default_base_dir
from run_proof_pipeline.embedded.ports import port_is_free
from run_proof_pipeline.embedded.server_conf import write_server_settings

__all__ = [
    "DEFAULT_EMBEDDED_PORT",
    "LocalPostgres",
    "LocalPostgresError",
    "embedded_default",
    "find_pg_bindir",
]

DEFAULT_EMBEDDED_PORT = 55432


class LocalPostgres:
    """One PostgreSQL cluster under ``base_dir``, started and stopped with ``pg_ctl``."""

    def __init__(
        self,
        base_dir: Path,
        *,
        port: int | None = None,
        user: str = "run_proof",
        password: str | None = None,
        fast: bool = False,
    ) -> None:
        self.paths = ServerPaths(Path(base_dir).absolute())
        self.fast = fast
        self._wanted = WantedIdentity(port=port, user=user, password=password)
        self._creds: Credentials | None = None
        # Resolved lazily so that url()/credentials work on machines without server binaries.
        self._binaries = ServerBinaries()
        self.commands = ServerCommands(self._binaries, ServerUser(self._binaries), self.paths)

    def __repr__(self) -> str:
        return f"LocalPostgres({str(self.base_dir)!r})"

    # -- where its files are -----------------------------------------------------------------

    @property
    def base_dir(self) -> Path:
        return self.paths.base_dir

    @property
    def data_dir(self) -> Path:
        return self.paths.data_dir

    @property
    def socket_dir(self) -> Path:
        return self.paths.socket_dir

    @property
    def log_path(self) -> Path:
        return self.paths.log_path

    @property
    def credentials_path(self) -> Path:
        return self.paths.credentials_path

    # -- credentials, URLs and databases -----------------------------------------------------

    @property
    def port(self) -> int:
        return self._credentials().port

    @property
    def user(self) -> str:
        return self._credentials().user

    @property
    def password(self) -> str:
        return self._credentials().password

    def _credentials(self) -> Credentials:
        if self._creds is None:
            with base_dir_lock(self.paths):
                return self._credentials_locked()
        return self._creds

    def _credentials_locked(self) -> Credentials:
        if self._creds is None:
            self._creds = load_or_create_credentials(self.paths, self._wanted)
        return self._creds

    def url(self, dbname: str = "postgres", driver: str = "psycopg") -> str:
        """SQLAlchemy-style URL; ``driver=""`` gives a plain libpq ``postgresql://`` URL."""
        return self._credentials().url(dbname, driver)

    def _admin_connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url(driver=""), autocommit=True, connect_timeout=10)

    def create_database(self, name: str, *, exist_ok: bool = True) -> str:
        """Create database ``name`` (from template0) and return its psycopg URL."""
        create_database(self._admin_connect, name, exist_ok=exist_ok)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, disconnecting any sessions still using it."""
        drop_database(self._admin_connect, name)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def bindir(self) -> Path:
        return self._binaries.bindir

    def is_initialized(self) -> bool:
        return cluster.is_initialized(self.paths)

    def ensure_initialized(self) -> None:
        """Run initdb once; later calls do nothing (start rewrites our settings file)."""
        with base_dir_lock(self.paths):
            self._ensure_initialized_locked()

    def _ensure_initialized_locked(self) -> None:
        creds = self._credentials_locked()
        if not self.is_initialized():
            cluster.initialize(self.paths, creds, self.commands, fast=self.fast)

    def start(self, timeout: float = 30) -> None:
        """Start the server unless it is already running; returns once it accepts connections."""
        with base_dir_lock(self.paths):
            self._ensure_initialized_locked()
            if control.is_running(self.commands):
                return
            cluster.check_data_version(self.paths, self.commands)
            creds = self._credentials_locked()
            write_server_settings(self.paths, creds.port, fast=self.fast, user=self.commands.user)
            control.start(self.commands, creds.port, timeout)

    def stop(self, timeout: float = 60) -> None:
        """Fast shutdown (roll back open transactions, checkpoint); no-op if not running."""
        with base_dir_lock(self.paths):
            if self.is_running():
                control.stop(self.commands, timeout)

    def is_running(self) -> bool:
        return self.is_initialized() and control.is_running(self.commands)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def embedded_default(project_root: Path | None = None) -> LocalPostgres:
    """The project's own server at ``<project root>/.run-proof/postgres``.

    The project root is ``project_root``, else ``$RUN_PROOF_HOME``, else the working directory.
    """
    base_dir = default_base_dir(project_root)
    if ServerPaths(base_dir).credentials_path.exists():
        return LocalPostgres(base_dir)
    # First use: prefer a stable, memorable port; fall back to any free one.
    return LocalPostgres(
        base_dir, port=DEFAULT_EMBEDDED_PORT if port_is_free(DEFAULT_EMBEDDED_PORT) else None
    )
