"""Fixtures for the ledger and checkpoint tests (registered in conftest.py's pytest_plugins)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["CheckpointEnv", "checkpoint_env_in"]


@dataclass(frozen=True)
class CheckpointEnv:
    directory: Path
    signing_key: Path


def checkpoint_env_in(base: Path, env: pytest.MonkeyPatch) -> CheckpointEnv:
    """Checkpoints under `base`, signed by a key created there on first use (outside the
    DB): the ledger settings set in `env` (a test's monkeypatch, or a module fixture's
    `pytest.MonkeyPatch.context()`), and no public key or origin from the shell."""
    made = CheckpointEnv(base / "checkpoints", base / "keys" / "ledger.key")
    env.setenv("RUN_PROOF_CHECKPOINT_DIR", str(made.directory))
    env.setenv("RUN_PROOF_SIGNING_KEY", str(made.signing_key))
    for name in (
        "RUN_PROOF_PUBLIC_KEY",
        "RUN_PROOF_PUBLIC_KEY_FILE",
        "RUN_PROOF_CHECKPOINT_ORIGIN",
    ):
        env.delenv(name, raising=False)
    return made


@pytest.fixture(name="checkpoint_env")
def checkpoint_env_fixture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CheckpointEnv]:
    """Checkpoints in the test's tmp dir (checkpoint_env_in)."""
    yield checkpoint_env_in(tmp_path, monkeypatch)
