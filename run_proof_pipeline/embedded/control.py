"""``pg_ctl`` on the server's own data directory: status, start (waiting until it accepts
connections) and fast stop. A postmaster.pid left by a crash is pg_ctl's to judge: ``status``
says "not running" when its pid is dead, and ``start`` then starts over it."""

from __future__ import annotations

import logging
import time

from run_proof_pipeline.embedded.commands import ServerCommands
from run_proof_pipeline.embedded.errors import LocalPostgresError
from run_proof_pipeline.embedded.ports import port_is_free

__all__ = ["is_running", "start", "stop"]

log = logging.getLogger(__name__)


def is_running(commands: ServerCommands) -> bool:
    """``pg_ctl status``: 0 running, 3 not running; anything else means we cannot tell."""
    data_dir = commands.paths.data_dir
    result = commands.run(
        [commands.bin("pg_ctl"), "status", "-D", str(data_dir)],
        what="query PostgreSQL status",
        timeout=30,
        check=False,
    )
    if result.returncode in (0, 3):
        return result.returncode == 0
    raise LocalPostgresError(
        f"`pg_ctl status -D {data_dir}` exited with {result.returncode}:\n"
        f"{result.stdout}{result.stderr}"
    )


def start(commands: ServerCommands, port: int, timeout: float) -> None:
    """``pg_ctl start -w`` on a stopped, initialised server; refused in one line when another
    process holds its port."""
    paths = commands.paths
    if not port_is_free(port):
        raise LocalPostgresError(
            f"cannot start PostgreSQL for {paths.data_dir}: port {port} on 127.0.0.1 "
            "is already in use by another process. Stop that process, or move this "
            f"server to another port by removing {paths.base_dir} (its data is lost)."
        )
    commands.user.prepare_file(paths.log_path)
    began = time.monotonic()
    commands.run(
        [
            commands.bin("pg_ctl"),
            "start",
            "-D",
            str(paths.data_dir),
            "-l",
            str(paths.log_path),
            "-w",
            "-t",
            str(max(1, int(timeout))),
        ],
        what="start PostgreSQL",
        timeout=timeout + 15,
    )
    log.info(
        "PostgreSQL %s started on 127.0.0.1:%d in %.2fs",
        paths.data_dir,
        port,
        time.monotonic() - began,
    )


def stop(commands: ServerCommands, timeout: float) -> None:
    """``pg_ctl stop -m fast -w`` (roll back open transactions, checkpoint) on a running server."""
    commands.run(
        [
            commands.bin("pg_ctl"),
            "stop",
            "-D",
            str(commands.paths.data_dir),
            "-m",
            "fast",
            "-w",
            "-t",
            str(max(1, int(timeout))),
        ],
        what="stop PostgreSQL",
        timeout=timeout + 15,
    )
