"""`run-proof` commands: documented exit codes, one clear stderr line, no password shown."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from run_proof_pipeline.cli.main import app
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.stores import owner_sql, record_run

VECTORS = Path(__file__).resolve().parents[1] / "run_proof_pipeline/integrity/data"


def _invoke(url: DatabaseUrl | str | None, *args: str, monkeypatch: pytest.MonkeyPatch):
    if url is None:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("DATABASE_URL", url if isinstance(url, str) else url.libpq())
    monkeypatch.delenv("USE_POSTGRES_TRACES", raising=False)
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize(
    ("setup", "status", "code"),
    [("sealed", "VERIFIED", 0), ("tampered", "FAILED", 1), ("unsealed", "UNSEALED", 3)],
)
def test_verify_exit_code_follows_the_verdict(
    store: DatabaseUrl, monkeypatch: pytest.MonkeyPatch, setup: str, status: str, code: int
) -> None:
    record_run(store, "tenant-a", "run-cli", steps=3, seal=setup != "unsealed")
    if setup == "tampered":
        touched = owner_sql(
            store,
            "UPDATE aos_trace_steps SET skill_name = 'evil' WHERE run_id = %s AND step_index = 1",
            ("run-cli",),
            table="aos_trace_steps",
        )
        assert touched == 1

    result = _invoke(
        store, "verify", "--tenant-id", "tenant-a", "--run-id", "run-cli", monkeypatch=monkeypatch
    )

    assert result.exit_code == code, result.output
    assert f"verification_status: {status}" in result.output
    assert result.output.splitlines()[0].startswith("Using DATABASE_URL=")
    assert store.url.password not in result.output
    if status == "FAILED":
        assert "step 1" in result.output


def test_verify_json_is_one_object(store: DatabaseUrl, monkeypatch: pytest.MonkeyPatch) -> None:
    record_run(store, "tenant-a", "run-json", steps=2)

    result = _invoke(
        store,
        "verify",
        "--tenant-id",
        "tenant-a",
        "--run-id",
        "run-json",
        "--json",
        monkeypatch=monkeypatch,
    )

    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert payload["integrity"]["verification_status"] == "VERIFIED"
    assert payload["integrity"]["chain_length"] == 2


def test_wrong_tenant_exits_like_a_missing_run(
    store: DatabaseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_run(store, "tenant-a", "run-private", steps=1)

    wrong = _invoke(
        store,
        "verify",
        "--tenant-id",
        "tenant-b",
        "--run-id",
        "run-private",
        monkeypatch=monkeypatch,
    )
    missing = _invoke(
        store, "verify", "--tenant-id", "tenant-b", "--run-id", "nope", monkeypatch=monkeypatch
    )

    assert wrong.exit_code == missing.exit_code == 4
    assert "No trace found for run" in wrong.output


def test_non_postgres_url_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    result = _invoke(
        "sqlite:///x.db", "verify", "--tenant-id", "t", "--run-id", "r", monkeypatch=monkeypatch
    )

    assert result.exit_code == 2
    assert "not a PostgreSQL URL" in result.output


def test_unreachable_database_exits_5_without_password(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://someone:topsecret@127.0.0.1:1/nowhere"
    result = _invoke(url, "verify", "--tenant-id", "t", "--run-id", "r", monkeypatch=monkeypatch)

    assert result.exit_code == 5
    assert "database unreachable" in result.output
    assert "topsecret" not in result.output
    assert "Traceback" not in result.output


def test_vectors_command_accepts_the_shipped_vectors(monkeypatch: pytest.MonkeyPatch) -> None:
    result = _invoke(
        None, "vectors", str(VECTORS / "hash-chain-v1-vectors.json"), monkeypatch=monkeypatch
    )

    assert result.exit_code == 0, result.output
    assert "cases match" in result.output


def test_vectors_command_names_the_first_mismatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = json.loads((VECTORS / "hash-chain-v1-vectors.json").read_text())
    case = data["cases"][0]
    good = case["expected"]["step_hashes"][1]
    case["expected"]["step_hashes"][1] = "0" * 64
    mutated = tmp_path / "mutated.json"
    mutated.write_text(json.dumps(data))

    result = _invoke(None, "vectors", str(mutated), monkeypatch=monkeypatch)

    assert result.exit_code == 1
    assert case["name"] in result.output and "step_hashes" in result.output
    # The file's value is the stored side, ours the recomputed one.
    line = next(x for x in result.output.splitlines() if x.startswith("{"))
    assert json.loads(line) == {
        "case": case["name"],
        "field": "step_hashes[1]",
        "stored": "0" * 64,
        "recomputed": good,
    }
    assert f"(recomputed {good}, the file holds {'0' * 64})" in result.output


@pytest.mark.slow
def test_without_database_url_the_embedded_default_is_announced_first(tmp_path: Path) -> None:
    """A real process on a fresh embedded default of its own (RUN_PROOF_HOME), stopped after."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["RUN_PROOF_HOME"] = str(tmp_path)
    cli = shutil.which("run-proof", path=str(Path(sys.executable).parent))
    assert cli is not None
    try:
        completed = subprocess.run(
            [cli, "demo", "--runs", "3"], env=env, capture_output=True, text=True, timeout=180
        )
        assert completed.returncode == 0, completed.stderr
        first = completed.stdout.splitlines()[0]
        assert first.startswith("Using the embedded default PostgreSQL")
        assert "set DATABASE_URL" in first
        assert "seeded 3 traces" in completed.stdout
    finally:
        subprocess.run([cli, "db", "stop"], env=env, capture_output=True, timeout=60)


def test_progress_bar_draws_on_a_terminal_and_stays_out_of_pipes() -> None:
    import io

    from run_proof_pipeline.cli.progress import step_progress_bar

    terminal = io.StringIO()
    with step_progress_bar(enabled=True, stream=terminal, force_terminal=True) as update:
        assert update is not None
        update(20_000, 1_000_000)
        update(40_000, 1_000_000)
    assert "verifying steps" in terminal.getvalue()
    assert "40000/1000000" in terminal.getvalue()

    pipe = io.StringIO()
    with step_progress_bar(enabled=True, stream=pipe) as update:
        assert update is None
    with step_progress_bar(enabled=False, stream=terminal, force_terminal=True) as update:
        assert update is None
    assert pipe.getvalue() == ""
