"""The server's identity: its port, superuser and password, kept in ``credentials.json``
(0600) so that every process sharing a base directory talks to the same server, and the URL
they connect with.

TCP connections (127.0.0.1 only) require this password (scram-sha-256); an existing
cluster's identity is fixed once written.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from run_proof_pipeline.embedded.errors import LocalPostgresError
from run_proof_pipeline.embedded.paths import ServerPaths
from run_proof_pipeline.embedded.ports import pick_free_port

__all__ = ["Credentials", "WantedIdentity", "load_or_create_credentials"]


@dataclass(frozen=True)
class Credentials:
    port: int
    user: str
    password: str

    def url(self, dbname: str = "postgres", driver: str = "psycopg") -> str:
        """SQLAlchemy-style URL; ``driver=""`` gives a plain libpq ``postgresql://`` URL."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return (
            f"{scheme}://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@127.0.0.1:{self.port}/{quote(dbname, safe='')}"
        )


@dataclass(frozen=True)
class WantedIdentity:
    """What the caller asked for; None leaves the choice to us (a free port, a random
    password) or, for an existing cluster, to what it already has."""

    port: int | None
    user: str
    password: str | None


def load_or_create_credentials(paths: ServerPaths, wanted: WantedIdentity) -> Credentials:
    """The stored credentials, checked against ``wanted``; written first when there are none.
    The caller holds the base directory's lock."""
    if paths.credentials_path.exists():
        creds = _read(paths.credentials_path)
        _check_identity(paths, creds, wanted)
        return creds
    creds = Credentials(
        port=wanted.port or pick_free_port(),
        user=wanted.user,
        password=wanted.password or secrets.token_urlsafe(24),
    )
    _write(paths.credentials_path, creds)
    return creds


def _read(path: Path) -> Credentials:
    try:
        raw = json.loads(path.read_text())
        return Credentials(int(raw["port"]), str(raw["user"]), str(raw["password"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LocalPostgresError(f"unreadable credentials file {path}: {exc}") from exc


def _check_identity(paths: ServerPaths, creds: Credentials, wanted: WantedIdentity) -> None:
    # An existing cluster's identity is fixed: silently switching port or user would
    # leave callers talking to a different server than the one they configured.
    for field, stored, asked in (
        ("port", creds.port, wanted.port),
        ("password", creds.password, wanted.password),
    ):
        if asked is not None and stored != asked:
            raise LocalPostgresError(
                f"{paths.base_dir} is already set up with a different {field} "
                f"(see {paths.credentials_path}); omit {field}= or use another base_dir"
            )
    if creds.user != wanted.user:
        raise LocalPostgresError(
            f"{paths.base_dir} is already set up for user {creds.user!r}, not {wanted.user!r}"
        )


def _write(path: Path, creds: Credentials) -> None:
    # Written aside and renamed, so a reader never sees half a file.
    tmp = path.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)  # O_CREAT mode is filtered by umask; be explicit
        json.dump({"port": creds.port, "user": creds.user, "password": creds.password}, fh)
        fh.write("\n")
    os.replace(tmp, path)
