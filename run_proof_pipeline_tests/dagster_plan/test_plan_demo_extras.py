"""`run-proof plan` on the embedded default (what `make demo` runs) leaves a UI worth opening:
the sweep of every tenant materialized, the plan's check history, and a signed checkpoint
(with a demo key under `.run-proof/`, 0600, reused on the next run). On a user's
DATABASE_URL it does none of these. Real PostgreSQL; the plan runs as a real process."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
from dagster import AssetCheckKey, AssetRecordsFilter, DagsterInstance

from run_proof_pipeline.cli.dagster_env import LOCATION_VARIABLES
from run_proof_pipeline.local_postgres import LocalPostgres
from run_proof_pipeline.pipeline.checks import CHECK_DESCRIPTIONS, TRACE_STORE
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.sweep.dagster_assets import SWEEP_ASSET
from run_proof_pipeline_tests.dagster_plan.test_plan_cli import RUN_PROOF, _plan, elsewhere
from run_proof_pipeline_tests.store_fixtures import record_run

pytestmark = pytest.mark.slow
__all__ = ["elsewhere"]  # the fixture, imported for this module's tests

SWEEP_LINE = re.compile(r"^Sweep of every tenant: (\d+) runs in 3 tenants, all VERIFIED$", re.M)
CHECKPOINT_LINE = re.compile(r"^Signed checkpoint \(tree size (\d+)\) at (\S+)$", re.M)
KEY_LINE = "demo signing key created at {}: for the demo only"
CHECKS_LINE = "Check history of aos_traces: 3 checks recorded by this plan, 3 passed"


def _verify(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RUN_PROOF, "checkpoint", "verify"],
        env={**{k: v for k, v in os.environ.items() if k not in LOCATION_VARIABLES}, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_the_embedded_default_leaves_a_sweep_the_check_history_and_a_signed_checkpoint(
    elsewhere: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("RUN_PROOF_SIGNING_KEY", "RUN_PROOF_CHECKPOINT_DIR", "RUN_PROOF_PUBLIC_KEY"):
        monkeypatch.delenv(name, raising=False)
    env = {"RUN_PROOF_HOME": str(elsewhere), "RUN_PROOF_REPORT_DIR": str(tmp_path / "reports")}
    state = elsewhere / ".run-proof"
    key = state / "demo-signing.key"

    first = _plan(env, cwd=elsewhere)

    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    swept = SWEEP_LINE.search(first.stdout)
    assert swept is not None, first.stdout[-2000:]
    assert int(swept.group(1)) == 11  # the seed's 12 traces, one still running
    assert CHECKS_LINE in first.stdout
    assert KEY_LINE.format(key) in first.stdout
    signed = CHECKPOINT_LINE.search(first.stdout)
    assert signed is not None, first.stdout[-2000:]
    checkpoint = Path(signed.group(2))
    assert checkpoint.is_file() and checkpoint.parent == state / "checkpoints"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    key_text = key.read_text(encoding="ascii")

    verified = _verify(
        {
            "RUN_PROOF_HOME": str(elsewhere),
            "RUN_PROOF_SIGNING_KEY": str(key),
            "RUN_PROOF_CHECKPOINT_DIR": str(state / "checkpoints"),
        },
        elsewhere,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"checkpoint: {checkpoint} (tree size {signed.group(1)})" in verified.stdout

    # Dagster's storage (the embedded server's `dagster` database) holds the sweep of each
    # tenant and the plan's three checks: what the UI shows.
    server = LocalPostgres(state / "postgres")
    monkeypatch.setenv("DAGSTER_HOME", str(state / "dagster_home"))
    monkeypatch.setenv("DAGSTER_PG_URL", server.url("dagster", driver=""))
    with DagsterInstance.get() as instance:
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
                AssetCheckKey(TRACE_STORE, name), limit=1
            )
            assert history and history[0].status.value == "SUCCEEDED", name

    # The second demo reuses its key (never a new one over it) and signs a checkpoint
    # consistent with the first.
    second = _plan(env, cwd=elsewhere)

    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "demo signing key created" not in second.stdout
    assert key.read_text(encoding="ascii") == key_text
    assert SWEEP_LINE.search(second.stdout) is not None
    again = CHECKPOINT_LINE.search(second.stdout)
    assert again is not None and Path(again.group(2)) != checkpoint


def test_a_users_database_gets_the_plan_only(
    store: DatabaseUrl, dagster_storage: DatabaseUrl, tmp_path: Path
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
