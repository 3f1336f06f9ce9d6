"""`run-proof ui`: the Dagster UI and daemon (`dagster dev`) on the PostgreSQL-backed instance.

`run-proof ui` supervises `dagster dev` so that stopping it stops everything it started, within
`STOP_GRACE_SECONDS` + `KILL_WAIT_SECONDS` (docs/ui.md, "Stopping the UI"; issue 14, item 6):

- `dagster dev` runs in a session (and process group) of its own. Its webserver, daemon and
  code servers stay in that group: Dagster opens them without new groups (`open_ipc_subprocess`
  in dagster_shared/ipc.py; Dagster tried per-process groups and reverted, dagster PR 13525).
  The terminal's Ctrl-C therefore reaches run-proof only, and run-proof decides what happens.
- SIGTERM, SIGINT and SIGHUP to run-proof are forwarded to `dagster dev` as SIGTERM/SIGINT.
  `dagster dev` maps SIGTERM to its SIGINT handler (`setup_interrupt_handlers`,
  dagster/_utils/interrupts.py), and on that interrupt tells the webserver and daemon to shut
  down over their shutdown pipes and stops its code servers (dagster/_cli/dev.py).
- It waits for that up to `STOP_GRACE_SECONDS` (Dagster itself would wait 60 s per process),
  then SIGKILLs, by PID, every process still in the group or descended from `dagster dev`.
  A second signal during the wait kills at once. `dagster dev` is kept unreaped (a zombie)
  until its group is empty, so the group's ID cannot be reused while it is signalled.
- After a requested stop, run-proof ends by the signal it received (SIGTERM, SIGINT, SIGHUP:
  shell status 143, 130, 129), as systemd.service(5) asks of programs that clean up on a
  signal ("kill themselves with the same signal"), so `systemctl stop` and `docker stop` see
  a clean stop. Otherwise it exits with `dagster dev`'s own code.

Not used: `prctl(PR_SET_PDEATHSIG)`. It is Linux-only, must be set from `preexec_fn` (which
Python's subprocess docs call unsafe with threads), fires when the forking *thread* exits, and
covers only the direct child; SIGKILL of run-proof itself is the one case it would add, and
there the supervisor's own cleanup applies (systemd's default KillMode=control-group, the
container's PID namespace for `docker stop`).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import typer

from run_proof_pipeline.cli.errors import handled

# Docker's `docker stop` waits 10 s before SIGKILL (systemd's TimeoutStopSec 90 s): the whole
# stop, grace and kill, fits in that, as issue 14 item 6 requires.
STOP_GRACE_SECONDS = 8.0
KILL_WAIT_SECONDS = 1.5
POLL_SECONDS = 0.1
IDLE_POLL_SECONDS = 1.0
# What each signal to run-proof becomes for `dagster dev` (it handles SIGINT and SIGTERM alike;
# SIGHUP, the terminal going away, would kill it without cleanup).
STOP_SIGNALS: dict[int, int] = {
    signal.SIGTERM: signal.SIGTERM,
    signal.SIGINT: signal.SIGINT,
    signal.SIGHUP: signal.SIGTERM,
}


@dataclass(frozen=True)
class ProcessInfo:
    ppid: int
    pgid: int
    # Start time in clock ticks since boot (proc(5), field 22): with the PID, it names one
    # process even after the PID is reused.
    start: int
    zombie: bool


def _process_table() -> dict[int, ProcessInfo]:
    """Every process in /proc (Linux). Empty where there is no /proc: then the process group
    alone says what to stop."""
    table: dict[int, ProcessInfo] = {}
    with contextlib.suppress(OSError):
        names = os.listdir("/proc")
        for name in names:
            if not name.isdigit():
                continue
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:  # exited meanwhile
                continue
            # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
            fields = stat[stat.rindex(")") + 2 :].split()
            table[int(name)] = ProcessInfo(
                ppid=int(fields[1]),
                pgid=int(fields[2]),
                start=int(fields[19]),
                zombie=fields[0] == "Z",
            )
    return table


def tree_of(root: int, table: dict[int, ProcessInfo] | None = None) -> dict[int, int]:
    """PID -> start time of `root`'s descendants and the members of its process group
    (`root` itself excluded), living or zombie."""
    table = _process_table() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, info in table.items():
        children.setdefault(info.ppid, []).append(pid)
    found = {pid for pid, info in table.items() if info.pgid == root}
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    found.discard(root)
    return {pid: table[pid].start for pid in found}


def _alive(known: dict[int, int], table: dict[int, ProcessInfo]) -> list[int]:
    """The known processes still running (same PID and start time, not a zombie)."""
    return [
        pid
        for pid, start in known.items()
        if pid in table and table[pid].start == start and not table[pid].zombie
    ]


def _exited(pid: int) -> bool:
    """Whether the child exited, without reaping it (waitid WNOWAIT): while it is a zombie its
    PID, which is also its group's ID, cannot be given to another process."""
    try:
        result = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return result is not None


def _kill(group: int, pids: Iterable[int], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


@dataclass
class _StopRequests:
    received: list[int]
    wakeup: int  # readable when a signal arrived (signal.set_wakeup_fd)

    def wait(self, seconds: float) -> None:
        """Sleep up to `seconds`, waking at once on a stop signal or SIGCHLD."""
        select.select([self.wakeup], [], [], max(seconds, 0.0))
        with contextlib.suppress(BlockingIOError):
            os.read(self.wakeup, 4096)


@contextlib.contextmanager
def _stop_requests() -> Iterator[_StopRequests]:
    """The stop signals received while inside, in order; handlers restored on exit. SIGCHLD
    (our child exited) has a no-op handler only to wake the wait, through the wakeup fd."""
    received: list[int] = []

    def record(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    read_end, write_end = os.pipe()  # not inherited by children (PEP 446)
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    previous_fd = signal.set_wakeup_fd(write_end)
    previous = {sig: signal.signal(sig, record) for sig in STOP_SIGNALS}
    previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda _s, _f: None)
    try:
        yield _StopRequests(received, read_end)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(previous_fd)
        os.close(read_end)
        os.close(write_end)


def _say(message: str) -> None:
    print(f"run-proof: {message}", file=sys.stderr, flush=True)


def supervise(command: list[str], env: dict[str, str]) -> int:
    """Run `command` in its own session until it exits or a stop signal arrives; leave none of
    its processes behind. Returns its exit code, or the negated signal that stopped us."""
    with _stop_requests() as requests:
        received = requests.received
        if received:  # asked to stop before anything started
            return -received[0]
        process = subprocess.Popen(command, env=env, start_new_session=True)
        group = process.pid
        known: dict[int, int] = {}
        asked_at: float | None = None
        try:
            while True:
                table = _process_table()
                # Seen while running, so that a process that left the group and lost its
                # parent is still known by PID when the time comes to stop it.
                known.update(tree_of(group, table))
                if asked_at is None:
                    if _exited(group):
                        break
                    if not received:
                        requests.wait(IDLE_POLL_SECONDS)
                        continue
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(group, STOP_SIGNALS[received[0]])
                    asked_at = time.monotonic()
                # Stopping: until dagster dev and everything it started are gone, the grace
                # period ends, or a second signal says not to wait.
                if _exited(group) and not _alive(known, table):
                    break
                left = STOP_GRACE_SECONDS - (time.monotonic() - asked_at)
                if len(received) > 1 or left <= 0:
                    break
                requests.wait(min(left, POLL_SECONDS))
        finally:
            _clean_up(group, known, gentle=asked_at is None and not received)
            code = process.wait()
        return -received[0] if received else code


def _clean_up(group: int, known: dict[int, int], *, gentle: bool) -> None:
    """Kill, by PID, what is left of the group and of the processes seen in the tree. `gentle`
    (dagster dev exited on its own): SIGTERM first and a grace period, then SIGKILL."""
    table = _process_table()
    if not table:
        # No /proc: the process group is all we know.
        _kill(group, [], signal.SIGKILL)
        return
    known = {**known, **tree_of(group, table)}
    if group in table and not table[group].zombie:
        known[group] = table[group].start
    if gentle and _alive(known, table):
        _kill(group, _alive(known, table), signal.SIGTERM)
        _wait_for(known, STOP_GRACE_SECONDS)
        table = _process_table()
    left = _alive(known, table)
    if left:
        _say(
            f"dagster dev did not stop in time; killing its {len(left)} remaining "
            f"process(es) by PID: {' '.join(map(str, sorted(left)))}"
        )
        _kill(group, left, signal.SIGKILL)
        _wait_for(known, KILL_WAIT_SECONDS)


def _wait_for(known: dict[int, int], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while _alive(known, _process_table()) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)


def _end_by(signum: int) -> None:
    """Terminate by `signum` with its default action (systemd.service(5), SuccessExitStatus)."""
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    raise typer.Exit(128 + signum)  # not reached where the signal is delivered at once


@handled
def ui(
    port: int = typer.Option(3000, help="Port of the Dagster UI (loopback only)."),
) -> None:
    """Start the Dagster UI and daemon (dagster dev) on the PostgreSQL-backed instance."""
    from run_proof_pipeline.cli.dagster_env import dagster_environment, workspace_file

    # Deferred: main.py imports this module to register it.
    from run_proof_pipeline.cli.database import announced_database, embedded_store_ready

    resolved = announced_database()
    if resolved.embedded:
        embedded_store_ready(resolved)
    environment = dagster_environment(resolved)
    print(f"Dagster UI on http://127.0.0.1:{port} (DAGSTER_HOME={environment.home})", flush=True)
    command = [
        str(Path(sys.executable).with_name("dagster")),
        "dev",
        "-w",
        # The installed package's code location, written into DAGSTER_HOME: no checkout needed.
        str(workspace_file(environment.home)),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    code = supervise(command, environment.env)
    if code < 0:
        _end_by(-code)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("ui")(ui)
