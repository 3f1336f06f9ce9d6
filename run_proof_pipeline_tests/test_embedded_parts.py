"""The parts LocalPostgres is made of (run_proof_pipeline/embedded/), each on its own: where
its files are, its credentials and URL, ports, our settings file, database names, how a
binary runs as the server user and how its failure reads, the data-version check and
pg_ctl's status. Real files, sockets, processes and binaries; no mocks."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from run_proof_pipeline.embedded import cluster, control
from run_proof_pipeline.embedded.binaries import ServerBinaries, server_major
from run_proof_pipeline.embedded.commands import ServerCommands
from run_proof_pipeline.embedded.credentials import (
    Credentials,
    WantedIdentity,
    load_or_create_credentials,
)
from run_proof_pipeline.embedded.databases import validate_db_name
from run_proof_pipeline.embedded.errors import LocalPostgresError
from run_proof_pipeline.embedded.os_user import ROOT_SERVER_OS_USER, ServerUser, grant_traverse
from run_proof_pipeline.embedded.paths import MAX_SOCKET_PATH, ServerPaths, default_base_dir
from run_proof_pipeline.embedded.ports import pick_free_port, port_is_free
from run_proof_pipeline.embedded.server_conf import (
    include_server_settings,
    server_settings,
    write_server_settings,
)

AS_ROOT = os.geteuid() == 0
ODD_PASSWORD = "p@ss:w/rd %?#&'\""


def _commands(base_dir: Path) -> ServerCommands:
    # The base directory exists before any command runs (LocalPostgres's lock makes it).
    base_dir.mkdir(parents=True, exist_ok=True)
    binaries = ServerBinaries()
    return ServerCommands(binaries, ServerUser(binaries), ServerPaths(base_dir))


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


# -- paths -------------------------------------------------------------------------------------


def test_the_files_of_a_server_are_where_the_docs_say(tmp_path: Path) -> None:
    paths = ServerPaths(tmp_path)
    under = {
        "data_dir": "data",
        "socket_dir": "socket",
        "log_path": "server.log",
        "credentials_path": "credentials.json",
        "lock_path": ".lock",
        "version_file": "data/PG_VERSION",
        "postgresql_conf": "data/postgresql.conf",
        "settings_file": "data/run_proof.conf",
        "initdb_password_file": "socket/.initdb-pw",
    }
    assert {name: str(getattr(paths, name).relative_to(tmp_path)) for name in under} == under
    assert paths.socket_file(5432) == tmp_path / "socket" / ".s.PGSQL.5432"


def test_a_socket_path_fits_up_to_107_bytes(tmp_path: Path) -> None:
    # `<tmp>/<pad>/socket/.s.PGSQL.5432`: pad the middle to land exactly on the limit.
    suffix = len(os.fsencode(ServerPaths(Path("/")).socket_file(5432)))  # "/socket/..."
    pad = MAX_SOCKET_PATH - suffix - len(os.fsencode(tmp_path)) - 1
    assert pad > 0
    at_limit = ServerPaths(tmp_path / ("x" * pad))
    assert len(os.fsencode(at_limit.socket_file(5432))) == MAX_SOCKET_PATH
    assert at_limit.socket_fits(5432)
    assert not at_limit.socket_fits(54321)  # one digit more: 108 bytes


def test_the_default_base_dir_prefers_the_argument_then_the_home_then_the_cwd(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUN_PROOF_HOME", "home")  # relative: made absolute against the cwd
    assert default_base_dir(Path("given")) == tmp_path / "given" / ".run-proof" / "postgres"
    assert default_base_dir() == tmp_path / "home" / ".run-proof" / "postgres"
    monkeypatch.setenv("RUN_PROOF_HOME", "")  # set but empty is the cwd, as before
    assert default_base_dir() == tmp_path / ".run-proof" / "postgres"


# -- credentials and URL -----------------------------------------------------------------------


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_new_credentials_are_written_0600_whatever_the_umask(
    tmp_path: Path, permissive_umask: None
) -> None:
    paths = ServerPaths(tmp_path)
    creds = load_or_create_credentials(paths, WantedIdentity(port=None, user="u", password=None))
    assert stat.S_IMODE(paths.credentials_path.stat().st_mode) == 0o600
    assert json.loads(paths.credentials_path.read_text()) == {
        "port": creds.port,
        "user": "u",
        "password": creds.password,
    }
    assert len(creds.password) >= 32 and creds.port > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["credentials.json"]  # no .tmp left
    again = load_or_create_credentials(paths, WantedIdentity(port=None, user="u", password=None))
    assert again == creds


@pytest.mark.parametrize(
    ("wanted", "message"),
    [
        (WantedIdentity(port=2, user="u", password=None), "already set up with a different port"),
        (
            WantedIdentity(port=None, user="u", password="0therPw9"),
            "already set up with a different password",
        ),
        (
            WantedIdentity(port=None, user="v", password=None),
            "already set up for user 'u', not 'v'",
        ),
    ],
)
def test_an_existing_identity_is_fixed(
    tmp_path: Path, wanted: WantedIdentity, message: str
) -> None:
    paths = ServerPaths(tmp_path)
    load_or_create_credentials(paths, WantedIdentity(port=1, user="u", password="S3cretPw9"))
    with pytest.raises(LocalPostgresError, match=message) as caught:
        load_or_create_credentials(paths, wanted)
    assert str(caught.value).startswith(str(tmp_path))
    assert "S3cretPw9" not in str(caught.value) and "0therPw9" not in str(caught.value)


@pytest.mark.parametrize("text", ["not json", '{"port": 1, "user": "u"}', '{"port": "x"}', "[]"])
def test_an_unreadable_credentials_file_is_one_error(tmp_path: Path, text: str) -> None:
    paths = ServerPaths(tmp_path)
    paths.credentials_path.write_text(text)
    wanted = WantedIdentity(port=None, user="u", password=None)
    with pytest.raises(LocalPostgresError, match="^unreadable credentials file .*credentials.json"):
        load_or_create_credentials(paths, wanted)
    assert paths.credentials_path.read_text() == text  # never overwritten


def test_the_url_quotes_every_part_libpq_reads_back() -> None:
    creds = Credentials(port=6543, user="us@r:x", password=ODD_PASSWORD)
    parsed = conninfo_to_dict(creds.url("odd/db name", driver=""))
    assert parsed == {
        "user": "us@r:x",
        "password": ODD_PASSWORD,
        "host": "127.0.0.1",
        "port": "6543",
        "dbname": "odd/db name",
    }
    assert creds.url().startswith("postgresql+psycopg://us%40r%3Ax:")
    assert creds.url().endswith("@127.0.0.1:6543/postgres")
    assert creds.url(driver="asyncpg").startswith("postgresql+asyncpg://")


# -- ports -------------------------------------------------------------------------------------


def test_a_listened_port_is_taken_and_free_again_once_closed() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = int(listener.getsockname()[1])
        assert not port_is_free(port)
    assert port_is_free(port)
    picked = pick_free_port()
    assert 0 < picked < 65536 and port_is_free(picked)


# -- our settings file -------------------------------------------------------------------------


def test_the_settings_follow_the_port_and_fast(tmp_path: Path) -> None:
    paths = ServerPaths(tmp_path / "it's")
    durable = server_settings(paths, 7777, fast=False)
    assert durable == {
        "listen_addresses": "'127.0.0.1'",
        "port": "7777",
        "unix_socket_directories": f"'{tmp_path}/it''s/socket'",  # quote doubled
        "unix_socket_permissions": "0700",
        "max_connections": "100",
    }
    fast = server_settings(paths, 7777, fast=True)
    assert fast == durable | {
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
    }
    deep = ServerPaths(tmp_path / ("d" * 120))
    assert server_settings(deep, 7777, fast=False)["unix_socket_directories"] == "''"


def test_the_settings_file_and_its_include_read_as_before(tmp_path: Path) -> None:
    paths = ServerPaths(tmp_path)
    paths.data_dir.mkdir()
    paths.postgresql_conf.write_text("# initdb's\n")
    binaries = ServerBinaries()
    include_server_settings(paths)
    write_server_settings(paths, 7777, fast=False, user=ServerUser(binaries))
    assert paths.postgresql_conf.read_text() == (
        "# initdb's\n\n# Settings managed by run_proof_pipeline.embedded.server\n"
        "include = 'run_proof.conf'\n"
    )
    lines = paths.settings_file.read_text().splitlines()
    assert lines[0] == (
        "# Generated by run_proof_pipeline.embedded.server; edits are overwritten on start."
    )
    assert lines[1:3] == ["listen_addresses = '127.0.0.1'", "port = 7777"]
    owner = paths.settings_file.stat().st_uid
    assert owner == (pwd.getpwnam(ROOT_SERVER_OS_USER).pw_uid if AS_ROOT else os.geteuid())


# -- database names ----------------------------------------------------------------------------


def test_database_names_are_counted_in_bytes() -> None:
    assert validate_db_name("x" * 63) == "x" * 63
    assert validate_db_name("é" * 31) == "é" * 31  # 62 bytes
    for bad in ("", "x" * 64, "é" * 32, "a\x00b"):
        with pytest.raises(ValueError, match="must be 1..63 bytes, no NUL"):
            validate_db_name(bad)


# -- the server user and its commands ----------------------------------------------------------


def test_a_command_runs_as_the_server_user(tmp_path: Path) -> None:
    commands = _commands(tmp_path / "pg")
    argv = ["/bin/sh", "-c", "id -u"]
    wrapped = commands.user.command(argv, commands.paths.base_dir)
    if AS_ROOT:
        assert wrapped == [shutil.which("runuser"), "-u", ROOT_SERVER_OS_USER, "--", *argv]
    else:
        assert wrapped == argv
    ran = commands.run(argv, what="say who", timeout=30)
    expected = pwd.getpwnam(ROOT_SERVER_OS_USER).pw_uid if AS_ROOT else os.geteuid()
    assert ran.stdout.strip() == str(expected)


def test_a_failed_command_says_its_output_redacted_and_the_log_tail(tmp_path: Path) -> None:
    commands = _commands(tmp_path / "pg")
    commands.paths.log_path.write_text("".join(f"log line {n}\n" for n in range(1, 51)))
    # The secret is in the output only, put together by the shell.
    argv = ["/bin/sh", "-c", "echo password=hun''ter2; echo broke >&2; exit 3"]
    with pytest.raises(LocalPostgresError) as caught:
        commands.run(argv, what="do the thing", timeout=30)
    message = str(caught.value)
    first, rest = message.split("\n", 1)
    assert first.startswith("failed to do the thing: `") and first.endswith("` exited with 3")
    assert rest.startswith("--- output ---\npassword=***\nbroke\n--- last lines of ")
    assert "hunter2" not in message
    tail = message.split(f"--- last lines of {commands.paths.log_path} ---\n", 1)[1]
    assert tail.splitlines() == [f"log line {n}" for n in range(11, 51)]  # the last 40

    with pytest.raises(LocalPostgresError) as without_log:
        commands.run(argv, what="do the thing", timeout=30, include_server_log=False)
    assert "last lines" not in str(without_log.value)
    unchecked = commands.run(argv, what="do the thing", timeout=30, check=False)
    assert unchecked.returncode == 3


def test_a_command_that_hangs_is_stopped_and_said_once(tmp_path: Path) -> None:
    commands = _commands(tmp_path / "pg")
    with pytest.raises(LocalPostgresError, match=r"timed out after 1s\n--- last lines of "):
        commands.run(["/bin/sleep", "3"], what="wait", timeout=1)


@pytest.mark.skipif(AS_ROOT, reason="as root runuser is what runs, and it exists")
def test_a_binary_that_cannot_run_is_one_error(tmp_path: Path) -> None:
    commands = _commands(tmp_path / "pg")
    missing = str(tmp_path / "no-such-binary")
    with pytest.raises(LocalPostgresError, match=f"^failed to go: cannot run {missing}: "):
        commands.run([missing], what="go", timeout=30)


def test_the_way_to_the_base_dir_is_opened_for_search_only(tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    base = outer / "inner" / "pg"
    base.mkdir(parents=True)
    for directory in (base, base.parent, outer):
        directory.chmod(0o700)
    other = next(a for a in pwd.getpwall() if a.pw_uid != os.geteuid() and a.pw_gid != os.getgid())
    grant_traverse(base, other)
    for directory in (base, base.parent, outer):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o701, directory


@pytest.mark.skipif(not AS_ROOT, reason="chown to another user needs root")
def test_a_directory_the_server_user_owns_is_left_alone(tmp_path: Path) -> None:
    account = pwd.getpwnam(ROOT_SERVER_OS_USER)
    base = tmp_path / "pg"
    base.mkdir(mode=0o700)
    ServerUser(ServerBinaries()).give(base)
    assert base.stat().st_uid == account.pw_uid
    grant_traverse(base, account)
    assert stat.S_IMODE(base.stat().st_mode) == 0o700


# -- the binaries' version and the data directory's --------------------------------------------


def test_the_major_version_is_read_from_postgres_version(tmp_path: Path) -> None:
    _executable(tmp_path / "postgres", "#!/bin/sh\necho 'postgres (PostgreSQL) 17.2 (Distro 1)'\n")
    assert server_major(tmp_path) == "17"
    _executable(tmp_path / "postgres", "#!/bin/sh\necho 'something else 17.2'\n")
    assert server_major(tmp_path) is None
    assert server_major(tmp_path / "absent") is None


def test_a_data_dir_of_another_major_is_refused_before_pg_ctl_runs(tmp_path: Path) -> None:
    commands = _commands(tmp_path / "pg")
    paths = commands.paths
    paths.data_dir.mkdir()
    binaries_major = server_major(commands.binaries.bindir)
    assert binaries_major is not None
    paths.version_file.write_text(f"{binaries_major}\n")
    cluster.check_data_version(paths, commands)  # the same major: nothing to say
    paths.version_file.write_text("9\n")
    with pytest.raises(LocalPostgresError) as caught:
        cluster.check_data_version(paths, commands)
    assert str(caught.value) == (
        f"{paths.data_dir} was made by PostgreSQL 9, but the server binaries in "
        f"{commands.binaries.bindir} are PostgreSQL {binaries_major}; set RUN_PROOF_PG_SERVER "
        f"to the one that made it, or remove {paths.base_dir} (its data is lost)"
    )


def test_binaries_that_cannot_tell_their_version_are_not_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    _executable(bindir / "initdb", "#!/bin/sh\nexit 0\n")  # no `postgres` beside it
    monkeypatch.setenv("RUN_PROOF_PG_BINDIR", str(bindir))
    commands = _commands(tmp_path / "pg")
    commands.paths.data_dir.mkdir()
    commands.paths.version_file.write_text("9\n")
    cluster.check_data_version(commands.paths, commands)
    assert commands.binaries.bindir == bindir


# -- pg_ctl status -----------------------------------------------------------------------------


def test_status_of_a_missing_data_dir_is_an_error_not_stopped(tmp_path: Path) -> None:
    """pg_ctl says 0 running, 3 stopped; 4 (no data directory) must not read as "stopped"."""
    commands = _commands(tmp_path / "pg")
    with pytest.raises(LocalPostgresError, match=r"^`pg_ctl status -D .*/data` exited with 4:"):
        control.is_running(commands)
