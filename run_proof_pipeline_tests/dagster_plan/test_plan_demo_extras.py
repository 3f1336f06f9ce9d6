"""`run-proof plan` on the embedded default (what `make demo` runs) leaves a UI worth opening:
the sweep of every tenant materialized, the plan's check history, and a signed checkpoint
written by a Dagster run of the job `run_proof_checkpoint` (with a demo key under
`.run-proof/`, 0600, reused afterwards). A failing extra is its own line after the plan's
result, and exit code 1; a plan Dagster could not even start a run of is one line, no
traceback. On a user's DATABASE_URL it does none of the extras. Real PostgreSQL; the plan runs
as a real process (each full plan costs about a minute: the embedded ones share one home)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import (
    AssetCheckKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    RunsFilter,
)

from run_proof_pipeline.cli import demo_extras
from run_proof_pipeline.cli.dagster_env import LOCATION_VARIABLES, dagster_environment
from run_proof_pipeline.defs.plan.checks import CHECK_DESCRIPTIONS, TRACE_STORE
from run_proof_pipeline.defs.sweep.assets import SWEEP_ASSET
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import resolve_database
from run_proof_pipeline_tests.dagster_plan.test_plan_cli import RUN_PROOF, _plan
from run_proof_pipeline_tests.support.stores import record_run

pytestmark = pytest.mark.slow

SWEEP_LINE = re.compile(r"^Sweep of every tenant: (\d+) runs in 3 tenants, all VERIFIED$", re.M)
CHECKPOINT_LINE = re.compile(r"^Signed checkpoint \(tree size (\d+)\) at (\S+)$", re.M)
REPORT_LINE = re.compile(r"^\(report written to \S+/run-proof-report-([0-9a-f-]+)\.md\)$", re.M)
LOG_LINE = re.compile(r"^Dagster's log: (\S+)$", re.M)
KEY_LINE = "demo signing key created at {}: for the demo only"
CHECKS_LINE = "Check history of aos_traces: 3 checks recorded by this plan, 3 passed"
PASSED_STEPS = [f"Step {n} (" for n in range(1, 5)]
# The settings a developer's shell may carry that would change where the demo signs.
LEDGER_VARIABLES = (
    "RUN_PROOF_SIGNING_KEY",
    "RUN_PROOF_CHECKPOINT_DIR",
    "RUN_PROOF_PUBLIC_KEY",
    "RUN_PROOF_PUBLIC_KEY_FILE",
    "RUN_PROOF_CHECKPOINT_ORIGIN",
)


@dataclass(frozen=True)
class Demo:
    home: Path
    reports: Path
    plan: subprocess.CompletedProcess[str]

    @property
    def state(self) -> Path:
        return self.home / ".run-proof"

    @property
    def key(self) -> Path:
        return self.state / "demo-signing.key"

    @property
    def checkpoints(self) -> Path:
        return self.state / "checkpoints"

    def plan_run_id(self, plan: subprocess.CompletedProcess[str] | None = None) -> str:
        found = REPORT_LINE.search((plan or self.plan).stdout)
        assert found is not None, (plan or self.plan).stdout[-2000:]
        return found.group(1)


@pytest.fixture(scope="module")
def ledger_unset() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        for name in LEDGER_VARIABLES:
            patch.delenv(name, raising=False)
        yield patch


@pytest.fixture(scope="module")
def demo(ledger_unset: pytest.MonkeyPatch) -> Iterator[Demo]:
    """One `run-proof plan` on a fresh embedded default (a home of its own on a short path:
    a unix socket path must stay under 108 bytes); its server is stopped afterwards by
    pg_ctl on its own data directory."""
    home = Path(tempfile.mkdtemp(prefix="rp-"))
    reports = home / "reports"
    try:
        plan = _plan({"RUN_PROOF_HOME": str(home), "RUN_PROOF_REPORT_DIR": str(reports)}, cwd=home)
        yield Demo(home, reports, plan)
    finally:
        server = LocalPostgres(home / ".run-proof" / "postgres")
        if server.is_initialized():
            server.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def instance(demo: Demo) -> Iterator[DagsterInstance]:
    """The demo's Dagster instance (the embedded server's `dagster` database): what the UI
    shows."""
    server = LocalPostgres(demo.state / "postgres")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(demo.state / "dagster_home"))
        patch.setenv("DAGSTER_PG_URL", server.url("dagster", driver=""))
        with DagsterInstance.get() as opened:
            yield opened


def _checkpoint_runs(instance: DagsterInstance, plan_run_id: str) -> list[DagsterRun]:
    return list(
        instance.get_runs(
            filters=RunsFilter(
                job_name=demo_extras.CHECKPOINT_JOB,
                tags={demo_extras.PLAN_RUN_TAG: plan_run_id},
            )
        )
    )


def _output_metadata(instance: DagsterInstance, run_id: str) -> dict[str, object]:
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_OUTPUT):
        event = entry.dagster_event
        if event is not None and event.step_key == demo_extras.CHECKPOINT_OP:
            return {k: v.value for k, v in event.step_output_data.metadata.items()}
    return {}


def _verify(demo: Demo) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RUN_PROOF, "checkpoint", "verify"],
        env={
            **{k: v for k, v in os.environ.items() if k not in LOCATION_VARIABLES},
            "RUN_PROOF_HOME": str(demo.home),
            "RUN_PROOF_SIGNING_KEY": str(demo.key),
            "RUN_PROOF_CHECKPOINT_DIR": str(demo.checkpoints),
        },
        cwd=demo.home,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_the_demo_prints_the_sweep_the_check_history_and_a_checkpoint_with_a_new_demo_key(
    demo: Demo,
) -> None:
    first = demo.plan
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    swept = SWEEP_LINE.search(first.stdout)
    assert swept is not None, first.stdout[-2000:]
    assert int(swept.group(1)) == 11  # the seed's 12 traces, one still running
    assert CHECKS_LINE in first.stdout
    assert KEY_LINE.format(demo.key) in first.stdout
    signed = CHECKPOINT_LINE.search(first.stdout)
    assert signed is not None, first.stdout[-2000:]
    assert int(signed.group(1)) > 0
    assert Path(signed.group(2)).parent == demo.checkpoints
    assert stat.S_IMODE(demo.key.stat().st_mode) == 0o600


def test_the_checkpoint_is_a_dagster_run_whose_file_verifies(
    demo: Demo, instance: DagsterInstance
) -> None:
    assert demo.plan.returncode == 0, demo.plan.stdout[-3000:]
    signed = CHECKPOINT_LINE.search(demo.plan.stdout)
    assert signed is not None, demo.plan.stdout[-2000:]

    runs = _checkpoint_runs(instance, demo.plan_run_id())
    assert len(runs) == 1
    run = runs[0]
    assert run.status == DagsterRunStatus.SUCCESS
    metadata = _output_metadata(instance, run.run_id)
    # The printed line is what Dagster recorded.
    assert metadata["path"] == signed.group(2)
    assert metadata["tree_size"] == int(signed.group(1))
    checkpoint = Path(str(metadata["path"]))
    assert checkpoint.is_file()

    verified = _verify(demo)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"checkpoint: {checkpoint} (tree size {signed.group(1)})" in verified.stdout


def test_the_instance_holds_the_sweep_of_each_tenant_and_the_plans_checks(
    demo: Demo, instance: DagsterInstance
) -> None:
    assert demo.plan.returncode == 0, demo.plan.stdout[-3000:]
    for tenant in ("tenant-acme", "tenant-globex", "tenant-initech"):
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=SWEEP_ASSET, asset_partitions=[tenant]), limit=1
        ).records
        assert records, tenant
        metadata = records[0].asset_materialization.metadata  # type: ignore[union-attr]
        assert metadata["failures"].value == 0
        assert metadata["runs"].value > 0
    for name in CHECK_DESCRIPTIONS:
        history = instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(TRACE_STORE, name), limit=5
        )
        mine = [h for h in history if h.run_id == demo.plan_run_id()]
        assert mine and mine[0].status.value == "SUCCEEDED", name


def test_the_next_checkpoint_reuses_the_demo_key(
    demo: Demo, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's checkpoint half again (a real run of the job, not a whole plan): the key is
    read, never replaced, and signs a new checkpoint consistent with the first."""
    assert demo.plan.returncode == 0, demo.plan.stdout[-3000:]
    first = CHECKPOINT_LINE.search(demo.plan.stdout)
    assert first is not None
    key_text = demo.key.read_text(encoding="ascii")
    for name in LOCATION_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RUN_PROOF_HOME", str(demo.home))
    monkeypatch.setenv("RUN_PROOF_REPORT_DIR", str(demo.reports))
    monkeypatch.chdir(demo.home)
    env = dagster_environment(resolve_database()).env
    tag = "reuse-check"

    lines, ok = demo_extras._checkpoint(env, tag, None, None)

    assert ok, lines
    assert not any("signing key" in line for line in lines), lines
    assert demo.key.read_text(encoding="ascii") == key_text
    again = CHECKPOINT_LINE.search("\n".join(lines))
    assert again is not None, lines
    assert Path(again.group(2)) != Path(first.group(2))
    assert int(again.group(1)) >= int(first.group(1))
    runs = _checkpoint_runs(instance, tag)
    assert [r.status for r in runs] == [DagsterRunStatus.SUCCESS]
    assert _verify(demo).returncode == 0


@pytest.fixture(scope="module")
def failing_checkpoint(demo: Demo) -> subprocess.CompletedProcess[str]:
    """A second plan on the demo's home whose checkpoint fails for real: the demo's checkpoint
    directory is a regular file (the job cannot create it). The plan's own environment
    carries no checkpoint setting, so only the extra fails. The directory is put back
    afterwards."""
    assert demo.plan.returncode == 0, demo.plan.stdout[-3000:]
    kept = demo.state / "checkpoints.kept"
    demo.checkpoints.rename(kept)
    demo.checkpoints.write_text("not a directory\n", encoding="ascii")
    try:
        return _plan(
            {"RUN_PROOF_HOME": str(demo.home), "RUN_PROOF_REPORT_DIR": str(demo.reports)},
            cwd=demo.home,
        )
    finally:
        demo.checkpoints.unlink()
        kept.rename(demo.checkpoints)


def test_a_failing_checkpoint_is_one_line_naming_the_log_after_the_plans_result_and_exit_1(
    demo: Demo, failing_checkpoint: subprocess.CompletedProcess[str], instance: DagsterInstance
) -> None:
    out = failing_checkpoint.stdout
    assert failing_checkpoint.returncode == 1, out[-3000:] + failing_checkpoint.stderr[-3000:]
    logged = LOG_LINE.search(out)
    assert logged is not None, out[:2000]
    log_path = Path(logged.group(1))
    failure = f"Signed checkpoint: failed (see the log: {log_path})"
    assert failure in out.splitlines()
    # The plan's steps and report come first, the other extras still ran.
    for step in PASSED_STEPS:
        assert re.search(rf"^{re.escape(step)}[^\n]*\): passed$", out, re.M), step
    assert out.index("## Run Proof Output Report") < out.index(failure)
    assert SWEEP_LINE.search(out) is not None
    assert CHECKPOINT_LINE.search(out) is None
    assert "the plan passed, but the demo's sweep or checkpoint did not" in (
        failing_checkpoint.stderr
    )
    assert "Traceback" not in out + failing_checkpoint.stderr
    # Dagster recorded the failed run, and its log says why.
    runs = _checkpoint_runs(instance, demo.plan_run_id(failing_checkpoint))
    assert [r.status for r in runs] == [DagsterRunStatus.FAILURE]
    assert "checkpoint not written" in log_path.read_text(encoding="utf-8", errors="replace")
    assert "demo signing key created" not in out


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_plan_dagster_cannot_start_a_run_of_is_one_line_and_no_traceback(
    store: DatabaseUrl, tmp_path: Path, ledger_unset: pytest.MonkeyPatch
) -> None:
    record_run(store, "tenant-n", "run-norun", steps=3)
    password = "no-run-secret-9f2c"
    env = {
        "DATABASE_URL": store.libpq(),
        "DAGSTER_PG_URL": (
            f"postgresql+psycopg2://dagster:{password}@127.0.0.1:{_closed_port()}/dagster"
        ),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "RUN_PROOF_HOME": str(tmp_path),
        "RUN_PROOF_REPORT_DIR": str(tmp_path / "reports"),
    }

    completed = _plan(env, cwd=tmp_path)

    terminal = completed.stdout + completed.stderr
    assert completed.returncode != 0, terminal[-3000:]
    said = [line for line in completed.stdout.splitlines() if "Dagster recorded no run" in line]
    assert len(said) == 1, completed.stdout[-3000:]
    logged = LOG_LINE.search(completed.stdout)
    assert logged is not None and f"(its log: {logged.group(1)})" in said[0]
    assert not re.search(r"^Step \d", completed.stdout, re.M)
    # The closing line points at that line, not at a failed step there is none of.
    assert "the run-proof plan stopped: see the line above" in completed.stderr
    assert "failed step" not in terminal
    assert "Traceback" not in terminal
    assert password not in terminal
    for absent in ("Sweep of every tenant", "Signed checkpoint"):
        assert absent not in terminal


def test_a_users_database_gets_the_plan_only(
    store: DatabaseUrl,
    dagster_storage: DatabaseUrl,
    tmp_path: Path,
    ledger_unset: pytest.MonkeyPatch,
) -> None:
    record_run(store, "tenant-u", "run-user", steps=3)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "DATABASE_URL": store.libpq(),
        "DAGSTER_PG_URL": dagster_storage.libpq(),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "RUN_PROOF_HOME": str(home),
        "RUN_PROOF_REPORT_DIR": str(tmp_path / "reports"),
    }

    completed = _plan(env, cwd=tmp_path)

    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "Step 4 (integrity expectations): passed" in completed.stdout
    for absent in ("Sweep of every tenant", "Check history", "Signed checkpoint", "signing key"):
        assert absent not in completed.stdout + completed.stderr
    assert not (home / ".run-proof").exists()
    assert not (tmp_path / ".run-proof").exists()
