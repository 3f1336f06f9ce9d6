"""The ledger of run roots: fed by the database on every seal, append-only, gapless, and the
anchor of rule 5 for `verify`."""

from __future__ import annotations

import psycopg
import pytest

from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.migrate import upgrade
from run_proof_pipeline_tests.support.stores import prove, record_run
from run_proof_pipeline_tests.test_ledger_support import ledger_entries, one, tamper

pytestmark = pytest.mark.usefixtures("store")


def test_every_seal_appends_one_entry_whose_leaf_the_reader_recomputes(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-1", steps=2, chain_format=1)
    record_run(store, "tenant-b", "run-2", steps=0, chain_format=1)
    record_run(store, "tenant-a", "run-open", steps=1, seal=False, chain_format=1)

    entries = ledger_entries(store)

    assert [(e.seq, e.kind, e.tenant_id, e.run_id) for e in entries] == [
        (1, "seal", "tenant-a", "run-1"),
        (2, "seal", "tenant-b", "run-2"),
    ]
    stored_root = one(store, "SELECT root_hash FROM aos_traces WHERE run_id = %s", ("run-1",))
    assert entries[0].root_hash == stored_root and entries[0].chain_length == 2
    assert all(e.leaf_hash == e.leaf().hex() for e in entries)


def test_a_sealed_trace_inserted_directly_is_recorded_too(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-src", steps=0, chain_format=1)
    with psycopg.connect(store.libpq()) as conn:
        conn.execute(
            "INSERT INTO aos_traces (trace_id, run_id, tenant_id, status, started_at,"
            " completed_at, genesis_hash, root_hash, chain_length)"
            " SELECT 'trace-copy', 'run-copy', tenant_id, status, started_at, completed_at,"
            " genesis_hash, root_hash, chain_length FROM aos_traces WHERE run_id = 'run-src'"
        )

    assert [e.run_id for e in ledger_entries(store)] == ["run-src", "run-copy"]


def test_a_rolled_back_seal_leaves_no_gap(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-1", steps=1, chain_format=1)
    record_run(store, "tenant-a", "run-2", steps=1, seal=False, chain_format=1)
    with psycopg.connect(store.libpq()) as conn:
        conn.execute(
            "UPDATE aos_traces SET status = 'succeeded', completed_at = now(),"
            " root_hash = repeat('0', 64), chain_length = 1 WHERE run_id = 'run-2'"
        )
        conn.rollback()
    record_run(store, "tenant-a", "run-3", steps=1, chain_format=1)

    assert [(e.seq, e.run_id) for e in ledger_entries(store)] == [(1, "run-1"), (2, "run-3")]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE run_proof_ledger SET root_hash = repeat('0', 64)",
        "DELETE FROM run_proof_ledger",
        "TRUNCATE run_proof_ledger",
        "INSERT INTO run_proof_ledger (kind, tenant_id, run_id, trace_id, chain_length,"
        " root_hash) VALUES ('seal', 'tenant-a', 'forged', 'trace-forged', 0, repeat('0', 64))",
    ],
    ids=["update", "delete", "truncate", "forged-insert"],
)
def test_the_ledger_rejects_every_change_but_the_seal_trigger_even_in_replica_mode(
    store: DatabaseUrl, statement: str
) -> None:
    record_run(store, "tenant-a", "run-1", steps=1)
    with psycopg.connect(store.libpq()) as conn:
        conn.execute("SET session_replication_role = replica")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="run_proof_ledger"):
            conn.execute(statement)

    assert [e.run_id for e in ledger_entries(store)] == ["run-1"]


def test_the_migration_backfills_existing_seals_in_seal_order(new_database) -> None:  # type: ignore[no-untyped-def]
    url = DatabaseUrl.parse(new_database("backfill"))
    upgrade(url, "0001")
    record_run(url, "tenant-a", "run-b", steps=2, chain_format=1)
    record_run(url, "tenant-a", "run-a", steps=1, chain_format=1)
    record_run(url, "tenant-a", "run-open", steps=1, seal=False, chain_format=1)

    upgrade(url)

    entries = ledger_entries(url)
    assert [(e.seq, e.run_id, e.chain_length) for e in entries] == [
        (1, "run-b", 2),
        (2, "run-a", 1),
    ]
    assert all(e.leaf_hash == e.leaf().hex() for e in entries)
    assert prove(url, "tenant-a", "run-a").integrity.verification_status == "VERIFIED"


def test_verify_is_anchored_by_the_ledger_entry(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-1", steps=3)

    integrity = prove(store, "tenant-a", "run-1").integrity

    assert integrity.verification_status == "VERIFIED"
    assert integrity.anchored is True


def test_an_unsealed_run_needs_no_entry(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-live", steps=2, seal=False)

    assert prove(store, "tenant-a", "run-live").integrity.verification_status == "UNSEALED"


def test_a_sealed_run_without_an_entry_fails_at_ledger(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-1", steps=2)

    touched = tamper(store, ("DELETE FROM run_proof_ledger WHERE run_id = %s", ("run-1",)))

    assert touched == [1]
    integrity = prove(store, "tenant-a", "run-1").integrity
    assert integrity.verification_status == "FAILED"
    assert integrity.failure is not None and integrity.failure.location == "ledger"
    assert "has no ledger entry" in integrity.failure_reason


def test_an_entry_edited_without_its_leaf_hash_fails_at_ledger(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-1", steps=2)

    touched = tamper(
        store, ("UPDATE run_proof_ledger SET chain_length = 7 WHERE run_id = %s", ("run-1",))
    )

    assert touched == [1]
    integrity = prove(store, "tenant-a", "run-1").integrity
    assert integrity.verification_status == "FAILED"
    assert integrity.failure is not None and integrity.failure.location == "ledger"
    assert "leaf_hash mismatch" in integrity.failure_reason


def test_a_run_sealed_twice_fails_at_ledger(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-1", steps=2, chain_format=1)
    # Clear the seal as the owner could (the seal guard off, the ledger trigger left on),
    # then seal again through the normal path: the ledger now holds two seals.
    cleared = tamper(
        store,
        (
            "UPDATE aos_traces SET root_hash = NULL, chain_length = NULL, completed_at = NULL,"
            " status = 'running' WHERE run_id = %s",
            ("run-1",),
        ),
    )
    with psycopg.connect(store.libpq()) as conn:
        conn.execute(
            "UPDATE aos_traces SET root_hash = %s, chain_length = 2, status = 'failed',"
            " completed_at = now() WHERE run_id = 'run-1'",
            ("f" * 64,),
        )

    assert cleared == [1]
    assert [e.run_id for e in ledger_entries(store)] == ["run-1", "run-1"]
    integrity = prove(store, "tenant-a", "run-1").integrity
    assert integrity.verification_status == "FAILED"
    assert integrity.failure is not None and integrity.failure.location in ("seal", "ledger")
