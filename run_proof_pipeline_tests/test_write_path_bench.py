"""The write-path benchmark (benchmarks/write_path.py, issue 13 item 6): its statements are
AOS's, and a tiny run of the script gives the JSON it documents, with the "after" side's
steps chained by the database and proved.  Shape and correctness only, never timing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import aos_writer
from run_proof_pipeline.plan.coordinator_checks.fixtures import NewDatabase
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.migrate import head_revision
from run_proof_pipeline_tests.support import aos_deployed

ROOT = Path(__file__).resolve().parents[1]
STEPS = 50


class _Recording:
    """A real psycopg connection that also keeps the text of every statement it runs."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.statements: list[str] = []

    def execute(self, query: str, params: Any = None) -> Any:
        self.statements.append(query)
        return self.conn.execute(query, params)


def test_statements_are_aos_deployed_texts(new_database: NewDatabase) -> None:
    url = DatabaseUrl.parse(new_database("wpb"))
    aos_deployed.create_aos_deployed_store(url)
    with aos_deployed.connect(url) as conn:
        recording = _Recording(conn)
        trace_id = aos_deployed.start_trace(recording, "run-wpb", "c", "acme", None, [])  # type: ignore[arg-type]
        aos_deployed.record_step(
            recording,  # type: ignore[arg-type]
            trace_id,
            0,
            "http_call",
            {"a": 1},
            "success",
            "SUCCESS",
            None,
            None,
            0.0,
            1.0,
            0,
        )
        aos_deployed.complete_trace(recording, "run-wpb", "completed", {"k": 1})  # type: ignore[arg-type]
    assert recording.statements == [
        aos_writer.START_TRACE_PSYCOPG,
        aos_writer.STEP_EXISTS_PSYCOPG,
        aos_writer.RECORD_STEP_PSYCOPG,
        aos_writer.COMPLETE_TRACE_PSYCOPG,
    ]
    assert aos_writer.RECORD_STEP.count("$") == 18
    assert aos_writer.RECORD_STEP.endswith(
        "$17, $18) ON CONFLICT (trace_id, step_index) DO NOTHING"
    )
    assert "%s" not in aos_writer.RECORD_STEP + aos_writer.START_TRACE + aos_writer.COMPLETE_TRACE


def _side(figures: dict[str, Any], rounds: int) -> None:
    assert figures["steps_per_second"] > 0
    assert 0 < figures["latency_ms_median"] <= figures["latency_ms_p99"]
    assert len(figures["rounds"]) == rounds


@pytest.mark.slow
def test_smoke_run_json_shape_and_chained_rows_verify(tmp_path: Path) -> None:
    out = tmp_path / "write.json"
    command = [sys.executable, "-m", "benchmarks.write_path", "--steps", str(STEPS)]
    command += ["--batches", "2", "--batch-size", "25", "--rounds", "2", "--json", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| autocommit, 2 statements per step | fsync=on |" in done.stdout
    results = json.loads(out.read_text())

    assert results["step_shape"]["columns"] == 18
    assert results["step_shape"]["params_bytes"] > 50
    assert results["step_shape"]["outcome_data_bytes"] > 50
    assert results["servers"]["fsync=on"]["fsync"] == "on"
    assert results["servers"]["fsync=on"]["synchronous_commit"] == "on"
    assert results["servers"]["fsync=off"]["fsync"] == "off"
    assert results["revisions"]["after"] == head_revision()
    for part in ("autocommit", "batched"):
        for server in ("fsync=on", "fsync=off"):
            sides = results[part][server]
            _side(sides["before"], 2)
            _side(sides["after"], 2)
            assert len(sides["ratio"]["rounds"]) == 2
            assert sides["ratio"]["median"] > 0
    assert set(results["targets"]) == {
        "autocommit_fsync_on_ratio",
        "batched_fsync=on_chained_steps_per_second",
        "batched_fsync=off_chained_steps_per_second",
    }
    assert all(target["chained"] for target in results["targets"].values()), results["targets"]

    for server in ("fsync=on", "fsync=off"):
        for part in ("autocommit", "batched"):
            stored = results["verification"][server][part]
            # Before the upgrade AOS's rows are plain; after it, every step is chained by the
            # database at insert (migration 0006) and the run proves as AOS wrote it.
            assert stored["before"] == {**stored["before"], "steps": STEPS, "chained_steps": 0}
            proof = stored["after"]
            assert proof["steps"] == STEPS
            assert proof["chained_steps"] == STEPS, proof
            # Every step hash recomputed in Python from the rows (benchmarks/write_recheck.py).
            assert proof["reference"] == {"checked": STEPS, "ok": True, "problem": None}
            assert proof["status"] == "VERIFIED", proof
            assert proof["model"] == "HASH_CHAIN"
            assert proof["chain_length"] == STEPS
            assert proof["sealed"] is True
