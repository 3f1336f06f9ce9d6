"""One op per step of the seed's test plan; each runs only when the ones before it passed.

A stopped step raises `Failure` with its evidence as metadata: the Dagster run fails (so
`dagster job execute` exits non-zero) and the ops after it do not run.
"""

import asyncio
import os
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from dagster import Config, Failure, MetadataValue, OpExecutionContext, op
from pydantic import Field
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.coordinator import RunProofResult, get_run_proof_coordinator
from run_proof_pipeline.pipeline.checks import proof_check_evaluations
from run_proof_pipeline.pipeline.resources import TraceStoreResource
from run_proof_pipeline.plan import messages
from run_proof_pipeline.plan.coordinator_tests import (
    PytestOutcome,
    project_root,
    resolve_tests_path,
    run_coordinator_tests,
)
from run_proof_pipeline.plan.expectations import check_expectations, describe_misses
from run_proof_pipeline.plan.queries import (
    LATEST_TRACE_SQL,
    STEP_COUNT_SQL,
    TARGET_TRACE_SQL,
    TraceRef,
    count_note,
    latest_trace,
    picked_note,
    run_id_holders,
    seed_count_parts,
    step_count,
    target_trace,
    trace_step_count,
)
from run_proof_pipeline.plan.report import OutputReport, adoption_note
from run_proof_pipeline.plan.state import PlanState
from run_proof_pipeline.proof.segments import DEFAULT_PARALLEL_MIN_STEPS, SegmentWorkerError
from run_proof_pipeline.settings import ConfigError, DatabaseUrl, redact
from run_proof_pipeline.store.engine import get_session, run_on_connection, session_scope
from run_proof_pipeline.store.migrate import missing_schema
from run_proof_pipeline.store.snapshot import begin_snapshot, read_trace

T = TypeVar("T")
SKIPPED_BY_CONFIGURATION = "skipped by configuration"


class TargetConfig(Config):
    run_id: str = Field(default="", description="Run to prove; empty: the latest trace (Step 1)")
    tenant_id: str = Field(default="", description="Tenant of run_id (required with run_id)")


class ProofConfig(Config):
    workers: int = Field(
        default=0,
        ge=0,
        description="Processes for a long run's proof; 0: RUN_PROOF_VERIFY_WORKERS, else cores",
    )
    parallel_min_steps: int = Field(
        default=DEFAULT_PARALLEL_MIN_STEPS,
        ge=1,
        description="Runs with at least this many steps are proved in parallel segments",
    )
    progress_every_steps: int = Field(
        default=100_000, ge=1, description="Log progress after every this many steps"
    )


def progress_message(done: int, total: int | None, elapsed: float) -> str:
    """`Step 3: verified done/total steps (rate steps/s, ETA s)`; the total is the sealed
    chain_length, unknown (no ETA) for an unsealed trace."""
    rate = done / max(elapsed, 1e-9)
    if not total:
        return f"Step 3: verified {done} steps ({rate:,.0f} steps/s)"
    eta = max(0.0, (total - done) / rate) if rate > 0 else 0.0
    return f"Step 3: verified {done}/{total} steps ({rate:,.0f} steps/s, ETA {eta:,.0f} s)"


class CoordinatorTestsConfig(Config):
    enabled: bool = Field(default=True, description="Run the coordinator tests (Step 5)")
    tests_path: str = Field(default="", description="Test file; empty: the project's own")
    timeout_seconds: float = Field(
        default=600, gt=0, description="Stop the tests (and the plan) after this long"
    )


class ReportConfig(Config):
    report_dir: str = Field(default="", description="Directory for the report file")


def _db_failure(step: str, exc: BaseException) -> Failure:
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    message = f"{step}: database error: {detail[0] if detail else type(exc).__name__}"
    return Failure(description=redact(message), metadata={"error": redact(str(exc))})


def _run_on(step: str, url: DatabaseUrl, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    try:
        return run_on_connection(url, work)
    except (DBAPIError, OSError) as exc:
        raise _db_failure(step, exc) from None


def _collision_metadata(seed_sql: str, trace_id: str | None, **note: str) -> dict[str, object]:
    """The seed's SQL word for word, the trace that is proven, and what the SQL also picked
    or counted: metadata of Step 1 or 2 when a run id is held by several traces or tenants."""
    return {
        "seed_sql": MetadataValue.md(f"```sql\n{seed_sql}\n```"),
        "proven_trace_id": trace_id or "—",
        **note,
    }


@op(description="Seed preconditions: PostgreSQL, USE_POSTGRES_TRACES, schema.")
def preconditions(context: OpExecutionContext, trace_store: TraceStoreResource) -> PlanState:
    try:
        settings = trace_store.settings()
        settings.require_postgres_traces(unset_means_true=False)
        url = trace_store.url()
    except ConfigError as exc:
        raise Failure(description=f"Preconditions: {exc}") from None

    async def probe(conn: AsyncConnection) -> str:
        return str((await conn.exec_driver_sql("SELECT version()")).scalar_one())

    version = _run_on("Preconditions", url, probe)
    if "PostgreSQL" not in version:
        raise Failure(description=f"Preconditions: {url.redacted()} is not PostgreSQL: {version}")
    try:
        missing = missing_schema(url)
    except DBAPIError as exc:
        raise _db_failure("Preconditions", exc) from None
    if missing:
        raise Failure(
            description="Preconditions: trace store schema missing: " + ", ".join(missing),
            metadata={"db_url": url.redacted(), "missing": ", ".join(missing)},
        )
    context.add_output_metadata({"db_url": url.redacted(), "server": version})
    return PlanState(db_url=url.redacted())


@op(description="Step 1: the latest trace in aos_traces (or the configured run).")
def step_1_latest_trace(
    context: OpExecutionContext,
    config: TargetConfig,
    trace_store: TraceStoreResource,
    state: PlanState,
) -> PlanState:
    if bool(config.run_id) != bool(config.tenant_id):
        raise Failure(description="Step 1: run_id and tenant_id must be given together")

    seed_sql = TARGET_TRACE_SQL if config.run_id else LATEST_TRACE_SQL

    async def find(conn: AsyncConnection) -> tuple[TraceRef | None, str | None, str]:
        # One snapshot: the seed's pick, the trace the coordinator will prove for its tenant
        # and run id, and every trace holding that run id agree with each other.
        await begin_snapshot(conn)
        if config.run_id:
            picked = await target_trace(conn, config.run_id, config.tenant_id)
        else:
            picked = await latest_trace(conn)
        if picked is None:
            return None, None, ""
        proved = await read_trace(conn, picked.tenant_id, picked.run_id)
        proved_id = None if proved is None else proved.trace_id
        holders = await run_id_holders(conn, picked.run_id)
        return picked, proved_id, picked_note(picked, holders, proved_id)

    trace, trace_id, note = _run_on("Step 1", trace_store.url(), find)
    if trace is None:
        raise Failure(
            description=messages.NO_TRACE_DATA,
            metadata={"db_url": state.db_url, "run_id": config.run_id or "(latest)"},
        )
    context.instance.add_run_tags(
        context.run_id, {"run_proof/tenant_id": trace.tenant_id, "run_proof/run_id": trace.run_id}
    )
    metadata: dict[str, object] = {
        "run_id": trace.run_id,
        "tenant_id": trace.tenant_id,
        "started_at": trace.started_at.isoformat(),
        "status": trace.status,
    }
    if note:
        # What the seed's SQL returned stays as it is, beside the SQL and the collision.
        context.log.warning(f"Step 1: {note}")
        metadata |= _collision_metadata(seed_sql, trace_id, run_id_held_by=note)
    context.add_output_metadata(metadata)  # type: ignore[arg-type]
    return state.with_(trace=trace, trace_id=trace_id, notes=(note,) if note else ())


@op(description="Step 2: count the trace's steps in aos_trace_steps.")
def step_2_step_count(
    context: OpExecutionContext, trace_store: TraceStoreResource, state: PlanState
) -> PlanState:
    trace, trace_id = state.found, state.trace_id

    async def count(conn: AsyncConnection) -> tuple[int, str]:
        await begin_snapshot(conn)
        seed_count = await step_count(conn, trace.run_id)  # the seed's SQL, word for word
        if trace_id is None:
            return seed_count, ""
        # The count compared with chain_length is the proven trace's own.
        own = await trace_step_count(conn, trace_id)
        parts = await seed_count_parts(conn, trace.run_id)
        return own, count_note(trace.run_id, trace_id, own, seed_count, parts)

    counted, note = _run_on("Step 2", trace_store.url(), count)
    extra = _collision_metadata(STEP_COUNT_SQL, trace_id, seed_count_covers=note) if note else {}
    if note:
        context.log.warning(f"Step 2: {note}")
    if counted == 0:
        raise Failure(
            description=messages.NO_STEPS,
            metadata={
                "run_id": trace.run_id,
                "tenant_id": trace.tenant_id,
                "step_count": 0,
                **extra,  # type: ignore[dict-item]
            },
        )
    context.add_output_metadata({"step_count": counted, **extra})  # type: ignore[dict-item]
    return state.with_(step_count=counted, notes=(*state.notes, note) if note else state.notes)


@op(description="Step 3: prove the run via RunProofCoordinator (production).")
def step_3_coordinator_proof(
    context: OpExecutionContext,
    config: ProofConfig,
    trace_store: TraceStoreResource,
    state: PlanState,
) -> PlanState:
    trace = state.found
    url = trace_store.url()
    started = time.perf_counter()

    def progress(done: int, total: int | None) -> None:
        context.log.info(progress_message(done, total, time.perf_counter() - started))

    async def prove() -> RunProofResult:
        # The seed's production path; an explicit resource URL overrides the environment.
        sessions = get_session() if trace_store.database_url is None else session_scope(url)
        async with sessions as session:
            coordinator = get_run_proof_coordinator(
                workers=config.workers or None,
                parallel_min_steps=config.parallel_min_steps,
                progress_every=config.progress_every_steps,
            )
            return await coordinator.get_run_proof(
                session,
                trace.tenant_id,
                trace.run_id,
                step_summary_limit=1000,
                progress=progress,
            )

    try:
        result = asyncio.run(prove())
    except (DBAPIError, OSError, SegmentWorkerError) as exc:
        raise _db_failure("Step 3", exc) from None
    integrity = result.integrity
    context.add_output_metadata(
        {
            "integrity_model": integrity.model,
            "verification_status": integrity.verification_status,
            "chain_length": integrity.chain_length,
            "root_hash": integrity.root_hash or "None",
            "trace_count": len(result.aos_traces),
            "step_count": result.steps_read,
            "elapsed_seconds": MetadataValue.float(round(result.elapsed_seconds, 4)),
            "segment_workers": result.segment_workers,
            # Which anchor rule 5 applied (docs/threat-model.md): never silently dropped.
            "anchor": integrity.anchor,
        }
    )
    return state.with_(proof=result)


@op(description="Step 4: HASH_CHAIN, VERIFIED, chain == steps, traces >= 1.")
def step_4_integrity_expectations(context: OpExecutionContext, state: PlanState) -> PlanState:
    trace, step_count, proof = state.found, state.counted, state.proven
    for evaluation in proof_check_evaluations(trace, step_count, proof):
        context.log_event(evaluation)
    expectations = check_expectations(proof, step_count, state.trace_id)
    misses = [e for e in expectations if not e.passed]
    table = "\n".join(
        f"| {e.name} | `{e.expected}` | `{e.found}` | {'pass' if e.passed else 'MISS'} |"
        for e in expectations
    )
    evidence = MetadataValue.md(f"| expectation | expected | found | |\n|---|---|---|---|\n{table}")
    if misses:
        failure = proof.integrity.failure
        metadata: dict[str, object] = {"expectations": evidence}
        if failure is not None:
            metadata.update(
                {
                    "first_bad": f"step {failure.step_index}"
                    if failure.location == "step"
                    else failure.location,
                    "expected_hash": failure.expected or "—",
                    "found_hash": failure.found or "—",
                }
            )
        raise Failure(description=describe_misses(proof, misses), metadata=metadata)  # type: ignore[arg-type]
    context.add_output_metadata({"expectations": evidence})
    return state


@op(description="Step 5: the coordinator's tests, on a throwaway server.")
def step_5_coordinator_tests(
    context: OpExecutionContext, config: CoordinatorTestsConfig, state: PlanState
) -> PlanState:
    if not config.enabled:
        context.log.info("Step 5 skipped by configuration")
        return state.with_(pytest_result=SKIPPED_BY_CONFIGURATION)
    path = resolve_tests_path(config.tests_path or None)
    try:
        outcome: PytestOutcome = run_coordinator_tests(path, timeout=config.timeout_seconds)
    except FileNotFoundError as exc:
        raise Failure(description=f"Step 5: {exc}") from None
    except subprocess.TimeoutExpired:
        raise Failure(
            description=f"Step 5: coordinator tests did not finish within "
            f"{config.timeout_seconds:g} s (stopped)",
            metadata={"tests_path": str(path)},
        ) from None
    metadata = {
        "command": outcome.command,
        "summary": outcome.summary,
        "exit_code": outcome.exit_code,
        **{f"count_{k}": v for k, v in outcome.counts.items()},
    }
    if not outcome.passed:
        raise Failure(
            description=f"Step 5: coordinator tests failed: {outcome.describe()}",
            metadata={**metadata, "errors": "\n".join(outcome.errors) or "—"},
        )
    context.add_output_metadata(metadata)
    return state.with_(pytest_result=outcome.describe())


@op(description="The seed's Output Report, as Markdown metadata and a file.")
def output_report(
    context: OpExecutionContext,
    config: ReportConfig,
    state: PlanState,
) -> str:
    step_count, proof = state.counted, state.proven
    integrity = proof.integrity
    # Every field is the proven trace's (read in the proof's own snapshot), never the row the
    # seed's Step 1 SQL returned: another trace may hold the same run id.
    proven = proof.aos_traces[0]  # Step 4 passed: the one trace counted in Step 2
    notes = " | ".join(state.notes)
    report = OutputReport(
        db_url=state.db_url,
        run_id=proof.run_id,
        tenant_id=proof.tenant_id,
        started_at=proven.started_at.isoformat(),
        status=proven.status,
        step_count=step_count,
        integrity_model=integrity.model,
        verification_status=integrity.verification_status,
        chain_length=integrity.chain_length,
        root_hash=integrity.root_hash,
        trace_count=len(proof.aos_traces),
        coordinator_step_count=proof.steps_read,
        pytest_result=state.pytest_result or "not run",
        adopted_at=adoption_note(integrity.adopted_at),
        trace_id=proven.trace_id if notes else None,
        run_id_collisions=notes or None,
    )
    directory = Path(
        config.report_dir or os.environ.get("RUN_PROOF_REPORT_DIR") or project_root() / "reports"
    )
    path = report.write(directory, f"run-proof-report-{context.run_id}")
    context.log.info("Output Report\n" + report.text())
    context.add_output_metadata(
        {
            "report": MetadataValue.md(report.markdown()),
            "report_path": MetadataValue.path(str(path)),
        }
    )
    return str(path)
