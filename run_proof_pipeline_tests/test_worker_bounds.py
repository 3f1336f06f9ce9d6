"""Issue 12: every worker count is bounded (proof.worker_limit: 1 to 16) with one clear error
naming where it came from, and a short run never starts more processes than it has useful
segments (coordinator.run_proof.useful_segments; docs/bad-input.md).

The CLI cases are real `run-proof verify` processes, all started at once (each takes a
second or two to import): the documented exit code, one line on stderr, nothing on stdout.
DATABASE_URL points at a closed port, so a count that were not checked first would show
as exit 5, never as a database touched.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterInstance, materialize

from run_proof_pipeline.cli.main import _verify_workers
from run_proof_pipeline.coordinator import RunProofCoordinator
from run_proof_pipeline.coordinator.run_proof import useful_segments
from run_proof_pipeline.defs.resources import TraceStoreResource
from run_proof_pipeline.defs.sweep.assets import TENANTS, aos_traces_sweep
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.plan.coordinator_checks.fixtures import migrated_copy
from run_proof_pipeline.settings import ConfigError, DatabaseUrl
from run_proof_pipeline_tests.support.stores import prove, record_run

CLI = str(Path(sys.executable).with_name("run-proof"))
TENANT = "tenant-wb"
SHORT_RUN = "run-300"

OPTION = "run-proof: --workers must be a whole number from 1 to 16, got {!r}"
SETTING = (
    "run-proof: configuration error: "
    "RUN_PROOF_VERIFY_WORKERS must be a whole number from 1 to 16, got {!r}"
)
# (id, --workers or None, RUN_PROOF_VERIFY_WORKERS or None, stderr line); exit 2 each.
CLI_CASES = [
    ("option-0", "0", None, OPTION.format("0")),
    ("option-17", "17", None, OPTION.format("17")),
    ("option-abc", "abc", None, OPTION.format("abc")),
    ("setting-99", None, "99", SETTING.format("99")),
    ("setting-0", None, "0", SETTING.format("0")),
    ("setting-x", None, "x", SETTING.format("x")),
]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def cli_results() -> dict[str, subprocess.CompletedProcess[str]]:
    """Every CLI case, run side by side."""
    url = f"postgresql://app:pw@127.0.0.1:{_closed_port()}/aos"
    started: dict[str, subprocess.Popen[str]] = {}
    for case_id, option, setting, _ in CLI_CASES:
        env = {k: v for k, v in os.environ.items() if k != "RUN_PROOF_VERIFY_WORKERS"}
        env["DATABASE_URL"] = url
        if setting is not None:
            env["RUN_PROOF_VERIFY_WORKERS"] = setting
        args = [CLI, "verify", "--tenant-id", TENANT, "--run-id", SHORT_RUN]
        if option is not None:
            args += ["--workers", option]
        started[case_id] = subprocess.Popen(
            args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    results = {}
    for case_id, process in started.items():
        stdout, stderr = process.communicate(timeout=120)
        results[case_id] = subprocess.CompletedProcess(
            process.args, process.returncode, stdout, stderr
        )
    return results


@pytest.mark.parametrize(
    ("case_id", "line"),
    [(case_id, line) for case_id, _, _, line in CLI_CASES],
    ids=[case[0] for case in CLI_CASES],
)
def test_cli_worker_count_out_of_range_is_one_line_and_exit_2(
    cli_results: dict[str, subprocess.CompletedProcess[str]], case_id: str, line: str
) -> None:
    completed = cli_results[case_id]

    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.splitlines() == [line]
    assert completed.stdout == ""  # checked before the database banner, before any work


@pytest.mark.parametrize(
    ("option", "setting", "workers"),
    [("16", "99", 16), ("1", None, 1), (None, "16", 16)],
    ids=["option-16-over-a-bad-setting", "option-1", "setting-16"],
)
def test_cli_worker_count_in_range_is_taken(
    monkeypatch: pytest.MonkeyPatch, option: str | None, setting: str | None, workers: int
) -> None:
    # The option wins over the setting; the bounds themselves are accepted.
    if setting is None:
        monkeypatch.delenv("RUN_PROOF_VERIFY_WORKERS", raising=False)
    else:
        monkeypatch.setenv("RUN_PROOF_VERIFY_WORKERS", setting)
    assert _verify_workers(option) == workers


@pytest.fixture(scope="module")
def db(pg_server: LocalPostgres) -> Iterator[DatabaseUrl]:
    """One migrated database with one sealed 300-step run."""
    url = migrated_copy(pg_server, f"workers_{uuid.uuid4().hex[:12]}")
    record_run(url, TENANT, SHORT_RUN, steps=300)
    yield url


@pytest.mark.parametrize(
    ("parallel_min_steps", "started"),
    [(200, 3), (1000, 0)],
    ids=["segments-of-at-least-100", "below-the-threshold"],
)
def test_a_300_step_run_with_six_workers_starts_only_useful_processes(
    db: DatabaseUrl, parallel_min_steps: int, started: int
) -> None:
    coordinator = RunProofCoordinator(workers=6, parallel_min_steps=parallel_min_steps)

    result = prove(db, TENANT, SHORT_RUN, coordinator=coordinator, step_summary_limit=0)

    assert result.segment_workers == started  # processes started (0: proved in process)
    assert result.integrity.verification_status == "VERIFIED"
    assert result.integrity.chain_length == 300


@pytest.mark.parametrize(
    ("steps", "workers", "parallel_min_steps", "segments"),
    [
        (300, 6, 200, 3),  # never a segment under 100 steps
        (300, 6, 1, 6),  # threshold 1: every step is worth a process, up to the count
        (199, 6, 200, 1),  # below the threshold: one stream
        (200, 6, 200, 2),  # at it: two halves
        (1_000_000, 4, 200_000, 4),  # long run: the count asked for
        (5, 16, 1, 5),  # never more segments than steps
    ],
)
def test_useful_segments(steps: int, workers: int, parallel_min_steps: int, segments: int) -> None:
    assert useful_segments(steps, workers, parallel_min_steps) == segments


@pytest.mark.parametrize("workers", [0, -1, 17])
def test_the_coordinator_refuses_an_out_of_range_count(workers: int) -> None:
    with pytest.raises(ConfigError, match=rf"^workers must be from 1 to 16, got {workers}$"):
        RunProofCoordinator(workers=workers)


@pytest.mark.parametrize("workers", [0, 17])
def test_sweep_asset_workers_out_of_range_is_one_line_and_sweeps_nothing(
    db: DatabaseUrl, dagster_instance: DagsterInstance, workers: int
) -> None:
    dagster_instance.add_dynamic_partitions(TENANTS, [TENANT])

    result = materialize(
        [aos_traces_sweep],
        partition_key=TENANT,
        instance=dagster_instance,
        resources={
            "trace_store": TraceStoreResource(database_url=db.libpq(), use_postgres_traces="true")
        },
        run_config={"ops": {"aos_traces_sweep": {"config": {"workers": workers}}}},
        raise_on_error=False,
    )

    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    data = failure.step_failure_data.user_failure_data
    assert data is not None, failure.step_failure_data.error
    assert (
        data.description == f"aos_traces_sweep.config.workers must be from 1 to 16, got {workers}"
    )
    assert result.get_asset_materialization_events() == []
    with psycopg.connect(db.libpq()) as conn:  # the sweep never started: no state table
        state = conn.execute("SELECT to_regclass('run_proof_sweep_verified')").fetchone()
    assert state == (None,)
