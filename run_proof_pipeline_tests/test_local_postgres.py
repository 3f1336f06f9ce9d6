"""LocalPostgres against a real server (no mocks)."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from run_proof_pipeline.embedded.server import (
    DEFAULT_EMBEDDED_PORT,
    LocalPostgres,
    LocalPostgresError,
    embedded_default,
    find_pg_bindir,
)

# Characters that break naive URL building; proves url() quotes the password.
ODD_PASSWORD = "p@ss:w/rd %?#&'\""


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _postmaster_pid(pg: LocalPostgres) -> int:
    return int((pg.data_dir / "postmaster.pid").read_text().splitlines()[0])


@pytest.fixture(scope="module")
def own_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    """A server these tests may stop, restart and break; initdb'd once for the module."""
    pg = LocalPostgres(tmp_path_factory.mktemp("own_pg"), password=ODD_PASSWORD, fast=True)
    try:
        pg.ensure_initialized()
        yield pg
    finally:
        pg.stop()


def test_restart_keeps_data_port_and_credentials(own_pg: LocalPostgres) -> None:
    own_pg.start()
    port = own_pg.port
    with psycopg.connect(own_pg.url(driver="")) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('survives restart')")

    own_pg.stop()
    assert not own_pg.is_running()
    own_pg.stop()  # idempotent

    # A fresh object (as a new process would build) must reuse the stored port and password.
    again = LocalPostgres(own_pg.base_dir, fast=True)
    again.start()
    assert again.port == port
    assert again.password == ODD_PASSWORD
    with psycopg.connect(again.url(driver="")) as conn:
        assert ("survives restart",) in conn.execute("SELECT v FROM kept").fetchall()

    creds_path = own_pg.base_dir / "credentials.json"
    assert stat.S_IMODE(creds_path.stat().st_mode) == 0o600
    assert json.loads(creds_path.read_text()) == {
        "port": port,
        "user": "run_proof",
        "password": ODD_PASSWORD,
    }


def test_start_is_idempotent(own_pg: LocalPostgres) -> None:
    own_pg.start()
    pid = _postmaster_pid(own_pg)
    version = (own_pg.data_dir / "PG_VERSION").stat().st_mtime_ns
    own_pg.ensure_initialized()
    own_pg.start()
    assert own_pg.is_running()
    assert _postmaster_pid(own_pg) == pid
    assert (own_pg.data_dir / "PG_VERSION").stat().st_mtime_ns == version


def test_url_connects_and_password_is_required(own_pg: LocalPostgres) -> None:
    own_pg.start()
    for driver, scheme in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        assert own_pg.url("x", driver=driver).startswith(f"{scheme}://run_proof:")
    with psycopg.connect(own_pg.url(driver="")) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("run_proof",)

    wrong = f"postgresql://run_proof:wrong@127.0.0.1:{own_pg.port}/postgres"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5).close()
    # No password at all: refused too (PGPASSWORD etc. cleared so libpq cannot find one).
    env_free = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import psycopg,sys; psycopg.connect(sys.argv[1], connect_timeout=5)",
            f"postgresql://run_proof@127.0.0.1:{own_pg.port}/postgres",
        ],
        capture_output=True,
        text=True,
        env=env_free | {"PGPASSFILE": os.devnull},
        timeout=30,
    )
    assert probe.returncode != 0
    assert "password" in probe.stderr


def test_occupied_port_is_a_clear_error(own_pg: LocalPostgres) -> None:
    own_pg.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        # The stopped server's connections may linger in TIME_WAIT on this port; the
        # squatter must still get it, as any other program would.
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", own_pg.port))
        squatter.listen()
        with pytest.raises(LocalPostgresError, match=f"port {own_pg.port} .*already in use"):
            own_pg.start()
    assert not own_pg.is_running()
    own_pg.start()  # the port, not the data dir, was the problem
    assert own_pg.is_running()


def test_start_failure_reports_server_log(own_pg: LocalPostgres) -> None:
    own_pg.stop()
    auto_conf = own_pg.data_dir / "postgresql.auto.conf"
    original = auto_conf.read_text()
    auto_conf.write_text(original + "shared_buffers = 'not-a-size'\n")
    try:
        with pytest.raises(LocalPostgresError) as info:
            own_pg.start(timeout=20)
        assert "server.log" in str(info.value)
        assert "shared_buffers" in str(info.value)  # the postmaster's own complaint
    finally:
        auto_conf.write_text(original)
    own_pg.start()


def test_stale_postmaster_pid_is_handled(own_pg: LocalPostgres) -> None:
    own_pg.start()
    pid_file = own_pg.data_dir / "postmaster.pid"
    contents = pid_file.read_text().splitlines(keepends=True)
    own_pg.stop()
    assert not pid_file.exists()

    # A PID we spawned and reaped ourselves is certainly dead (not even a zombie).
    dead = subprocess.Popen(["true"])
    dead.wait()
    pid_file.write_text("".join([f"{dead.pid}\n", *contents[1:]]))
    if os.geteuid() == 0:
        os.chown(pid_file, own_pg.data_dir.stat().st_uid, own_pg.data_dir.stat().st_gid)
    pid_file.chmod(0o600)

    assert not own_pg.is_running()
    own_pg.start()
    assert own_pg.is_running()
    assert _postmaster_pid(own_pg) != dead.pid


def _children(pid: int) -> set[int]:
    found = set()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and int(_proc_stat(proc)[1]) == pid:
                found.add(int(proc.name))
        except (OSError, IndexError):
            continue
    return found


def _proc_stat(proc: Path) -> list[str]:
    # Fields after "(comm)": state, ppid, ...
    return (proc / "stat").read_text().rsplit(")", 1)[1].split()


def _gone(pid: int) -> bool:
    """Reaped, or a zombie that no longer holds shared memory (good enough for children)."""
    try:
        return _proc_stat(Path(f"/proc/{pid}"))[0] == "Z"
    except OSError:
        return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_restart_after_postmaster_crash(own_pg: LocalPostgres) -> None:
    own_pg.start()
    pid = _postmaster_pid(own_pg)
    children = _children(pid)
    os.kill(pid, signal.SIGKILL)
    # The children notice the postmaster's death and exit. The postmaster itself must be reaped,
    # not merely a zombie: kill(pid, 0) succeeds on zombies, so pg_ctl would think it runs.
    deadline = time.monotonic() + 15
    while not (all(_gone(c) for c in children) and not Path(f"/proc/{pid}").exists()):
        if time.monotonic() > deadline:
            alive = [c for c in children if not _gone(c)]
            pytest.fail(f"crashed postmaster {pid} or its children {alive} not reaped within 15 s")
        time.sleep(0.1)
    assert (own_pg.data_dir / "postmaster.pid").exists()  # left behind by the crash
    own_pg.start()
    with psycopg.connect(own_pg.url(driver="")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_context_manager_starts_and_stops(own_pg: LocalPostgres) -> None:
    own_pg.stop()
    with LocalPostgres(own_pg.base_dir, fast=True) as pg:
        assert pg.is_running()
    assert not own_pg.is_running()


def test_explicit_port_must_match_existing_cluster(own_pg: LocalPostgres) -> None:
    with pytest.raises(LocalPostgresError, match="different port"):
        _ = LocalPostgres(own_pg.base_dir, port=own_pg.port + 1).port


def test_create_and_drop_database(pg_server: LocalPostgres) -> None:
    name = 'odd "name"; drop'
    url = pg_server.create_database(name)
    assert url == pg_server.url(name)
    assert pg_server.create_database(name) == url  # exist_ok
    with pytest.raises(LocalPostgresError, match="already exists"):
        pg_server.create_database(name, exist_ok=False)
    lingering = psycopg.connect(_plain(url), autocommit=True)
    assert lingering.execute("SELECT current_database()").fetchone() == (name,)
    pg_server.drop_database(name)  # forces the lingering session out
    with pytest.raises(psycopg.OperationalError):
        lingering.execute("SELECT 1")
    lingering.close()
    pg_server.drop_database(name)  # idempotent
    with psycopg.connect(pg_server.url(driver="")) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        assert row is None
    for bad in ("", "x" * 64):
        with pytest.raises(ValueError):
            pg_server.create_database(bad)


def test_new_database_fixture_gives_distinct_empty_databases(
    new_database: Callable[..., str],
) -> None:
    first, second = new_database(), new_database("other")
    assert first != second
    with psycopg.connect(_plain(first)) as conn:
        conn.execute("CREATE TABLE only_here (v int)")
    with psycopg.connect(_plain(second)) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone()
        assert tables == (0,)


def test_find_pg_bindir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RUN_PROOF_PG_BINDIR", raising=False)
    real = find_pg_bindir()
    assert (real / "initdb").is_file() and (real / "pg_ctl").is_file()

    monkeypatch.setenv("RUN_PROOF_PG_BINDIR", str(real))
    assert find_pg_bindir() == real

    monkeypatch.setenv("RUN_PROOF_PG_BINDIR", str(tmp_path / "nope"))
    with pytest.raises(LocalPostgresError, match="RUN_PROOF_PG_BINDIR=.*nope.*initdb"):
        find_pg_bindir()


def test_embedded_default_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RUN_PROOF_HOME", str(tmp_path / "home"))
    pg = embedded_default()
    assert pg.base_dir == tmp_path / "home" / ".run-proof" / "postgres"
    # Only credentials are created here (no initdb); the preferred port wins when free.
    first_port = pg.port
    assert first_port == DEFAULT_EMBEDDED_PORT or first_port > 0
    assert embedded_default().port == first_port

    monkeypatch.delenv("RUN_PROOF_HOME")
    monkeypatch.chdir(tmp_path)
    assert embedded_default().base_dir == tmp_path / ".run-proof" / "postgres"
    assert embedded_default(tmp_path / "x").base_dir == tmp_path / "x" / ".run-proof" / "postgres"


def test_a_base_dir_too_deep_for_a_unix_socket_still_starts(tmp_path: Path) -> None:
    """`<base_dir>/socket/.s.PGSQL.<port>` over 107 bytes made the server refuse to start
    (a project checked out deep); it now starts on TCP alone."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    pg = LocalPostgres(deep, fast=True)
    assert len(os.fsencode(pg.socket_dir)) > 107
    try:
        pg.start()
        with psycopg.connect(pg.url(driver="")) as conn:
            assert conn.execute("SELECT current_setting('unix_socket_directories')").fetchone() == (
                "",
            )
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        pg.stop()
    assert not pg.is_running()
