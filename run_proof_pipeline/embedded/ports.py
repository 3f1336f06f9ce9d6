"""TCP ports on 127.0.0.1, the only address the server listens on: whether one is free, and
one the kernel picks."""

from __future__ import annotations

import socket

__all__ = ["pick_free_port", "port_is_free"]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR mirrors what the postmaster does, so TIME_WAIT leftovers from our own
        # previous run do not count as "taken" while a live listener still does (on Linux).
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
