"""A throwaway Redis broker and Celery workers for the sweep's Celery job, on this machine only
(127.0.0.1): used by run_proof_pipeline_tests/test_sweep_celery.py and
benchmarks/bench_celery_sweep.py (docs/sweep.md, "Using the cores, and a cluster").

Every process is started by PID and stopped by PID: SIGTERM to the process itself, SIGKILL
after a grace period, then SIGKILL to each of its descendants listed before the stop that is
still there (a Celery worker's pool children, a sweep's shard processes). Nothing is found or
stopped by name. Redis runs with no persistence (`--save ''`, `--appendonly no`) in a
directory of its own.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from run_proof_pipeline.settings import redact

REDIS_SERVER = "redis-server"
# dagster-celery's worker app: its `execute_plan` task and its `dagster` queue.
CELERY_APP = "dagster_celery.app"
INSTALL_HINT = (
    "redis-server is not on PATH: scripts/bootstrap.sh installs Debian's package as root "
    "(apt-get install redis-server)"
)


def redis_server() -> str | None:
    """The redis-server binary on PATH, or None."""
    return shutil.which(REDIS_SERVER)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as listing:
                found.extend(int(child) for child in listing.read().split())
        except FileNotFoundError:
            continue  # that thread ended after the listing
    return found


def descendants(pid: int) -> list[int]:
    """Every process below `pid` now (children first, then theirs), from /proc."""
    out: list[int] = []
    pending = _children(pid)
    while pending:
        child = pending.pop(0)
        out.append(child)
        pending.extend(_children(child))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # A zombie (state Z) has exited; it only waits for its parent to reap it.
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@dataclass
class Started:
    """One process this module started, with its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return redact("\n".join(text.splitlines()[-lines:]))

    def terminate(self) -> list[int]:
        """SIGTERM to the PID (a Celery worker's warm shutdown, Redis' clean exit); returns
        its descendants as they were just before, for `finish`."""
        if not self.running():
            return []
        below = descendants(self.pid)
        self.process.send_signal(signal.SIGTERM)
        return below

    def finish(self, below: list[int], grace: float = 20.0) -> None:
        """Wait for the exit, SIGKILL to the PID after `grace` seconds; then SIGKILL to each
        of `below` that is still there."""
        if self.running():
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=grace)
        for pid in below:
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def stop(self, grace: float = 20.0) -> None:
        self.finish(self.terminate(), grace)


def _start(name: str, argv: list[str], env: dict[str, str], logs: Path, cwd: Path) -> Started:
    log_path = logs / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Started(name, process, log_path)


class ClusterError(RuntimeError):
    """Redis or a worker did not come up; the message names which, with its log's tail."""


def _wait_for_redis(server: Started, port: int, timeout: float) -> None:
    import redis  # the client kombu's Redis transport uses

    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not server.running():
                raise ClusterError(f"redis-server exited:\n{server.log_tail()}")
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
    finally:
        client.close()
    raise ClusterError(f"redis-server did not answer PING in {timeout:.0f} s")


@dataclass
class CeleryCluster:
    """Redis on a free loopback port and Celery workers of dagster-celery's app, under
    `directory`. Register `stop` (as a finalizer) before calling `start_*`: whatever did
    start is then stopped, by PID, whatever happens."""

    directory: Path
    processes: list[Started] = field(default_factory=list)
    port: int | None = None

    def url(self, db: int) -> str:
        assert self.port is not None, "start_redis() first"
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def broker_url(self) -> str:
        return self.url(0)

    @property
    def backend_url(self) -> str:
        return self.url(1)

    def start_redis(self, timeout: float = 20.0) -> None:
        binary = redis_server()
        if binary is None:
            raise ClusterError(INSTALL_HINT)
        data = self.directory / "redis"
        data.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        argv = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data),
            "--daemonize",
            "no",
        ]
        server = _start("redis", argv, dict(os.environ), self.directory, data)
        self.processes.append(server)
        _wait_for_redis(server, self.port, timeout)

    def start_workers(
        self, count: int, env: dict[str, str], cwd: Path, timeout: float = 90.0
    ) -> list[str]:
        """`count` Celery workers (`celery -A dagster_celery.app worker`), one pool process
        each, named sweep-1@%h...; returns their node names once every one logged `ready`.
        Celery reads the broker and backend from CELERY_BROKER_URL / CELERY_RESULT_BACKEND,
        which take precedence over dagster-celery's defaults module."""
        celery = str(Path(sys.executable).with_name("celery"))
        worker_env = dict(env)
        worker_env["CELERY_BROKER_URL"] = self.broker_url
        worker_env["CELERY_RESULT_BACKEND"] = self.backend_url
        started = []
        for n in range(1, count + 1):
            name = f"sweep-{n}"
            argv = [
                celery,
                "-A",
                CELERY_APP,
                "worker",
                "--loglevel",
                "INFO",
                "--hostname",
                f"{name}@%h",
                "--concurrency",
                "1",
                "--prefetch-multiplier",
                "1",
                # No worker-to-worker chatter: nothing here needs it, and it slows start-up.
                "--without-gossip",
                "--without-mingle",
            ]
            worker = _start(name, argv, worker_env, self.directory, cwd)
            self.processes.append(worker)
            started.append(worker)
        return [self._wait_ready(worker, timeout) for worker in started]

    def _wait_ready(self, worker: Started, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        marker = f"{worker.name}@"
        while time.monotonic() < deadline:
            if not worker.running():
                raise ClusterError(f"celery worker {worker.name} exited:\n{worker.log_tail()}")
            for line in worker.log_path.read_text(errors="replace").splitlines():
                if line.rstrip().endswith(" ready.") and marker in line:
                    return line.rstrip().rsplit(" ", 2)[-2]
            time.sleep(0.2)
        raise ClusterError(
            f"celery worker {worker.name} not ready in {timeout:.0f} s:\n{worker.log_tail()}"
        )

    def worker_pids(self) -> set[int]:
        """The PIDs of every worker process and its pool's children now."""
        pids: set[int] = set()
        for started in self.processes:
            if started.name.startswith("sweep-") and started.running():
                pids.add(started.pid)
                pids.update(descendants(started.pid))
        return pids

    def stop(self) -> None:
        """The workers together (their warm shutdowns run side by side and still reach the
        broker), Redis last."""
        workers = [p for p in self.processes if p.name != "redis"]
        pending = [(worker, worker.terminate()) for worker in workers]
        for worker, below in pending:
            worker.finish(below)
        for started in self.processes:
            if started.name == "redis":
                started.stop()
