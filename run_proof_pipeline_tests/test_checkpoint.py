"""Signed checkpoints: `checkpoint create|verify`, keys outside the database, and the Dagster
job that writes one."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from run_proof_pipeline.cli.main import app
from run_proof_pipeline.defs.checkpoint.job import run_proof_checkpoint
from run_proof_pipeline.defs.resources import TraceStoreResource
from run_proof_pipeline.ledger.checkpoint import SignedCheckpoint
from run_proof_pipeline.ledger.keys import SigningKey, VerifierKey
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.ledger_fixtures import CheckpointEnv
from run_proof_pipeline_tests.support.stores import prove, record_run
from run_proof_pipeline_tests.test_ledger_support import (
    audit,
    ledger_entries,
    make_checkpoint,
    tamper,
)


def _cli(url: DatabaseUrl, monkeypatch: pytest.MonkeyPatch, *args: str):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", url.libpq())
    monkeypatch.delenv("USE_POSTGRES_TRACES", raising=False)
    return CliRunner().invoke(app, list(args))


def test_create_writes_a_c2sp_note_signed_by_a_new_private_key(
    store: DatabaseUrl, checkpoint_env: CheckpointEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_run(store, "tenant-a", "run-1", steps=2)
    record_run(store, "tenant-a", "run-2", steps=0)

    result = _cli(store, monkeypatch, "checkpoint", "create")

    assert result.exit_code == 0, result.output
    assert "created a new Ed25519 signing key" in result.output
    assert stat.S_IMODE(os.stat(checkpoint_env.signing_key).st_mode) == 0o600
    [path] = list(checkpoint_env.directory.iterdir())
    note = path.read_text(encoding="utf-8")
    lines = note.split("\n")
    assert lines[0] == f"run-proof.local/{store.database}" and lines[1] == "2"
    assert lines[3] == "" and lines[4].startswith("\u2014 run-proof.local/")
    signed = SignedCheckpoint.parse(note)
    key = SigningKey.parse(checkpoint_env.signing_key.read_text()).verifier()
    signed.verify(key)
    from run_proof_pipeline.integrity.merkle import root_from_leaves

    assert signed.checkpoint.root == root_from_leaves([e.leaf() for e in ledger_entries(store)])


def test_verify_accepts_consistent_growth_and_every_intact_run(
    store: DatabaseUrl, checkpoint_env: CheckpointEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_run(store, "tenant-a", "run-1", steps=2)
    first = make_checkpoint(store)
    record_run(store, "tenant-b", "run-2", steps=3)
    second = make_checkpoint(store)
    record_run(store, "tenant-b", "run-3", steps=1)

    result = _cli(store, monkeypatch, "checkpoint", "verify")

    assert (first.signed.checkpoint.size, second.signed.checkpoint.size) == (1, 2)
    assert second.previous_size == 1
    assert result.exit_code == 0, result.output
    assert "ledger_size: 3" in result.output and "tree size 2" in result.output


def test_verify_uses_only_the_public_key_and_never_creates_one(
    store: DatabaseUrl, checkpoint_env: CheckpointEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_run(store, "tenant-a", "run-1", steps=1)
    make_checkpoint(store)
    public = SigningKey.parse(checkpoint_env.signing_key.read_text()).verifier().text()
    missing = checkpoint_env.signing_key.with_name("absent.key")
    monkeypatch.setenv("RUN_PROOF_SIGNING_KEY", str(missing))
    monkeypatch.setenv("RUN_PROOF_PUBLIC_KEY", public)

    assert audit(store).problems == []
    monkeypatch.delenv("RUN_PROOF_PUBLIC_KEY")
    result = _cli(store, monkeypatch, "checkpoint", "verify")

    assert result.exit_code == 2
    assert "no key file there" in result.output
    assert not missing.exists()


def test_verify_reads_the_public_key_file_setting_and_refuses_both_key_settings(
    store: DatabaseUrl,
    checkpoint_env: CheckpointEnv,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    record_run(store, "tenant-a", "run-1", steps=1)
    make_checkpoint(store)
    public = SigningKey.parse(checkpoint_env.signing_key.read_text()).verifier().text()
    key_file = tmp_path / "ledger.pub"
    key_file.write_text(public + "\n", encoding="ascii")
    monkeypatch.setenv("RUN_PROOF_SIGNING_KEY", str(tmp_path / "absent.key"))
    monkeypatch.setenv("RUN_PROOF_PUBLIC_KEY_FILE", str(key_file))

    by_file = _cli(store, monkeypatch, "checkpoint", "verify")
    monkeypatch.setenv("RUN_PROOF_PUBLIC_KEY", public)
    both = _cli(store, monkeypatch, "checkpoint", "verify")

    assert by_file.exit_code == 0, by_file.output
    assert both.exit_code == 2
    assert "both RUN_PROOF_PUBLIC_KEY and RUN_PROOF_PUBLIC_KEY_FILE are given" in both.output


def test_a_checkpoint_edited_or_signed_by_another_key_is_named(
    store: DatabaseUrl, checkpoint_env: CheckpointEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_run(store, "tenant-a", "run-1", steps=1)
    created = make_checkpoint(store)
    # Another root under the same size (a size edit is caught sooner, by the file's name).
    root = base64.b64encode(created.signed.checkpoint.root).decode()
    created.path.write_text(
        created.path.read_text().replace(root, base64.b64encode(b"\0" * 32).decode())
    )

    edited = audit(store).problems
    other = SigningKey.parse(checkpoint_env.signing_key.read_text())
    stranger = VerifierKey("someone-else", other.verifier().public_key)
    monkeypatch.setenv("RUN_PROOF_PUBLIC_KEY", stranger.text())
    wrong_key = audit(store).problems

    assert len(edited) == 1 and "does not verify" in edited[0]
    assert len(wrong_key) == 1 and "no signature by the public key 'someone-else'" in wrong_key[0]


def test_verify_names_every_inconsistency_and_exits_1(
    store: DatabaseUrl, checkpoint_env: CheckpointEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    for run_id in ("run-1", "run-2", "run-3"):
        record_run(store, "tenant-a", run_id, steps=2)
    make_checkpoint(store)
    touched = tamper(
        store,
        ("DELETE FROM aos_traces WHERE run_id = %s", ("run-1",)),
        ("UPDATE aos_traces SET chain_length = 9 WHERE run_id = %s", ("run-3",)),
    )

    result = _cli(store, monkeypatch, "checkpoint", "verify")

    assert touched == [1, 1]
    assert result.exit_code == 1
    inconsistent = [line for line in result.output.splitlines() if line.startswith("INCONSISTENT")]
    assert len(inconsistent) == 2
    assert "ledger entry 1 (tenant 'tenant-a', run 'run-1')" in inconsistent[0]
    assert "run 'run-3'): chain_length mismatch (recorded 2, found 9)" in inconsistent[1]


def test_create_refuses_to_sign_a_rolled_back_ledger(
    store: DatabaseUrl, checkpoint_env: CheckpointEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_run(store, "tenant-a", "run-1", steps=1)
    record_run(store, "tenant-a", "run-2", steps=1)
    make_checkpoint(store)
    touched = tamper(
        store,
        ("DELETE FROM aos_traces WHERE run_id = %s", ("run-2",)),
        ("DELETE FROM run_proof_ledger WHERE run_id = %s", ("run-2",)),
    )

    result = _cli(store, monkeypatch, "checkpoint", "create")

    assert touched == [1, 1]
    assert result.exit_code == 1
    assert "checkpoint refused" in result.output and "rolled back" in result.output
    assert len(list(checkpoint_env.directory.iterdir())) == 1


def test_verify_without_any_checkpoint_yet_exits_4(
    store: DatabaseUrl, checkpoint_env: CheckpointEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_run(store, "tenant-a", "run-1", steps=1)
    make_checkpoint(store)
    for path in checkpoint_env.directory.iterdir():
        path.unlink()

    result = _cli(store, monkeypatch, "checkpoint", "verify")

    assert result.exit_code == 4
    assert "no checkpoint for origin" in result.output


def test_the_dagster_job_writes_a_checkpoint(
    store: DatabaseUrl, checkpoint_env: CheckpointEnv, dagster_instance: Any
) -> None:
    record_run(store, "tenant-a", "run-1", steps=2)

    result = run_proof_checkpoint.execute_in_process(
        instance=dagster_instance,
        resources={
            "trace_store": TraceStoreResource(
                database_url=store.libpq(), use_postgres_traces="true"
            )
        },
    )

    assert result.success
    written = result.output_for_node("write_ledger_checkpoint")
    assert SignedCheckpoint.parse(open(written, encoding="utf-8").read()).checkpoint.size == 1
    assert audit(store).problems == []


def test_verify_of_any_covered_run_fails_once_the_signed_prefix_was_rewritten(
    store: DatabaseUrl, checkpoint_env: CheckpointEnv
) -> None:
    for run_id in ("run-1", "run-2"):
        record_run(store, "tenant-a", run_id, steps=2)
    make_checkpoint(store)
    touched = tamper(
        store,
        (
            "UPDATE run_proof_ledger SET chain_length = 9, leaf_hash = run_proof_ledger_leaf("
            "kind, tenant_id, run_id, trace_id, 9, root_hash, recorded_at) WHERE run_id = %s",
            ("run-1",),
        ),
    )

    integrity = prove(store, "tenant-a", "run-2").integrity

    assert touched == [1]
    assert integrity.verification_status == "FAILED"
    assert integrity.failure is not None and integrity.failure.location == "ledger"
    assert "first 2 entries no longer hash to the head signed" in integrity.failure_reason
