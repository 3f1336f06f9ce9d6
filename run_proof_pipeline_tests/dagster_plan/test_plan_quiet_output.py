"""`run-proof plan` (what `make demo` runs) is quiet: one line per plan step and the Output
Report, with Dagster's own output in a log file whose path it prints; `--verbose` shows
Dagster's events as before. Real PostgreSQL for the trace store and Dagster's storage."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.dagster_plan.test_plan_cli import _plan
from run_proof_pipeline_tests.support.stores import owner_sql, record_run

pytestmark = pytest.mark.slow

STEP_LINE = re.compile(r"^Step [1-5] \([^)]*\): (passed|failed|skipped)", re.MULTILINE)
LOG_LINE = re.compile(r"^Dagster's log: (\S+)$", re.MULTILINE)


def _env(store: DatabaseUrl, dagster_storage: DatabaseUrl, tmp_path: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": store.libpq(),
        "DAGSTER_PG_URL": dagster_storage.libpq(),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "RUN_PROOF_REPORT_DIR": str(tmp_path / "reports"),
    }


def _log_of(output: str, tmp_path: Path) -> Path:
    found = LOG_LINE.search(output)
    assert found is not None, output
    path = Path(found.group(1))
    assert path.parent == tmp_path / "dagster_home" / "logs"
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return path


def test_the_default_output_is_the_steps_and_the_report_with_dagster_in_a_log(
    store: DatabaseUrl, dagster_storage: DatabaseUrl, tmp_path: Path
) -> None:
    record_run(store, "tenant-q", "run-quiet", steps=3)
    env = _env(store, dagster_storage, tmp_path)

    verified = _plan(env)

    everything = verified.stdout + verified.stderr
    assert verified.returncode == 0, everything[-3000:]
    assert " - DEBUG - " not in everything
    assert "Warning" not in everything
    assert "STEP_SUCCESS" not in everything
    assert STEP_LINE.findall(verified.stdout) == ["passed"] * 4 + ["skipped"]
    assert "Step 5 (coordinator tests): skipped (by configuration)" in verified.stdout
    # The step lines come before the report, which follows as it did.
    assert verified.stdout.index("Step 5 (") < verified.stdout.index("## Run Proof Output Report")
    assert "| **Run ID** | `run-quiet` |" in verified.stdout
    assert "| **Coordinator verification_status** | `VERIFIED` |" in verified.stdout
    log = _log_of(verified.stdout, tmp_path).read_text(encoding="utf-8")
    assert "STEP_SUCCESS" in log and "step_4_integrity_expectations" in log
    assert " - DEBUG - " in log
    assert store.url.password not in everything + log

    touched = owner_sql(
        store,
        "UPDATE aos_trace_steps SET status = 'quietly-changed' WHERE run_id = %s "
        "AND step_index = 2",
        ("run-quiet",),
        table="aos_trace_steps",
    )
    assert touched == 1
    altered = _plan(env)

    everything = altered.stdout + altered.stderr
    assert altered.returncode == 1, everything[-3000:]
    assert " - DEBUG - " not in everything and "Warning" not in everything
    assert STEP_LINE.findall(altered.stdout) == ["passed"] * 3 + ["failed", "skipped"]
    step_4 = next(
        line for line in altered.stdout.splitlines() if line.startswith("Step 4 (integrity")
    )
    assert step_4.startswith("Step 4 (integrity expectations): failed: ")
    assert "step 2: step_hash mismatch" in step_4
    assert "the run-proof plan stopped" in altered.stderr
    assert "## Run Proof Output Report" not in altered.stdout  # no report for a stopped plan
    second_log = _log_of(altered.stdout, tmp_path)
    assert "STEP_FAILURE" in second_log.read_text(encoding="utf-8")
    assert len(list((tmp_path / "dagster_home" / "logs").glob("plan-*.log"))) == 2
    assert store.url.password not in everything + second_log.read_text(encoding="utf-8")


def test_verbose_shows_dagsters_events_and_writes_no_log(
    store: DatabaseUrl, dagster_storage: DatabaseUrl, tmp_path: Path
) -> None:
    record_run(store, "tenant-v", "run-verbose", steps=2)

    verbose = _plan(_env(store, dagster_storage, tmp_path), "--verbose")

    everything = verbose.stdout + verbose.stderr
    assert verbose.returncode == 0, everything[-3000:]
    assert "STEP_SUCCESS" in everything and " - DEBUG - " in everything
    assert LOG_LINE.search(verbose.stdout) is None
    assert not (tmp_path / "dagster_home" / "logs").exists()
    assert STEP_LINE.findall(verbose.stdout) == ["passed"] * 4 + ["skipped"]
    assert "| **Run ID** | `run-verbose` |" in verbose.stdout
