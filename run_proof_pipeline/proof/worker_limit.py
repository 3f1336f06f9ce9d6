"""The one bound on worker processes, for every place a worker count is set.

A worker count comes from Launchpad config, a CLI option or an environment variable; each is
input the operator (or whoever edits a saved config) controls, and each process holds its own
database connection and memory. So every count is checked here against one bound, with an
error that names where the value came from (docs/bad-input.md).
"""

from __future__ import annotations

from run_proof_pipeline.settings import ConfigError

__all__ = ["MAX_WORKERS", "check_workers"]

# Twice the cores of a large verifier host is plenty for I/O-bound proof work; more only
# exhausts the server's connection slots (max_connections defaults to 100).
MAX_WORKERS = 16


def check_workers(value: int, *, source: str) -> int:
    """`value` if 1 <= value <= MAX_WORKERS, else a ConfigError naming `source`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{source} must be a whole number from 1 to {MAX_WORKERS}, got {value!r}")
    if not 1 <= value <= MAX_WORKERS:
        raise ConfigError(f"{source} must be from 1 to {MAX_WORKERS}, got {value}")
    return value
