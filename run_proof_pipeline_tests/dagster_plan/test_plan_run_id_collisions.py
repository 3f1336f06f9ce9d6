"""Issue 11, class 5: what the plan reports is what it proved.

A run id may be held by several traces or tenants: a legacy row (AOS's, written before the
store knew format v2, or one forged by the table owner with every trigger off; since migration
0006 a writer's plain INSERT is chained in format v2 and cannot take a format run's id), or a
step row of another tenant. The seed's SQL still runs word for word and is shown where the plan
says what it ran, but every field of the Output Report is the proven trace's, the count
compared with chain_length is that trace's (by trace_id), and the traces the seed's SQL would
pick or count besides it are named.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dagster import DagsterInstance

from run_proof_pipeline.plan.latest_sealed import prove_latest_sealed
from run_proof_pipeline.plan.queries import LATEST_TRACE_SQL, STEP_COUNT_SQL, TARGET_TRACE_SQL
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.migrate import upgrade
from run_proof_pipeline_tests.support.ledger_fixtures import CheckpointEnv
from run_proof_pipeline_tests.support.plan_runs import (
    PLAN_STEPS,
    output_metadata,
    plan_config,
    run_plan,
    succeeded_steps,
    trace_store,
)
from run_proof_pipeline_tests.support.stores import BASE, owner_sql, record_run
from run_proof_pipeline_tests.test_ledger_support import (
    audit,
    make_checkpoint,
    tamper,
)

TENANT = "tenant-acme"
RUN = "run-07-0003"
FORGED = (
    "INSERT INTO aos_traces (trace_id, run_id, tenant_id, status, started_at)"
    " VALUES ('forged-legacy', 'run-07-0003', 'tenant-acme', 'succeeded', '2026-02-10')"
)


def _client_sql(url: DatabaseUrl, statement: str, params: tuple[object, ...] = ()) -> int:
    """As any writer, every trigger on."""
    with psycopg.connect(url.libpq()) as conn:
        return conn.execute(statement, params).rowcount


def _legacy(url: DatabaseUrl, trace_id: str) -> bool:
    """The trace is a legacy row: no genesis, no format, no seal of a format."""
    with psycopg.connect(url.libpq()) as conn:
        row = conn.execute(
            "SELECT genesis_hash IS NULL AND chain_format IS NULL AND seal_hash IS NULL"
            " FROM aos_traces WHERE trace_id = %s",
            (trace_id,),
        ).fetchone()
    return row is not None and row[0] is True


def _stored_started_at(url: DatabaseUrl, trace_id: str) -> str:
    with psycopg.connect(url.libpq()) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        row = conn.execute(
            "SELECT started_at FROM aos_traces WHERE trace_id = %s", (trace_id,)
        ).fetchone()
    assert row is not None
    return row[0].isoformat()


def _report(path: Path) -> dict[str, object]:
    return json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))


def test_a_forged_legacy_row_with_a_sealed_runs_id_does_not_reach_the_report(
    store: DatabaseUrl,
    dagster_instance: DagsterInstance,
    report_dir: Path,
    checkpoint_env: CheckpointEnv,
) -> None:
    record_run(store, TENANT, RUN, steps=3, status="failed", chain_format=1)
    make_checkpoint(store)
    # A writer's INSERT is chained in format v2 (0006): the sealed run's id is refused to it.
    with pytest.raises(psycopg.errors.UniqueViolation, match="aos_traces_v1_run_id_key"):
        _client_sql(store, FORGED)
    assert _client_sql(store, "SELECT 1 FROM aos_traces WHERE trace_id = 'forged-legacy'") == 0
    # The owner, every trigger off, can still forge a legacy row with the run's id.
    assert tamper(store, (FORGED, ())) == [1]
    assert _legacy(store, "forged-legacy")

    result = run_plan(dagster_instance, trace_store(store), plan_config(report_dir))

    assert result.success
    assert succeeded_steps(dagster_instance, result.run_id) == PLAN_STEPS
    # Step 1 shows what the seed's SQL (word for word) returned: the forged row, named.
    step_1 = output_metadata(dagster_instance, result.run_id, "step_1_latest_trace")
    assert (step_1["run_id"], step_1["tenant_id"], step_1["status"]) == (RUN, TENANT, "succeeded")
    assert step_1["started_at"].startswith("2026-02-10T00:00:00")
    assert LATEST_TRACE_SQL in step_1["seed_sql"]
    assert step_1["proven_trace_id"] == f"trace-{RUN}"
    held = step_1["run_id_held_by"]
    assert "is held by 2 traces" in held
    assert "trace 'forged-legacy' (tenant 'tenant-acme', legacy, not sealed" in held
    assert f"trace 'trace-{RUN}' (tenant 'tenant-acme', format v1, sealed" in held
    assert "(the row of 'forged-legacy')" in held
    assert f"the coordinator proves trace 'trace-{RUN}'" in held

    # The report: every field is the proven trace's, and the collision is named.
    path = Path(result.output_for_node("output_report"))
    report = _report(path)
    assert report["verification_status"] == "VERIFIED"
    assert (report["run_id"], report["tenant_id"]) == (RUN, TENANT)
    assert report["status"] == "failed"
    assert report["started_at"] == _stored_started_at(store, f"trace-{RUN}")
    assert report["started_at"] == BASE.isoformat()
    assert (report["step_count"], report["chain_length"]) == (3, 3)
    assert report["trace_id"] == f"trace-{RUN}"
    assert "'forged-legacy'" in str(report["run_id_collisions"])
    markdown = path.read_text(encoding="utf-8")
    assert "**Proven trace_id**" in markdown and "**Run ID also held by**" in markdown

    # checkpoint verify: the recorded run is intact; the other holder is named, not blamed.
    audited = audit(store)
    assert audited.ok, audited.problems
    [note] = audited.notes
    assert note.startswith("ledger entry 1: the run id is also held by trace 'forged-legacy'")


def test_a_foreign_tenants_legacy_step_with_the_same_run_id_leaves_a_clean_run_verified(
    new_database: Any, dagster_instance: DagsterInstance, report_dir: Path
) -> None:
    # Before the upgrade (revision 0005) AOS's writer of another tenant wrote a legacy trace
    # and step with the same run id as a format-v1 run: AOS allowed that.
    store = DatabaseUrl.parse(new_database("store"))
    upgrade(store, "0005")
    record_run(store, "tenant-a", "run-clean", steps=3, chain_format=1)
    assert (
        _client_sql(
            store,
            "INSERT INTO aos_traces (trace_id, run_id, tenant_id, status, started_at)"
            " VALUES ('foreign-legacy', 'run-clean', 'tenant-b', 'succeeded', '2026-01-01')",
        )
        == 1
    )
    assert (
        _client_sql(
            store,
            "INSERT INTO aos_trace_steps (trace_id, run_id, tenant_id, step_index, skill_name)"
            " VALUES ('foreign-legacy', 'run-clean', 'tenant-b', 0, 'theirs')",
        )
        == 1
    )
    upgrade(store)
    assert _legacy(store, "foreign-legacy")
    # Since 0006 the same INSERT is chained in format v2, and a format trace never shares a
    # run id with a legacy one: it is refused.
    with pytest.raises(
        psycopg.errors.UniqueViolation, match="^run run-clean already has a legacy trace"
    ):
        _client_sql(
            store,
            "INSERT INTO aos_traces (trace_id, run_id, tenant_id, status, started_at)"
            " VALUES ('foreign-legacy-2', 'run-clean', 'tenant-b', 'succeeded', '2026-01-02')",
        )

    result = run_plan(
        dagster_instance,
        trace_store(store),
        plan_config(report_dir, run_id="run-clean", tenant_id="tenant-a"),
    )

    assert result.success
    step_1 = output_metadata(dagster_instance, result.run_id, "step_1_latest_trace")
    assert TARGET_TRACE_SQL in step_1["seed_sql"]
    assert "trace 'foreign-legacy' (tenant 'tenant-b', legacy" in step_1["run_id_held_by"]
    step_2 = output_metadata(dagster_instance, result.run_id, "step_2_step_count")
    assert step_2["step_count"] == 3
    assert STEP_COUNT_SQL in step_2["seed_sql"]
    covers = step_2["seed_count_covers"]
    assert "the seed's Step 2 SQL counts 4 step rows with run id 'run-clean'" in covers
    assert "1 of trace 'foreign-legacy' (tenant 'tenant-b')" in covers
    assert "3 of trace 'trace-run-clean' (tenant 'tenant-a')" in covers
    step_3 = output_metadata(dagster_instance, result.run_id, "step_3_coordinator_proof")
    assert (step_3["verification_status"], step_3["chain_length"]) == ("VERIFIED", 3)
    report = _report(Path(result.output_for_node("output_report")))
    assert (report["verification_status"], report["step_count"], report["chain_length"]) == (
        "VERIFIED",
        3,
        3,
    )
    assert (report["tenant_id"], report["trace_id"]) == ("tenant-a", "trace-run-clean")
    assert "'foreign-legacy'" in str(report["run_id_collisions"])
    assert "4 step rows" in str(report["run_id_collisions"])

    # The on-demand asset checks count the same way.
    latest = prove_latest_sealed(store)
    assert latest is not None and latest.step_count == 3
    assert latest.proof.integrity.verification_status == "VERIFIED"


def test_a_step_row_of_another_trace_under_the_run_id_is_named_not_counted(
    store: DatabaseUrl, dagster_instance: DagsterInstance, report_dir: Path
) -> None:
    record_run(store, "tenant-a", "run-other", steps=2, seal=False)
    record_run(store, "tenant-a", "run-x", steps=3, started_at=BASE + timedelta(hours=1))
    touched = owner_sql(
        store,
        "INSERT INTO aos_trace_steps (trace_id, run_id, tenant_id, step_index, skill_name)"
        " SELECT trace_id, %s, tenant_id, 2, 'smuggled' FROM aos_traces WHERE run_id = %s",
        ("run-x", "run-other"),
        table="aos_trace_steps",
    )
    assert touched == 1

    result = run_plan(dagster_instance, trace_store(store), plan_config(report_dir))

    # run-x's own rows are intact: VERIFIED, with the row counted by the seed's SQL named.
    assert result.success
    step_2 = output_metadata(dagster_instance, result.run_id, "step_2_step_count")
    assert step_2["step_count"] == 3
    assert "1 of trace 'trace-run-other' (tenant 'tenant-a')" in step_2["seed_count_covers"]
    assert "run_id_held_by" not in output_metadata(
        dagster_instance, result.run_id, "step_1_latest_trace"
    )
    report = _report(Path(result.output_for_node("output_report")))
    assert (report["run_id"], report["step_count"], report["chain_length"]) == ("run-x", 3, 3)
    assert "'trace-run-other'" in str(report["run_id_collisions"])
    # The trace the row was smuggled into fails its own proof.
    other = run_plan(
        dagster_instance,
        trace_store(store),
        plan_config(report_dir, run_id="run-other", tenant_id="tenant-a"),
    )
    assert not other.success
