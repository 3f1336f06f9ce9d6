"""The whole Definitions, as one committed snapshot (the way dagster-open-platform pins its
code location): every asset with its partitions, every asset check, every job with its ops in
order, every schedule and sensor with its target and default status.

A change to any of them fails here until the snapshot is rewritten on purpose:

    RUN_PROOF_UPDATE_SNAPSHOTS=1 .venv/bin/pytest \
        run_proof_pipeline_tests/test_definitions_snapshot.py

Several values are read from the environment when the definitions module is imported (cron
strings, time zones, default statuses: RUN_PROOF_SENSORS, RUN_PROOF_CHECKPOINT_DIR, ...). The
snapshot is taken in a fresh Python process whose environment has none of the project's
settings, so it shows the defaults and nothing of the shell or of other tests leaks in.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from run_proof_pipeline_tests.support.cli_process import run_process

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = Path(__file__).resolve().parent / "snapshots" / "definitions.json"
UPDATE_ENV = "RUN_PROOF_UPDATE_SNAPSHOTS"
# Settings the definitions (or what they import) read; every RUN_PROOF_* variable goes too.
SETTINGS = {"DATABASE_URL", "USE_POSTGRES_TRACES", "DAGSTER_HOME", "DAGSTER_PG_URL"}

_IN_A_FRESH_PROCESS = """
import json, warnings
warnings.simplefilter("ignore")
from run_proof_pipeline_tests.test_definitions_snapshot import describe
print(json.dumps(describe()))
"""


def describe() -> dict[str, Any]:
    """A sorted, JSON-serialisable description of run_proof_pipeline.definitions' defs, which
    must pass Dagster's own load-time validation first."""
    from dagster import Definitions

    from run_proof_pipeline.definitions import defs

    Definitions.validate_loadable(defs)

    graph = defs.resolve_asset_graph()
    repository = defs.get_repository_def()

    def partitions(key: Any) -> str | None:
        found = graph.get(key).partitions_def
        return None if found is None else type(found).__name__

    return {
        "assets": [
            {"key": key.to_user_string(), "partitions": partitions(key)}
            for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string())
        ],
        "asset_checks": sorted(
            (
                {"asset": k.asset_key.to_user_string(), "name": k.name}
                for k in graph.asset_check_keys
            ),
            key=lambda c: (c["asset"], c["name"]),
        ),  # fmt: skip
        "jobs": [
            {"name": job.name, "ops": [node.name for node in job.nodes_in_topological_order]}
            for job in sorted(defs.resolve_all_job_defs(), key=lambda j: j.name)
            if not job.name.startswith("__")  # Dagster's implicit asset job
        ],
        "schedules": [
            {
                "name": schedule.name,
                "cron": schedule.cron_schedule,
                "timezone": schedule.execution_timezone,
                "job": schedule.job_name,
                "default_status": schedule.default_status.value,
            }
            for schedule in sorted(repository.schedule_defs, key=lambda s: s.name)
        ],
        "sensors": [
            {
                "name": sensor.name,
                "type": sensor.sensor_type.value,
                "jobs": sorted(target.job_name for target in sensor.targets),
                "default_status": sensor.default_status.value,
            }
            for sensor in sorted(repository.sensor_defs, key=lambda s: s.name)
        ],
    }


def _described_without_settings() -> dict[str, Any]:
    env = {
        k: v for k, v in os.environ.items() if k not in SETTINGS and not k.startswith("RUN_PROOF_")
    }
    completed = run_process([sys.executable, "-c", _IN_A_FRESH_PROCESS], env, cwd=ROOT)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_the_definitions_are_the_committed_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings of this process (a shell with sensors running, another cron) must not leak in.
    monkeypatch.setenv("RUN_PROOF_SENSORS", "running")
    monkeypatch.setenv("RUN_PROOF_NIGHTLY_CRON", "30 3 * * 1-5")
    monkeypatch.setenv("RUN_PROOF_CHECKPOINT_DIR", "/nonexistent/checkpoints")

    described = _described_without_settings()

    text = json.dumps(described, indent=2, sort_keys=True) + "\n"
    if os.environ.get(UPDATE_ENV) == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text, encoding="utf-8")
    assert SNAPSHOT.is_file(), f"no snapshot yet: run with {UPDATE_ENV}=1"
    committed = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assert described == committed, (
        f"the Definitions changed: if on purpose, rerun with {UPDATE_ENV}=1 and commit "
        f"{SNAPSHOT.relative_to(ROOT)}"
    )
    # Not an empty or truncated description that would match itself.
    assert "run_proof_plan" in {job["name"] for job in committed["jobs"]}
    assert all(committed[part] for part in ("assets", "asset_checks", "schedules", "sensors"))
