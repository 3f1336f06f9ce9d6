"""Fixtures for the ledger and checkpoint tests (registered in conftest.py's pytest_plugins)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class CheckpointEnv:
    directory: Path
    signing_key: Path


@pytest.fixture(name="checkpoint_env")
def checkpoint_env_fixture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CheckpointEnv]:
    """Checkpoints in a tmp dir, signed by a key created on first use (outside the DB)."""
    env = CheckpointEnv(tmp_path / "checkpoints", tmp_path / "keys" / "ledger.key")
    monkeypatch.setenv("RUN_PROOF_CHECKPOINT_DIR", str(env.directory))
    monkeypatch.setenv("RUN_PROOF_SIGNING_KEY", str(env.signing_key))
    monkeypatch.delenv("RUN_PROOF_PUBLIC_KEY", raising=False)
    monkeypatch.delenv("RUN_PROOF_PUBLIC_KEY_FILE", raising=False)
    monkeypatch.delenv("RUN_PROOF_CHECKPOINT_ORIGIN", raising=False)
    yield env
