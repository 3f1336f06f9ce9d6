"""`run-proof ui` under a supervisor (issue 14, item 6; docs/ui.md, "Stopping the UI"): SIGTERM
or SIGINT to run-proof's own PID stops its whole process tree (dagster dev, the webserver, the
daemon, the code servers) within 10 s, the port closes, and run-proof ends by that signal.
Also when the webserver hangs (SIGSTOP), so that only the kill by PID can stop it.

Real processes on the real throwaway PostgreSQL. The tree is read from /proc by this file's
own walk (parent PIDs in /proc/<pid>/stat), not by the code under test."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.plan.coordinator_checks.fixtures import migrated_copy
from run_proof_pipeline.plan.coordinator_tests import project_root
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.dagster_ui import free_port

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

STOP_LIMIT_SECONDS = 10.0  # issue 14, item 6
LOADED_QUERY = "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"


@dataclass(frozen=True)
class Proc:
    pid: int
    start: int  # clock ticks since boot (proc(5) field 22): the PID alone may be reused
    cmdline: str


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(ppid, start time, state) of a process, or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[19]), fields[0]


def _descendants(root: int) -> list[Proc]:
    """`root`'s children, recursively, from every process's parent PID."""
    parents: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (stat := _stat(int(name))) is not None:
            parents.setdefault(stat[0], []).append(int(name))
    found: list[Proc] = []
    pending = [root]
    while pending:
        for pid in parents.get(pending.pop(), []):
            stat = _stat(pid)
            if stat is None:
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            found.append(Proc(pid, stat[1], cmdline))
            pending.append(pid)
    return found


def _running(proc: Proc) -> bool:
    """The same process (PID and start time) exists and is not a zombie."""
    stat = _stat(proc.pid)
    return stat is not None and stat[1] == proc.start and stat[2] != "Z"


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _loaded(port: int) -> bool:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": LOADED_QUERY}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            body = json.loads(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return False
    entries = body.get("data", {}).get("workspaceOrError", {}).get("locationEntries", [])
    return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)


@dataclass(frozen=True)
class UiDatabases:
    store: DatabaseUrl
    storage: DatabaseUrl


@pytest.fixture(scope="module")
def databases(pg_server: LocalPostgres) -> UiDatabases:
    """One trace store and one Dagster storage for the module: each UI start uses them."""
    suffix = uuid.uuid4().hex[:12]
    store = migrated_copy(pg_server, f"ui_sig_store_{suffix}")
    storage = DatabaseUrl.parse(pg_server.create_database(f"ui_sig_dagster_{suffix}"))
    return UiDatabases(store, storage)


@dataclass
class RunningUi:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    tree: list[Proc]


@pytest.fixture
def running_ui(databases: UiDatabases, tmp_path: Path) -> Iterator[RunningUi]:
    """`run-proof ui` on a free port, its code location loaded; its tree recorded by PID.
    At teardown anything still running of that tree is killed by PID (and fails the test
    first, in the test's own assertions)."""
    port = free_port()
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {
        **os.environ,
        "DATABASE_URL": databases.store.libpq(),
        "USE_POSTGRES_TRACES": "true",
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": databases.storage.psycopg2(),
        "RUN_PROOF_REPORT_DIR": str(tmp_path / "reports"),
    }
    log = tmp_path / "ui.log"
    with log.open("wb") as out:
        # Not in a session of its own: a supervisor signals run-proof's PID, nothing else.
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("run-proof")), "ui", "--port", str(port)],
            env=env,
            cwd=project_root(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    tree: list[Proc] = []
    try:
        deadline = time.monotonic() + 240
        while not _loaded(port):
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the UI did not load its code location in time"
            time.sleep(1)
        tree = _descendants(process.pid)
        yield RunningUi(process, port, log, tree)
    finally:
        for proc in [*tree, *_descendants(process.pid)]:
            if _running(proc):
                os.kill(proc.pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def _roles(tree: list[Proc]) -> dict[str, list[Proc]]:
    return {
        "dagster dev": [p for p in tree if " dev " in f"{p.cmdline} "],
        "webserver": [p for p in tree if "-m dagster_webserver" in p.cmdline],
        "daemon": [p for p in tree if "-m dagster._daemon run" in p.cmdline],
        "code server": [p for p in tree if "code-server" in p.cmdline or " grpc" in p.cmdline],
    }


def _stop_and_measure(ui: RunningUi, sig: int) -> float:
    """Send `sig` to run-proof's PID; seconds until run-proof, every recorded PID and the port
    are all gone (or the limit passed)."""
    sent = time.monotonic()
    ui.process.send_signal(sig)
    while time.monotonic() - sent < STOP_LIMIT_SECONDS + 5:
        if (
            ui.process.poll() is not None
            and not [p for p in ui.tree if _running(p)]
            and not _port_open(ui.port)
        ):
            break
        time.sleep(0.05)
    return time.monotonic() - sent


def _assert_whole_tree_was_running(ui: RunningUi) -> None:
    roles = _roles(ui.tree)
    missing = [role for role, procs in roles.items() if not procs]
    assert not missing, f"not in the recorded tree: {missing}; tree: {ui.tree}"
    assert _port_open(ui.port)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_run_proof_stops_its_whole_tree_within_10_s(
    running_ui: RunningUi, sig: signal.Signals
) -> None:
    _assert_whole_tree_was_running(running_ui)

    elapsed = _stop_and_measure(running_ui, sig)

    left = [p for p in running_ui.tree if _running(p)]
    assert not left, f"still running {elapsed:.1f} s after {sig.name}: {left}"
    assert not _port_open(running_ui.port)
    assert elapsed <= STOP_LIMIT_SECONDS, f"stopped in {elapsed:.1f} s"
    # Ended by the signal itself (systemd.service(5)): the shell shows 128 + signal.
    assert running_ui.process.returncode == -sig
    output = running_ui.log.read_text()
    assert "Traceback" not in output, output[-3000:]
    # Usually Dagster stops its own children within the grace period; on a loaded machine
    # run-proof may have to kill the rest (test_a_hung_webserver... proves that path).
    killed = "killed some by PID" if "did not stop in time" in output else "none killed"
    print(f"{sig.name}: whole tree ({len(running_ui.tree)} processes) gone in {elapsed:.2f} s,")
    print(f"  {killed}")


@pytest.mark.slow
def test_a_hung_webserver_is_killed_by_pid_within_10_s(running_ui: RunningUi) -> None:
    """The webserver stopped (SIGSTOP) cannot answer dagster dev's shutdown, and dagster dev
    would wait 60 s for it: run-proof kills it, and whatever else is left, by PID."""
    _assert_whole_tree_was_running(running_ui)
    [webserver] = _roles(running_ui.tree)["webserver"]
    os.kill(webserver.pid, signal.SIGSTOP)

    elapsed = _stop_and_measure(running_ui, signal.SIGTERM)

    left = [p for p in running_ui.tree if _running(p)]
    assert not left, f"still running {elapsed:.1f} s after SIGTERM: {left}"
    assert not _port_open(running_ui.port)
    assert elapsed <= STOP_LIMIT_SECONDS, f"stopped in {elapsed:.1f} s"
    assert running_ui.process.returncode == -signal.SIGTERM
    [line] = [line for line in running_ui.log.read_text().splitlines() if "did not stop" in line]
    assert line.startswith("run-proof: dagster dev did not stop in time; killing its ")
    assert str(webserver.pid) in line.split("by PID:")[1].split()
    print(f"hung webserver: whole tree ({len(running_ui.tree)} processes) gone in {elapsed:.2f} s")


# --- the supervisor itself, on a stand-in for `dagster dev` (fast, no Dagster) -------------

# Starts a child in its own process group and a grandchild that leaves the group for a session
# of its own (as pg_ctl's postmaster does); writes their PIDs; then behaves as told by argv[1]:
# "clean" stops both and exits 0 on SIGTERM/SIGINT, "stubborn" notes and ignores them, "exit7"
# exits 7 after 2 s leaving both running.
FAKE_DEV = r"""
import os, signal, subprocess, sys, time
mode, pid_file, signal_file = sys.argv[1:4]
sleeper = [sys.executable, "-c", "import time; time.sleep(300)"]
child = subprocess.Popen(sleeper)
escaped = subprocess.Popen(sleeper, start_new_session=True)
def stop(signum, _frame):
    with open(signal_file, "a") as f:
        f.write(signal.Signals(signum).name + "\n")
    if mode == "clean":
        for p in (child, escaped):
            p.kill()
            p.wait()
        sys.exit(0)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
with open(pid_file + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {child.pid} {escaped.pid}")
os.rename(pid_file + ".tmp", pid_file)
if mode == "exit7":
    time.sleep(2)  # long enough for the supervisor's scan (every second) to see them
    os._exit(7)
while True:
    time.sleep(1)
"""

# What `run-proof ui` does with the command once its environment is set (ui_command.ui).
SUPERVISOR = """
import os, sys
import typer
from run_proof_pipeline.cli.ui_command import _end_by, supervise
code = supervise(sys.argv[1:], dict(os.environ))
if code < 0:
    _end_by(-code)
sys.exit(code)
"""


@dataclass
class Supervised:
    process: subprocess.Popen[str]
    pids: list[int]  # the stand-in dev, its child, the escaped grandchild
    procs: list[Proc]
    signals: Path


def _supervise_fake(tmp_path: Path, mode: str) -> Supervised:
    fake = tmp_path / "fake_dev.py"
    fake.write_text(FAKE_DEV)
    pid_file, signals = tmp_path / "pids", tmp_path / "signals"
    process = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, sys.executable, str(fake), mode, str(pid_file)]
        + [str(signals)],
        cwd=project_root(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not pid_file.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the stand-in did not start"
        time.sleep(0.05)
    pids = [int(p) for p in pid_file.read_text().split()]
    procs = []
    for pid in pids:
        stat = _stat(pid)
        assert stat is not None, f"process {pid} of the stand-in is not running"
        procs.append(Proc(pid, stat[1], ""))
    return Supervised(process, pids, procs, signals)


def _gone_within(supervised: Supervised, seconds: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if supervised.process.poll() is not None and not any(_running(p) for p in supervised.procs):
            break
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture
def reap() -> Iterator[list[Supervised]]:
    """Kills by PID whatever a failing test leaves of its stand-in."""
    started: list[Supervised] = []
    yield started
    for supervised in started:
        for proc in supervised.procs:
            if _running(proc):
                os.kill(proc.pid, signal.SIGKILL)
        if supervised.process.poll() is None:
            supervised.process.kill()
        supervised.process.communicate(timeout=30)


def test_sighup_is_forwarded_as_sigterm_and_run_proof_ends_by_sighup(
    tmp_path: Path, reap: list[Supervised]
) -> None:
    supervised = _supervise_fake(tmp_path, "clean")
    reap.append(supervised)
    supervised.process.send_signal(signal.SIGHUP)
    elapsed = _gone_within(supervised, 5)
    _, stderr = supervised.process.communicate(timeout=10)
    assert not [p for p in supervised.procs if _running(p)]
    assert elapsed < 3, f"{elapsed:.1f} s"
    # dagster dev cleans up on SIGTERM, not on SIGHUP: that is what it must receive.
    assert supervised.signals.read_text() == "SIGTERM\n"
    assert supervised.process.returncode == -signal.SIGHUP
    assert stderr == ""  # it stopped everything itself: nothing to kill, nothing to say


def test_a_second_signal_kills_the_tree_at_once_by_pid_even_outside_its_group(
    tmp_path: Path, reap: list[Supervised]
) -> None:
    supervised = _supervise_fake(tmp_path, "stubborn")
    reap.append(supervised)
    dev, child, escaped = supervised.pids
    assert os.getpgid(escaped) != os.getpgid(dev) == dev  # left the group: killpg misses it
    supervised.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert all(_running(p) for p in supervised.procs)  # ignored: the grace period runs
    supervised.process.send_signal(signal.SIGINT)
    elapsed = _gone_within(supervised, 5)
    _, stderr = supervised.process.communicate(timeout=10)
    assert not [p for p in supervised.procs if _running(p)]
    assert elapsed < 3, f"{elapsed:.1f} s after the second signal"
    assert supervised.signals.read_text() == "SIGTERM\n"  # the first one only was forwarded
    assert supervised.process.returncode == -signal.SIGTERM  # ends by the first signal
    [line] = stderr.splitlines()
    assert line.startswith("run-proof: dagster dev did not stop in time; killing its 3 ")
    assert sorted(int(p) for p in line.split("by PID:")[1].split()) == sorted(supervised.pids)


def test_processes_left_when_dagster_dev_exits_are_stopped_and_its_code_is_kept(
    tmp_path: Path, reap: list[Supervised]
) -> None:
    supervised = _supervise_fake(tmp_path, "exit7")
    reap.append(supervised)
    elapsed = _gone_within(supervised, 10)
    _, stderr = supervised.process.communicate(timeout=10)
    # The sleepers die of the SIGTERM sent to what is left (gently first): nothing to kill.
    assert not [p for p in supervised.procs if _running(p)]
    assert elapsed < 5, f"{elapsed:.1f} s (2 s of them the stand-in's own)"
    assert supervised.process.returncode == 7
    assert stderr == ""
