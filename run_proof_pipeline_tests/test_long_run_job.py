"""The Dagster job `run_proof_long_run` (defs/long_run/, proof/long_run.py): one sealed run
proved in segment ops, each in a REPEATABLE READ snapshot of its own, then re-checked in one
final snapshot (docs/hash-chain-v1.md, "Proving a sealed run in separately snapshotted
segments").

Its verdict (status, first bad place, reason) must be the coordinator's on the same store: on a
clean run and on every case of the tamper matrix (test_tamper_matrix.CASES). Rows altered
between a segment's read and the final check are FAILED by the check (the border attacks here
run the job's functions directly, altering rows as their owner in between).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    Definitions,
    ExecuteInProcessResult,
    JobDefinition,
    build_reconstructable_job,
    execute_job,
)

from run_proof_pipeline.defs.long_run.job import run_proof_long_run
from run_proof_pipeline.defs.resources import TraceStoreResource
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.integrity import first_bad
from run_proof_pipeline.plan.coordinator_checks.fixtures import migrated_copy
from run_proof_pipeline.proof.long_run import (
    LongRunNotFound,
    LongRunReport,
    LongRunUnsealed,
    SegmentOutcome,
    SegmentPlan,
    check_segments,
    plan_segments,
    prove_segment,
)
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import run_on_connection
from run_proof_pipeline_tests.support.plan_runs import (
    everything_logged,
    stop_of,
    stored_events,
    trace_store,
)
from run_proof_pipeline_tests.support.stores import prove, record_run
from run_proof_pipeline_tests.test_ledger_support import RunShape, tamper
from run_proof_pipeline_tests.test_tamper_matrix import (
    CASES,
    STEPS,
    TENANT,
    Case,
    _rewrite_with_recomputed_hashes,
)

SEGMENTS = 4
JOB = "run_proof_long_run"
# The fast test's subset (each case ~2.5 s: a job run and a coordinator proof): a step field,
# the header, the seal, rows removed and added (segment borders move), and two of the three
# only the ledger catches; every case runs under @pytest.mark.slow.
FAST_CASES = {
    "step-field-outcome_data",
    "header-plan",
    "seal-chain_length",
    "step-deleted-in-the-middle",
    "extra-step-inserted",
    "whole-run-rewritten-hashes-recomputed",
    "seal-columns-cleared",
}


@pytest.fixture(scope="module")
def shared_store(pg_server: LocalPostgres) -> Iterator[DatabaseUrl]:
    """One migrated database for the tests that each record runs of their own."""
    name = f"long_run_{uuid.uuid4().hex[:12]}"
    url = migrated_copy(pg_server, name)
    yield url
    pg_server.drop_database(name)


def _run_job(
    instance: DagsterInstance, url: DatabaseUrl, run_id: str, **config: Any
) -> ExecuteInProcessResult:
    return run_proof_long_run.execute_in_process(
        run_config={"ops": {"plan_long_run": {"config": {"run_id": run_id, **config}}}},
        instance=instance,
        resources={"trace_store": trace_store(url)},
        raise_on_error=False,
    )


def _coordinator(url: DatabaseUrl, tenant_id: str, run_id: str) -> tuple[str, str | None, Any]:
    """(status, first bad place, reason) of the coordinator's own proof, in one process."""
    integrity = prove(url, tenant_id, run_id).integrity
    failure = integrity.failure
    where = None if failure is None else first_bad(failure.location, failure.step_index)
    return integrity.verification_status, where, integrity.failure_reason


def _job_verdict(instance: DagsterInstance, result: Any) -> tuple[str, str | None, Any]:
    """(status, first bad place, reason) as the job's check op reported it."""
    if result.success:
        report = result.output_for_node("check_long_run")
        assert isinstance(report, LongRunReport)
        return report.status, report.first_bad, report.reason
    step, data = stop_of(instance, result.run_id)
    assert step == "check_long_run", data.description
    meta = {k: getattr(v, "value", v) for k, v in data.metadata.items()}
    reason = None if meta["reason"] == "—" else meta["reason"]
    bad = None if meta["first_bad"] == "—" else meta["first_bad"]
    return meta["verification_status"], bad, reason


def _segment_steps(instance: DagsterInstance, run_id: str) -> list[str]:
    return sorted(
        e.step_key
        for e in stored_events(instance, run_id, DagsterEventType.STEP_SUCCESS)
        if e.step_key.startswith("prove_segment")
    )


def _store_state(url: DatabaseUrl) -> tuple[Any, ...]:
    """Every row of the trace tables and the ledger, hashed: what "nothing written" compares."""
    with psycopg.connect(url.libpq()) as conn:
        return tuple(
            conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
                f" FROM {table} t"
            ).fetchone()
            for table in ("aos_traces", "aos_trace_steps", "run_proof_ledger")
        )


# --- the job, in process ----------------------------------------------------------------


@pytest.mark.parametrize("chain_format", [pytest.param(1, marks=pytest.mark.slow), 2])
def test_a_clean_run_is_verified_in_four_segments_like_the_coordinator(
    shared_store: DatabaseUrl, dagster_instance: DagsterInstance, chain_format: int
) -> None:
    run_id = f"run-clean-v{chain_format}"
    record_run(shared_store, TENANT, run_id, steps=12, chain_format=chain_format)

    result = _run_job(dagster_instance, shared_store, run_id, tenant_id=TENANT)

    assert result.success
    report = result.output_for_node("check_long_run")
    assert (report.status, report.steps, report.segments) == ("VERIFIED", 12, SEGMENTS)
    assert report.chain_length == 12 and report.root_hash is not None
    assert report.anchor.startswith("ledger only")
    assert _segment_steps(dagster_instance, result.run_id) == [
        f"prove_segment[segment_{i}]" for i in range(SEGMENTS)
    ]
    outcomes = result.output_for_node("prove_segment")
    assert [outcomes[f"segment_{i}"].steps for i in range(SEGMENTS)] == [3, 3, 3, 3]
    assert _job_verdict(dagster_instance, result) == _coordinator(shared_store, TENANT, run_id)


def test_without_a_tenant_the_one_tenant_holding_the_run_is_proved(
    shared_store: DatabaseUrl, dagster_instance: DagsterInstance
) -> None:
    record_run(shared_store, TENANT, "run-no-tenant", steps=7)

    result = _run_job(dagster_instance, shared_store, "run-no-tenant", segments=3)

    assert result.success
    report = result.output_for_node("check_long_run")
    assert (report.status, report.tenant_id, report.segments) == ("VERIFIED", TENANT, 3)


def _refusal(instance: DagsterInstance, result: Any) -> str:
    assert not result.success
    step, data = stop_of(instance, result.run_id)
    assert step == "plan_long_run"
    assert _segment_steps(instance, result.run_id) == []
    description: str = data.description
    return description


def test_an_unsealed_or_unknown_run_is_refused_with_nothing_written(
    shared_store: DatabaseUrl, dagster_instance: DagsterInstance
) -> None:
    record_run(shared_store, TENANT, "run-unsealed", steps=5, seal=False)
    before = _store_state(shared_store)

    unsealed = _run_job(dagster_instance, shared_store, "run-unsealed", tenant_id=TENANT)
    unknown = _run_job(dagster_instance, shared_store, "run-nobody", tenant_id=TENANT)

    assert _refusal(dagster_instance, unsealed) == (
        "Plan: long-run proof refused: run 'run-unsealed' of tenant 'tenant-m' is not sealed "
        "(no seal_hash, no ledger entry): a run still being written is proved by "
        "`run-proof verify`"
    )
    assert _refusal(dagster_instance, unknown) == (
        "Plan: long-run proof refused: no trace of run 'run-nobody' for tenant 'tenant-m'"
    )
    assert _store_state(shared_store) == before


def test_another_tenant_s_run_or_too_many_segments_is_refused_with_nothing_written(
    shared_store: DatabaseUrl, dagster_instance: DagsterInstance
) -> None:
    record_run(shared_store, TENANT, "run-of-m", steps=5)
    before = _store_state(shared_store)

    other = _run_job(dagster_instance, shared_store, "run-of-m", tenant_id="tenant-x")
    too_many = _run_job(dagster_instance, shared_store, "run-of-m", segments=65)

    # Another tenant's run reads exactly like a missing one (tenant isolation).
    assert _refusal(dagster_instance, other) == (
        "Plan: long-run proof refused: no trace of run 'run-of-m' for tenant 'tenant-x'"
    )
    assert _refusal(dagster_instance, too_many) == (
        "Plan: configuration error: segments must be from 1 to 64, got 65"
    )
    assert _store_state(shared_store) == before


def test_an_unreachable_store_is_one_line_without_the_password(
    dagster_instance: DagsterInstance,
) -> None:
    secret = "s3cret-long-run"
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    url = DatabaseUrl.parse(f"postgresql://someone:{secret}@127.0.0.1:1/nowhere")

    result = _run_job(dagster_instance, url, "run-x", tenant_id=TENANT)

    description = _refusal(dagster_instance, result)
    assert description.startswith("Plan: database error: ")
    assert secret not in everything_logged(dagster_instance, result.run_id)


def _tampered_run(url: DatabaseUrl, case: Case, label: str) -> str:
    run_id = f"run-{case.name}-{label}"
    record_run(url, TENANT, run_id, steps=STEPS, chain_format=1)
    record_run(url, "tenant-other", f"donor-{run_id}", steps=STEPS, chain_format=1)
    run = RunShape.read(url, TENANT, run_id)
    assert tamper(url, *case.tamper(run)) == case.rowcounts
    return run_id


def _check_case(url: DatabaseUrl, instance: DagsterInstance, case: Case, label: str) -> None:
    run_id = _tampered_run(url, case, label)
    expected = _coordinator(url, TENANT, run_id)
    assert expected[0] == "FAILED"

    result = _run_job(instance, url, run_id, tenant_id=TENANT)

    assert not result.success
    assert _job_verdict(instance, result) == expected
    # One op per segment ran whatever the case (5 steps: 4 ranges, or fewer when cut).
    assert len(_segment_steps(instance, result.run_id)) >= 1


@pytest.mark.parametrize("case", [c for c in CASES if c.name in FAST_CASES], ids=lambda c: c.name)
def test_tamper_cases_get_the_coordinator_s_verdict(
    shared_store: DatabaseUrl, dagster_instance: DagsterInstance, case: Case
) -> None:
    _check_case(shared_store, dagster_instance, case, "fast")


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_tamper_case_gets_the_coordinator_s_verdict(
    shared_store: DatabaseUrl, dagster_instance: DagsterInstance, case: Case
) -> None:
    _check_case(shared_store, dagster_instance, case, "all")


def test_the_fast_subset_names_real_cases() -> None:
    assert FAST_CASES <= {c.name for c in CASES}


# --- the multiprocess executor ------------------------------------------------------------


def long_run_job_from_environment() -> JobDefinition:
    """The job as the code location binds it (the trace store from DATABASE_URL), rebuilt in
    each process of the multiprocess executor (build_reconstructable_job)."""
    return Definitions(
        jobs=[run_proof_long_run], resources={"trace_store": TraceStoreResource()}
    ).get_job_def(JOB)


@pytest.mark.slow
def test_the_multiprocess_executor_gives_the_same_verdict(
    shared_store: DatabaseUrl,
    dagster_instance: DagsterInstance,
    dagster_storage: DatabaseUrl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record_run(shared_store, TENANT, "run-mp-clean", steps=30)
    case = next(c for c in CASES if c.name == "step-field-outcome_data")
    tampered = _tampered_run(shared_store, case, "mp")
    # The processes Dagster starts read the store from the environment, as a deployment does.
    monkeypatch.setenv("DATABASE_URL", shared_store.libpq())
    monkeypatch.setenv("USE_POSTGRES_TRACES", "true")
    # Each step's process loads the instance from dagster.yaml, which names DAGSTER_PG_URL.
    monkeypatch.setenv("DAGSTER_PG_URL", dagster_storage.psycopg2())
    job = build_reconstructable_job(__name__, long_run_job_from_environment.__name__)
    verdicts = {}
    # A process per step costs seconds of start-up on two cores: the tampered run in 2 segments.
    for run_id, segments in (("run-mp-clean", SEGMENTS), (tampered, 2)):
        config = {
            "ops": {
                "plan_long_run": {
                    "config": {"run_id": run_id, "tenant_id": TENANT, "segments": segments}
                }
            }
        }
        with execute_job(job, instance=dagster_instance, run_config=config) as result:
            assert {e.step_key for e in result.get_step_success_events()} >= {
                f"prove_segment[segment_{i}]" for i in range(segments)
            }
            # Each step ran in a process of its own (the multiprocess executor's workers).
            workers = stored_events(
                dagster_instance, result.run_id, DagsterEventType.STEP_WORKER_STARTED
            )
            assert len(workers) == segments + 2
            verdicts[run_id] = _job_verdict(dagster_instance, result)
    assert verdicts["run-mp-clean"] == ("VERIFIED", None, None)
    assert verdicts == {r: _coordinator(shared_store, TENANT, r) for r in verdicts}


# --- rows altered between a segment's read and the final check ---------------------------


def _plan(url: DatabaseUrl, run_id: str, segments: int = SEGMENTS) -> list[SegmentPlan]:
    return run_on_connection(
        url, lambda conn: plan_segments(conn, run_id, TENANT, segments), snapshot=True
    )


def _check(url: DatabaseUrl, outcomes: list[SegmentOutcome]) -> LongRunReport:
    return run_on_connection(
        url, lambda conn: check_segments(conn, url.libpq(), outcomes), snapshot=True
    )


def _owner(url: DatabaseUrl, statement: str, *params: Any) -> None:
    assert tamper(url, (statement, params)) == [1]


def test_a_border_row_altered_after_its_segment_was_read_is_failed(
    shared_store: DatabaseUrl,
) -> None:
    record_run(shared_store, TENANT, "run-border", steps=20, chain_format=1)
    plans = _plan(shared_store, "run-border")
    outcomes = [prove_segment(shared_store, plan) for plan in plans]
    assert all(o.reason is None for o in outcomes)
    assert _check(shared_store, outcomes).status == "VERIFIED"
    border = outcomes[1].first_index
    assert border is not None and border - 1 == plans[0].upper - 1  # type: ignore[operator]

    # The last row of segment 0, as its owner could, after every segment read it.
    _owner(
        shared_store,
        "UPDATE aos_trace_steps SET outcome_data = '{\"forged\": true}'::jsonb"
        " WHERE run_id = %s AND step_index = %s",
        "run-border",
        border - 1,
    )
    report = _check(shared_store, outcomes)

    assert (report.status, report.first_bad, report.rule) == ("FAILED", f"step {border - 1}", 3)
    assert "changed after its segment was read" in (report.reason or "")
    # The next proof, in one snapshot, finds the same step.
    assert _coordinator(shared_store, TENANT, "run-border")[:2] == ("FAILED", f"step {border - 1}")


def test_a_border_link_rewritten_after_the_reads_is_failed(shared_store: DatabaseUrl) -> None:
    record_run(shared_store, TENANT, "run-link", steps=20, chain_format=1)
    plans = _plan(shared_store, "run-link")
    outcomes = [prove_segment(shared_store, plan) for plan in plans]
    first_of_2 = outcomes[2].first_index
    assert first_of_2 is not None

    _owner(
        shared_store,
        "UPDATE aos_trace_steps SET prev_hash = %s WHERE run_id = %s AND step_index = %s",
        "0" * 64,
        "run-link",
        first_of_2,
    )
    report = _check(shared_store, outcomes)

    assert (report.status, report.first_bad) == ("FAILED", f"step {first_of_2}")
    assert _coordinator(shared_store, TENANT, "run-link")[:2] == ("FAILED", f"step {first_of_2}")


def test_a_step_appended_after_the_reads_fails_the_length(shared_store: DatabaseUrl) -> None:
    record_run(shared_store, TENANT, "run-append", steps=STEPS, chain_format=1)
    plans = _plan(shared_store, "run-append")
    outcomes = [prove_segment(shared_store, plan) for plan in plans]
    case = next(c for c in CASES if c.name == "extra-step-inserted")
    run = RunShape.read(shared_store, TENANT, "run-append")

    assert tamper(shared_store, *case.tamper(run)) == [1]
    report = _check(shared_store, outcomes)

    assert (report.status, report.first_bad, report.rule) == ("FAILED", "seal", 4)
    assert "holds 6 steps in the final snapshot" in (report.reason or "")


def test_a_run_rewritten_between_two_segment_reads_fails_at_the_border(
    shared_store: DatabaseUrl,
) -> None:
    """Each segment reads a consistent chain, the first the original and the rest a forged
    one with recomputed hashes: their border does not link."""
    record_run(shared_store, TENANT, "run-between", steps=STEPS, chain_format=1)
    plans = _plan(shared_store, "run-between", segments=2)
    run = RunShape.read(shared_store, TENANT, "run-between")
    first = prove_segment(shared_store, plans[0])

    tamper(shared_store, *_rewrite_with_recomputed_hashes(run))
    rest = prove_segment(shared_store, plans[1])
    assert first.reason is None and rest.reason is None  # each consistent on its own
    report = _check(shared_store, [first, rest])

    assert report.status == "FAILED"
    assert report.first_bad == f"step {rest.first_index}"
    assert "prev_hash" in (report.reason or "")


def test_the_header_changed_after_the_plan_is_failed(shared_store: DatabaseUrl) -> None:
    record_run(shared_store, TENANT, "run-header", steps=STEPS, chain_format=1)
    plans = _plan(shared_store, "run-header")
    outcomes = [prove_segment(shared_store, plan) for plan in plans]

    _owner(shared_store, "UPDATE aos_traces SET chain_length = 9 WHERE run_id = %s", "run-header")
    report = _check(shared_store, outcomes)

    assert (report.status, report.first_bad) == ("FAILED", "header")
    assert "chain_length changed while the segments were read (5 when" in (report.reason or "")


def test_the_plan_refuses_before_reading_steps(shared_store: DatabaseUrl) -> None:
    record_run(shared_store, TENANT, "run-open", steps=3, seal=False)
    with pytest.raises(LongRunUnsealed):
        _plan(shared_store, "run-open")
    with pytest.raises(LongRunNotFound):
        _plan(shared_store, "run-never-recorded")
