"""The machine's own PostgreSQL server binaries: ``RUN_PROOF_PG_BINDIR`` when set, else
``pg_config --bindir``, else the usual install paths, the newest version first
(docs/embedded-server.md, "Choosing the binaries")."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from run_proof_pipeline.embedded.errors import LocalPostgresError

__all__ = ["BINDIR_ENV", "find_system_bindir", "has_initdb"]

BINDIR_ENV = "RUN_PROOF_PG_BINDIR"
_INSTALL_PATTERNS = (
    "/usr/lib/postgresql/*/bin",
    "/usr/local/pgsql/bin",
    "/opt/homebrew/opt/postgresql*/bin",
    "/usr/local/opt/postgresql*/bin",
)


def has_initdb(bindir: Path) -> bool:
    initdb = bindir / "initdb"
    return initdb.is_file() and os.access(initdb, os.X_OK)


def _version_key(path: Path) -> tuple[int, ...]:
    # "/usr/lib/postgresql/15/bin" or ".../postgresql@16/bin"; unversioned paths rank lowest.
    match = re.search(r"postgresql@?(\d+(?:\.\d+)*)", str(path))
    return tuple(int(part) for part in match.group(1).split(".")) if match else (0,)


def find_system_bindir() -> Path:
    """The directory of the machine's ``initdb``; a ``LocalPostgresError`` naming every place
    looked at when there is none."""
    override = os.environ.get(BINDIR_ENV)
    if override:
        bindir = Path(override).expanduser()
        if not has_initdb(bindir):
            raise LocalPostgresError(
                f"{BINDIR_ENV}={override!r} does not contain an executable 'initdb'; "
                "point it at the PostgreSQL bin directory (the output of `pg_config --bindir`)."
            )
        return bindir

    looked: list[str] = []
    found = _from_pg_config(looked)
    if found is not None:
        return found
    looked.extend(_INSTALL_PATTERNS)
    candidates = [
        path
        for pattern in _INSTALL_PATTERNS
        for path in Path("/").glob(pattern.lstrip("/"))
        if has_initdb(path)
    ]
    if candidates:
        return max(candidates, key=_version_key)

    raise LocalPostgresError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found. Looked at "
        + ", ".join(looked)
        + ". Install them (Debian/Ubuntu: `apt-get install postgresql`; macOS: "
        f"`brew install postgresql@16`) or set {BINDIR_ENV} to the directory holding initdb."
    )


def _from_pg_config(looked: list[str]) -> Path | None:
    """``pg_config --bindir`` when it names a directory with ``initdb``; says in ``looked``
    what was tried."""
    pg_config = shutil.which("pg_config")
    if not pg_config:
        looked.append("pg_config on PATH (not found)")
        return None
    looked.append(f"`{pg_config} --bindir`")
    try:
        out = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return Path(out) if out and has_initdb(Path(out)) else None
