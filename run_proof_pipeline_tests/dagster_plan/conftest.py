"""Fixtures for the Dagster job, its checks, schedule and sensors.

Dagster's own storage runs on the throwaway PostgreSQL server too (`dagster_instance`, from
`run_proof_pipeline_tests/support/dagster_fixtures.py`), never Dagster's ephemeral instance.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def report_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where this test's Output Reports go; also the default for runs whose config names none
    (run requests from the schedule and sensors), so nothing lands in the project's reports/."""
    directory = tmp_path / "reports"
    monkeypatch.setenv("RUN_PROOF_REPORT_DIR", str(directory))
    return directory


@pytest.fixture(autouse=True)
def _no_ambient_target(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests configure the trace store explicitly; a DATABASE_URL or alert webhook in the
    developer's shell must never reach them."""
    for name in ("DATABASE_URL", "USE_POSTGRES_TRACES", "RUN_PROOF_ALERT_WEBHOOK"):
        monkeypatch.delenv(name, raising=False)
