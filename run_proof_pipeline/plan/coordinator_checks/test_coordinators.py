"""The coordinator's own tests: the seed's Step 5 runs this file on its own, with pytest.

It ships inside the package, so that an installed code location runs the same tests as a
checkout. Its fixtures (conftest.py beside it) start a throwaway PostgreSQL server; it never
touches the target database and never launches the Dagster job. The checkout's suite runs
these very functions too (run_proof_pipeline_tests/test_run_introspection_coordinators.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from run_proof_pipeline.plan.coordinator_checks.support import owner_sql, prove, record_run
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.migrate import upgrade

pytestmark = pytest.mark.usefixtures("store")


def test_valid_trace_is_verified_hash_chain(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-ok", steps=5)

    result = prove(store, "tenant-a", "run-ok")

    assert result.integrity.model == "HASH_CHAIN"
    assert result.integrity.verification_status == "VERIFIED"
    assert result.integrity.chain_length == 5
    assert result.integrity.root_hash is not None and len(result.integrity.root_hash) == 64
    assert result.integrity.failure_reason is None
    assert len(result.aos_traces) == 1 and result.aos_traces[0].step_count == 5
    assert [s.step_index for s in result.aos_trace_steps] == [0, 1, 2, 3, 4]


def test_root_hash_matches_the_stored_seal(store: DatabaseUrl) -> None:
    import psycopg

    record_run(store, "tenant-a", "run-root", steps=2)
    with psycopg.connect(store.libpq()) as conn:
        # The format's seal (docs/hash-chain-v2.md "Where every value is stored").
        row = conn.execute(
            "SELECT seal_hash FROM aos_traces WHERE run_id = %s", ("run-root",)
        ).fetchone()

    assert row is not None and row[0] is not None
    assert prove(store, "tenant-a", "run-root").integrity.root_hash == row[0]


def test_missing_run_is_unsupported_with_the_aos_reason(store: DatabaseUrl) -> None:
    result = prove(store, "tenant-a", "no-such-run")

    assert result.integrity.verification_status == "UNSUPPORTED"
    assert result.integrity.failure_reason == "No trace found for run"
    assert result.integrity.model == "NONE"
    assert result.aos_traces == [] and result.aos_trace_steps == []


def test_wrong_tenant_reads_exactly_like_a_missing_run(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-private", steps=2)

    wrong = prove(store, "tenant-b", "run-private")
    missing = prove(store, "tenant-b", "run-that-does-not-exist")

    skip = {"verified_at", "elapsed_seconds", "run_id"}
    assert wrong.model_dump(exclude=skip) == missing.model_dump(exclude=skip)
    assert wrong.aos_traces == [] and wrong.aos_trace_steps == []


def test_zero_step_sealed_trace_has_a_real_proof(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-empty", steps=0)

    result = prove(store, "tenant-a", "run-empty")

    assert result.integrity.verification_status == "VERIFIED"
    assert result.integrity.chain_length == 0
    assert result.integrity.root_hash is not None


def test_unsealed_trace_verifies_as_a_prefix_only(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-live", steps=3, seal=False)

    result = prove(store, "tenant-a", "run-live")

    assert result.integrity.verification_status == "UNSEALED"
    assert result.integrity.chain_length == 3
    assert result.integrity.root_hash is None


def test_edited_step_field_fails_naming_that_step(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-edit", steps=5)
    touched = owner_sql(
        store,
        "UPDATE aos_trace_steps SET cost_cents = 99 WHERE run_id = %s AND step_index = 2",
        ("run-edit",),
        table="aos_trace_steps",
    )
    assert touched == 1

    result = prove(store, "tenant-a", "run-edit")

    assert result.integrity.verification_status == "FAILED"
    assert result.integrity.failure is not None
    assert result.integrity.failure.location == "step"
    assert result.integrity.failure.step_index == 2
    assert result.integrity.failure.expected != result.integrity.failure.found
    assert "step 2" in (result.integrity.failure_reason or "")


def test_deleted_middle_step_fails_at_the_gap(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-gap", steps=5)
    touched = owner_sql(
        store,
        "DELETE FROM aos_trace_steps WHERE run_id = %s AND step_index = 2",
        ("run-gap",),
        table="aos_trace_steps",
    )
    assert touched == 1

    result = prove(store, "tenant-a", "run-gap")

    assert result.integrity.verification_status == "FAILED"
    assert result.integrity.failure is not None
    assert result.integrity.failure.step_index == 2


def test_include_payloads_returns_step_params(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-payloads", steps=2)

    plain = prove(store, "tenant-a", "run-payloads")
    full = prove(store, "tenant-a", "run-payloads", include_payloads=True)

    assert plain.aos_trace_steps[0].params is None
    assert full.aos_trace_steps[1].params["attempt"] == 1


def test_step_summaries_can_be_capped_while_the_proof_covers_every_step(
    store: DatabaseUrl,
) -> None:
    record_run(store, "tenant-a", "run-capped", steps=6)

    result = prove(store, "tenant-a", "run-capped", step_summary_limit=2)

    assert len(result.aos_trace_steps) == 2
    assert result.step_summaries_truncated
    assert result.steps_read == 6
    assert result.integrity.chain_length == 6
    assert result.integrity.verification_status == "VERIFIED"


def test_legacy_trace_without_genesis_is_never_verified(new_database: Any) -> None:
    """A trace written before the store knew format v2 (here: at revision 0005, by a plain
    INSERT, as AOS wrote its traces) stays legacy after the upgrade: UNSUPPORTED, never
    VERIFIED. (Since 0006 the same INSERT is chained by the database instead.)"""
    import psycopg

    url = DatabaseUrl.parse(new_database("legacy"))
    upgrade(url, "0005")
    with psycopg.connect(url.libpq()) as conn:
        conn.execute(
            "INSERT INTO aos_traces (trace_id, run_id, tenant_id, status)"
            " VALUES ('trace-legacy', 'run-legacy', 'tenant-a', 'completed')"
        )
    upgrade(url)

    result = prove(url, "tenant-a", "run-legacy")

    assert result.integrity.verification_status == "UNSUPPORTED"
    assert "legacy" in (result.integrity.failure_reason or "")


def test_a_plain_insert_is_chained_by_the_database(store: DatabaseUrl) -> None:
    """Any client's INSERT is hashed by PostgreSQL itself (format v2): a finished trace with
    no steps listed is sealed at insert, with its genesis and seal in columns of ours."""
    import psycopg

    with psycopg.connect(store.libpq()) as conn:
        conn.execute(
            "INSERT INTO aos_traces (trace_id, run_id, tenant_id, status)"
            " VALUES ('trace-plain', 'run-plain', 'tenant-a', 'completed')"
        )
        [(seal_hash, chain_format)] = conn.execute(
            "SELECT seal_hash, chain_format FROM aos_traces WHERE trace_id = 'trace-plain'"
        ).fetchall()

    result = prove(store, "tenant-a", "run-plain")

    assert chain_format == 2
    assert result.integrity.verification_status == "VERIFIED"
    assert result.integrity.chain_length == 0
    assert result.integrity.root_hash == seal_hash
