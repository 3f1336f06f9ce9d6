"""`run-proof retire`: a signed tombstone in the ledger before a run's rows go. Retired and then
deleted or archived is no alarm; deleted without a tombstone (or with a forged one) is."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from run_proof_pipeline.adoption.kinds import count_trace_kinds
from run_proof_pipeline.cli.main import app
from run_proof_pipeline.ledger.audit import audit_ledger
from run_proof_pipeline.ledger.keys import SigningKey, generate_signing_key, write_signing_key
from run_proof_pipeline.ledger.queries import ledger_trace_mismatches
from run_proof_pipeline.ledger.retirement import Tombstone, audit_tombstones
from run_proof_pipeline.ledger.settings import load_ledger_settings
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.migrate import upgrade
from run_proof_pipeline_tests.support.aos_fixtures import (
    aos_archive_trace,
    on,
    sql,
)
from run_proof_pipeline_tests.support.stores import owner_sql, record_run


@pytest.fixture
def signing_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SigningKey:
    key = generate_signing_key("run-proof-test")
    path = tmp_path / "keys" / "signing.key"
    write_signing_key(path, key)
    monkeypatch.setenv("RUN_PROOF_SIGNING_KEY", str(path))
    monkeypatch.delenv("RUN_PROOF_PUBLIC_KEY", raising=False)
    monkeypatch.delenv("RUN_PROOF_PUBLIC_KEY_FILE", raising=False)
    return key


@pytest.fixture
def upgraded(aos_store: DatabaseUrl) -> DatabaseUrl:
    """An upgraded AOS store with a native sealed run and an adopted one."""
    upgrade(aos_store)
    record_run(aos_store, "acme", "run-native", steps=3, chain_format=1)
    monkeypatch = pytest.MonkeyPatch()
    try:
        assert retire_cli(aos_store, monkeypatch, "adopt", "--run-id", "run-a").exit_code == 0
    finally:
        monkeypatch.undo()
    return aos_store


def retire_cli(url: DatabaseUrl, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    monkeypatch.setenv("DATABASE_URL", url.libpq())
    return CliRunner().invoke(app, list(args))


def refused(url: DatabaseUrl, monkeypatch: pytest.MonkeyPatch, tenant: str, run_id: str) -> Any:
    args = ("retire", "--tenant-id", tenant, "--run-id", run_id, "--reason", "retention")
    result = retire_cli(url, monkeypatch, *args)
    assert result.exit_code != 0, result.output
    return result


def retire(url: DatabaseUrl, monkeypatch: pytest.MonkeyPatch, tenant: str, run_id: str) -> str:
    result = retire_cli(
        url,
        monkeypatch,
        "retire",
        "--tenant-id",
        tenant,
        "--run-id",
        run_id,
        "--reason",
        "GDPR erasure request #17",
    )
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize(
    ("tenant", "run_id", "trace_id"),
    [
        ("acme", "run-native", "trace-run-native"),
        ("acme", "run-a", "tr-a"),
    ],
)
def test_retired_then_deleted_is_no_alarm(
    upgraded: DatabaseUrl,
    monkeypatch: pytest.MonkeyPatch,
    signing_key: SigningKey,
    tenant: str,
    run_id: str,
    trace_id: str,
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="retire it first"):
        sql(upgraded, "DELETE FROM aos_traces WHERE trace_id = %s", (trace_id,))
    # The format's seal (seal_hash: format v1's root_hash, or an adopted trace's v2 seal).
    root = sql(
        upgraded, "SELECT seal_hash, chain_length FROM aos_traces WHERE trace_id = %s", (trace_id,)
    )
    assert root[0][0] is not None

    output = retire(upgraded, monkeypatch, tenant, run_id)

    assert f"retired: tenant {tenant!r}, run {run_id!r}" in output
    assert "tombstone is ledger entry" in output
    tombstones = sql(
        upgraded,
        "SELECT root_hash, chain_length FROM run_proof_ledger WHERE kind = 'tombstone'"
        " AND tenant_id = %s AND run_id = %s",
        (tenant, run_id),
    )
    assert tombstones == root
    deleted = sql(upgraded, "DELETE FROM aos_traces WHERE trace_id = %s RETURNING 1", (trace_id,))
    assert deleted == [(1,)]
    assert sql(
        upgraded, "SELECT count(*) FROM aos_trace_steps WHERE trace_id = %s", (trace_id,)
    ) == [(0,)]
    assert on(upgraded, ledger_trace_mismatches) == []
    assert on(upgraded, lambda c: audit_tombstones(c, signing_key.verifier())) == []
    counts = on(upgraded, count_trace_kinds)
    assert (counts.retired, counts.retired_still_present) == (1, 0)


def test_deleted_without_a_tombstone_is_an_alarm(upgraded: DatabaseUrl) -> None:
    touched = owner_sql(
        upgraded,
        "DELETE FROM aos_traces WHERE trace_id = %s",
        ("trace-run-native",),
        table="aos_traces",
    )

    assert touched == 1
    problems = on(upgraded, ledger_trace_mismatches)
    assert len(problems) == 1
    assert "run 'run-native'" in problems[0] and "deleted" in problems[0]


def test_retired_run_can_be_archived_the_aos_way(
    upgraded: DatabaseUrl, monkeypatch: pytest.MonkeyPatch, signing_key: SigningKey
) -> None:
    with (
        psycopg.connect(upgraded.libpq()) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        aos_archive_trace(conn, "tr-a")
    retire(upgraded, monkeypatch, "acme", "run-a")
    columns = "run_id, adopted_at IS NOT NULL, chain_format, seal_hash, root_hash"
    live = sql(upgraded, f"SELECT {columns} FROM aos_traces WHERE trace_id = 'tr-a'")

    with psycopg.connect(upgraded.libpq()) as conn:
        assert aos_archive_trace(conn, "tr-a") == 1

    # The archive keeps the adopted (format v2) trace as it was: its seal and AOS's root hash.
    archived = sql(upgraded, f"SELECT {columns} FROM aos_traces_archive")
    assert archived == live
    assert archived[0][:3] == ("run-a", True, 2) and archived[0][3] is not None
    assert sql(upgraded, "SELECT count(*) FROM aos_traces WHERE trace_id = 'tr-a'") == [(0,)]
    assert on(upgraded, ledger_trace_mismatches) == []


def test_a_forged_tombstone_is_still_an_alarm(
    upgraded: DatabaseUrl, signing_key: SigningKey
) -> None:
    # Someone with SQL access but not the signing key writes a tombstone and deletes the run.
    forger = generate_signing_key("run-proof-test")
    root, length = sql(
        upgraded,
        "SELECT root_hash, chain_length FROM aos_traces WHERE trace_id = 'trace-run-native'",
    )[0]
    tombstone = Tombstone(
        tenant_id="acme",
        run_id="run-native",
        trace_id="trace-run-native",
        chain_length=length,
        root_hash=root,
        reason="cover-up",
    )
    sql(
        upgraded,
        "INSERT INTO run_proof_retirements (tenant_id, run_id, trace_id, chain_length,"
        " root_hash, reason, signer, signature) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (
            *tombstone.model_dump().values(),
            f"run-proof-test+{signing_key.verifier().id.hex()}",
            base64.b64encode(forger.sign(tombstone.message())).decode(),
        ),
    )
    sql(upgraded, "DELETE FROM aos_traces WHERE trace_id = 'trace-run-native'")

    problems = on(upgraded, lambda c: audit_tombstones(c, signing_key.verifier()))

    assert len(problems) == 1
    assert "run 'run-native'" in problems[0] and "signature does not verify" in problems[0]
    # The checkpoint audit applies the same check whenever a verifier key is configured.
    report = on(upgraded, lambda c: audit_ledger(c, load_ledger_settings()))
    assert any("signature does not verify" in p for p in report.problems)


def test_retire_is_idempotent_and_refuses_what_it_cannot_retire(
    upgraded: DatabaseUrl, monkeypatch: pytest.MonkeyPatch, signing_key: SigningKey
) -> None:
    retire(upgraded, monkeypatch, "acme", "run-native")
    again = retire(upgraded, monkeypatch, "acme", "run-native")
    assert "already retired" in again
    assert sql(upgraded, "SELECT count(*) FROM run_proof_ledger WHERE kind = 'tombstone'") == [(1,)]

    legacy = refused(upgraded, monkeypatch, "acme", "run-dup")
    assert legacy.exit_code == 4
    assert "legacy trace" in legacy.output
    other_tenant = refused(upgraded, monkeypatch, "globex", "run-native")
    assert other_tenant.exit_code == 4
    assert "no trace for tenant 'globex'" in other_tenant.output
    monkeypatch.delenv("RUN_PROOF_SIGNING_KEY")
    keyless = refused(upgraded, monkeypatch, "acme", "run-a")
    assert keyless.exit_code == 2
    assert "RUN_PROOF_SIGNING_KEY" in keyless.output
    assert sql(upgraded, "SELECT count(*) FROM run_proof_retirements") == [(1,)]


def test_an_unsealed_run_is_retired_at_its_head(
    store: DatabaseUrl, monkeypatch: pytest.MonkeyPatch, signing_key: SigningKey
) -> None:
    record_run(store, "t", "run-dead-writer", steps=2, seal=False)
    head = sql(
        store,
        "SELECT step_hash FROM aos_trace_steps WHERE run_id = 'run-dead-writer'"
        " ORDER BY step_index DESC LIMIT 1",
    )[0][0]

    retire(store, monkeypatch, "t", "run-dead-writer")

    assert sql(
        store, "SELECT root_hash, chain_length FROM run_proof_ledger WHERE kind = 'tombstone'"
    ) == [(head, 2)]
    assert sql(store, "DELETE FROM aos_traces WHERE run_id = 'run-dead-writer' RETURNING 1") == [
        (1,)
    ]
    assert on(store, lambda c: audit_tombstones(c, signing_key.verifier())) == []
