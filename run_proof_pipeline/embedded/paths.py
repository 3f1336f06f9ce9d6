"""Where one embedded server's files live: everything under one base directory.

::

    <base_dir>/.lock              serialises initdb/start/stop between processes (lock.py)
    <base_dir>/credentials.json   port, superuser name and password (0600; credentials.py)
    <base_dir>/server.log         postmaster log
    <base_dir>/data/              PGDATA (PG_VERSION, postgresql.conf, run_proof.conf)
    <base_dir>/socket/            unix socket directory (0700: local connections are trusted)

and where the project's own server sits: ``<project root>/.run-proof/postgres``
(docs/embedded-server.md). Pure derivation: nothing here touches the disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HOME_ENV", "MAX_SOCKET_PATH", "SETTINGS_FILE_NAME", "ServerPaths", "default_base_dir"]

HOME_ENV = "RUN_PROOF_HOME"
# The file of settings we own, included from postgresql.conf (server_conf.py).
SETTINGS_FILE_NAME = "run_proof.conf"
MAX_SOCKET_PATH = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux


@dataclass(frozen=True)
class ServerPaths:
    """The files of the server under ``base_dir`` (an absolute path)."""

    base_dir: Path

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "socket"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "server.log"

    @property
    def credentials_path(self) -> Path:
        return self.base_dir / "credentials.json"

    @property
    def lock_path(self) -> Path:
        return self.base_dir / ".lock"

    @property
    def version_file(self) -> Path:
        """Written by initdb last: its presence means the data directory is initialised."""
        return self.data_dir / "PG_VERSION"

    @property
    def postgresql_conf(self) -> Path:
        return self.data_dir / "postgresql.conf"

    @property
    def settings_file(self) -> Path:
        return self.data_dir / SETTINGS_FILE_NAME

    @property
    def initdb_password_file(self) -> Path:
        # In the socket directory: only the server's OS user (and root) can look there.
        return self.socket_dir / ".initdb-pw"

    def socket_file(self, port: int) -> Path:
        return self.socket_dir / f".s.PGSQL.{port}"

    def socket_fits(self, port: int) -> bool:
        """Whether the Unix socket's path fits ``sun_path``; a project checked out deep enough
        makes it longer, and the server then refuses to start with a socket there."""
        return len(os.fsencode(self.socket_file(port))) <= MAX_SOCKET_PATH


def default_base_dir(project_root: Path | None = None) -> Path:
    """``<project root>/.run-proof/postgres``; the project root is ``project_root``, else
    ``$RUN_PROOF_HOME``, else the working directory."""
    root = project_root or Path(os.environ.get(HOME_ENV) or Path.cwd())
    return Path(root).absolute() / ".run-proof" / "postgres"
