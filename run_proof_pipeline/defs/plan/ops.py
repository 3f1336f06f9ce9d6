"""One op per step of the seed's test plan; each runs only when the ones before it passed.

A stopped step raises `Failure` with its evidence as metadata: the Dagster run fails (so
`dagster job execute` exits non-zero) and the ops after it do not run.

Run config (the Launchpad) reaches neither code nor files: Step 5 runs the project's own
coordinator tests only, reports go where the deployment says (RUN_PROOF_REPORT_DIR), and every
worker count is bounded (proof.worker_limit). Removed keys stay in the schema so that a saved
config still setting one fails with one line naming the replacement, not Dagster's
"unexpected config entry" (`removed_keys`); `preconditions` checks the whole run config first,
before anything is read or written (docs/bad-input.md).
"""

import os
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from dagster import Config, Failure, MetadataValue, OpExecutionContext, op
from pydantic import Field
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.coordinator.run_proof import WORKERS_ENV, default_workers
from run_proof_pipeline.defs.plan.checks import proof_check_evaluations
from run_proof_pipeline.defs.resources import TraceStoreResource
from run_proof_pipeline.integrity import first_bad
from run_proof_pipeline.plan import messages
from run_proof_pipeline.plan.coordinator_tests import (
    COORDINATOR_TESTS,
    PytestOutcome,
    own_tests_path,
    project_root,
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
from run_proof_pipeline.proof.worker_limit import MAX_WORKERS, check_workers
from run_proof_pipeline.settings import ConfigError, DatabaseUrl, redact
from run_proof_pipeline.store.migrate import missing_schema
from run_proof_pipeline.store.relations import UntrustedStore
from run_proof_pipeline.store.snapshot import begin_snapshot, read_trace

T = TypeVar("T")
SKIPPED_BY_CONFIGURATION = "skipped by configuration"
REPORT_DIR_ENV = "RUN_PROOF_REPORT_DIR"
PROOF_OP = "step_3_coordinator_proof"
TESTS_OP = "step_5_coordinator_tests"
REPORT_OP = "output_report"
_DELETE_IT = "delete the key from the run config"
# (op, key) -> what replaced it: the one line a saved config that still sets the key gets.
REMOVED_KEYS: dict[tuple[str, str], str] = {
    (TESTS_OP, "tests_path"): (
        f"Step 5 runs the project's own coordinator tests only ({COORDINATOR_TESTS}); " + _DELETE_IT
    ),
    (REPORT_OP, "report_dir"): (
        f"reports go to {REPORT_DIR_ENV}, set in the code location's environment; " + _DELETE_IT
    ),
}
_REMOVED = "Removed (setting it fails the run): "


class TargetConfig(Config):
    run_id: str = Field(default="", description="Run to prove; empty: the latest trace (Step 1)")
    tenant_id: str = Field(default="", description="Tenant of run_id (required with run_id)")


class ProofConfig(Config):
    # No pydantic bound: Dagster would show its ValidationError with a traceback; the bound
    # is checked in `proof_workers`, with one line naming this key.
    workers: int = Field(
        default=0,
        description=f"Processes for a long run's proof, 1 to {MAX_WORKERS}; "
        f"0: {WORKERS_ENV}, else one per core (at most 8)",
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
    tests_path: str | None = Field(
        default=None, description=_REMOVED + REMOVED_KEYS[(TESTS_OP, "tests_path")]
    )
    timeout_seconds: float = Field(
        default=600, gt=0, description="Stop the tests (and the plan) after this long"
    )


class ReportConfig(Config):
    report_dir: str | None = Field(
        default=None, description=_REMOVED + REMOVED_KEYS[(REPORT_OP, "report_dir")]
    )


def _op_config(run_config: Mapping[str, object], op_name: str) -> Mapping[str, object]:
    ops = run_config.get("ops")
    node = ops.get(op_name) if isinstance(ops, Mapping) else None
    config = node.get("config") if isinstance(node, Mapping) else None
    return config if isinstance(config, Mapping) else {}


def removed_keys(run_config: Mapping[str, object]) -> str | None:
    """One line naming each removed key the run config still sets (any value, even empty:
    the key is gone) and its replacement; None when it sets none."""
    found = [
        removed_key(op_name, key)
        for op_name, key in REMOVED_KEYS
        if _op_config(run_config, op_name).get(key) is not None
    ]
    return "; ".join(found) or None


def removed_key(op_name: str, key: str) -> str:
    return f"{op_name}.config.{key} was removed: {REMOVED_KEYS[(op_name, key)]}"


def proof_workers(workers: int) -> int | None:
    """Step 3's worker count: None for 0 (the coordinator's default, RUN_PROOF_VERIFY_WORKERS
    else one per core, checked when it is read), else 1 to MAX_WORKERS; out of range is a
    ConfigError naming the key."""
    if workers == 0:
        return None
    try:
        return check_workers(workers, source=f"{PROOF_OP}.config.workers")
    except ConfigError:
        raise ConfigError(
            f"{PROOF_OP}.config.workers must be 0 ({WORKERS_ENV}, else one per core) "
            f"or from 1 to {MAX_WORKERS}, got {workers!r}"
        ) from None


def report_directory() -> Path:
    """Where reports go: RUN_PROOF_REPORT_DIR, else reports/ in the current working directory
    (deployment configuration, never run config; never the installed package's directory)."""
    raw = os.environ.get(REPORT_DIR_ENV, "").strip()
    return Path(raw).expanduser() if raw else Path.cwd() / "reports"


def _report_dir_setting(directory: Path) -> str:
    raw = os.environ.get(REPORT_DIR_ENV, "").strip()
    return f"{REPORT_DIR_ENV}={raw!r}" if raw else f"the default report directory {directory}"


def report_directory_problem(directory: Path) -> str | None:
    """Why the report could not be written to `directory` (None: it can): it must be a
    directory, or be creatable (its nearest existing parent a directory this process can
    write). Checked before the plan starts; nothing is created here."""
    setting = _report_dir_setting(directory)
    fix = f"set {REPORT_DIR_ENV} in the code location's environment to a writable directory"
    if directory.exists():
        if not directory.is_dir():
            return f"{setting} is not a directory: {fix}"
        if not os.access(directory, os.W_OK | os.X_OK):
            return f"{setting} is not writable by this process: {fix}"
        return None
    parent = directory.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        return f"{setting} does not exist and cannot be created under {parent}: {fix}"
    return None


def run_config_problem(run_config: Mapping[str, object]) -> str | None:
    """The first thing in the run config (or the deployment settings it relies on) that
    would stop the plan later: checked by `preconditions` before anything is done."""
    removed = removed_keys(run_config)
    if removed:
        return removed
    workers = _op_config(run_config, PROOF_OP).get("workers")
    try:
        if proof_workers(workers if isinstance(workers, int) else 0) is None:
            default_workers()  # RUN_PROOF_VERIFY_WORKERS, read as step 3 will read it
    except ConfigError as exc:
        return str(exc)
    return report_directory_problem(report_directory())


def _db_failure(step: str, exc: BaseException) -> Failure:
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    message = f"{step}: database error: {detail[0] if detail else type(exc).__name__}"
    return Failure(description=redact(message), metadata={"error": redact(str(exc))})


def _run_on(
    step: str, trace_store: TraceStoreResource, work: Callable[[AsyncConnection], Awaitable[T]]
) -> T:
    _url(step, trace_store)  # a missing URL: this step's configuration error, one line
    try:
        return trace_store.on_connection(work)
    except (DBAPIError, OSError) as exc:
        raise _db_failure(step, exc) from None
    except UntrustedStore as exc:
        # The relations changed after the preconditions (each snapshot checks them again).
        raise Failure(description=f"{step}: refusing to prove: {exc}") from None


def _url(step: str, trace_store: TraceStoreResource) -> DatabaseUrl:
    try:
        return trace_store.url()
    except ConfigError as exc:
        raise Failure(description=f"{step}: configuration error: {exc}") from None


def _collision_metadata(seed_sql: str, trace_id: str | None, **note: str) -> dict[str, Any]:
    """The seed's SQL word for word, the trace that is proven, and what the SQL also picked
    or counted: metadata of Step 1 or 2 when a run id is held by several traces or tenants."""
    return {
        "seed_sql": MetadataValue.md(f"```sql\n{seed_sql}\n```"),
        "proven_trace_id": trace_id or "—",
        **note,
    }


@op(description="Seed preconditions: run config, PostgreSQL, USE_POSTGRES_TRACES, schema.")
def preconditions(context: OpExecutionContext, trace_store: TraceStoreResource) -> PlanState:
    # First the run config: a removed key or a bad worker count stops the run before any
    # read, and the line names the key (or setting) and what to do.
    problem = run_config_problem(context.run_config)
    if problem is not None:
        raise Failure(description=problem)
    try:
        settings = trace_store.settings()
        settings.require_postgres_traces(unset_means_true=False)
        url = trace_store.url()
    except ConfigError as exc:
        raise Failure(description=f"Preconditions: {exc}") from None

    async def probe(conn: AsyncConnection) -> str:
        return str((await conn.exec_driver_sql("SELECT version()")).scalar_one())

    version = _run_on("Preconditions", trace_store, probe)
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

    trace, trace_id, note = _run_on("Step 1", trace_store, find)
    if trace is None:
        raise Failure(
            description=messages.NO_TRACE_DATA,
            metadata={"db_url": state.db_url, "run_id": config.run_id or "(latest)"},
        )
    context.instance.add_run_tags(
        context.run_id, {"run_proof/tenant_id": trace.tenant_id, "run_proof/run_id": trace.run_id}
    )
    metadata: dict[str, Any] = {
        "run_id": trace.run_id,
        "tenant_id": trace.tenant_id,
        "started_at": trace.started_at.isoformat(),
        "status": trace.status,
    }
    if note:
        # What the seed's SQL returned stays as it is, beside the SQL and the collision.
        context.log.warning(f"Step 1: {note}")
        metadata |= _collision_metadata(seed_sql, trace_id, run_id_held_by=note)
    context.add_output_metadata(metadata)
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

    counted, note = _run_on("Step 2", trace_store, count)
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
                **extra,
            },
        )
    context.add_output_metadata({"step_count": counted, **extra})
    return state.with_(step_count=counted, notes=(*state.notes, note) if note else state.notes)


@op(description="Step 3: prove the run via RunProofCoordinator (production).")
def step_3_coordinator_proof(
    context: OpExecutionContext,
    config: ProofConfig,
    trace_store: TraceStoreResource,
    state: PlanState,
) -> PlanState:
    trace = state.found
    _url("Step 3", trace_store)
    try:
        workers = proof_workers(config.workers)
    except ConfigError as exc:
        raise Failure(description=str(exc)) from None
    started = time.perf_counter()

    def progress(done: int, total: int | None) -> None:
        context.log.info(progress_message(done, total, time.perf_counter() - started))

    try:
        result = trace_store.prove(
            trace.tenant_id,
            trace.run_id,
            workers=workers,
            parallel_min_steps=config.parallel_min_steps,
            progress_every=config.progress_every_steps,
            progress=progress,
        )
    except (DBAPIError, OSError, SegmentWorkerError) as exc:
        raise _db_failure("Step 3", exc) from None
    except ConfigError as exc:
        # A setting the proof reads (RUN_PROOF_VERIFY_WORKERS; checkpoints configured without
        # a key to check them, a missing RUN_PROOF_CHECKPOINT_DIR): one line, what to set.
        raise Failure(description=redact(f"Step 3: configuration error: {exc}")) from None
    except UntrustedStore as exc:
        raise Failure(description=f"Step 3: refusing to prove: {exc}") from None
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
        # Dagster records an AssetCheckEvaluation an op logs (the check history of aos_traces);
        # log_event's annotation names only the older event types.
        context.log_event(evaluation)  # type: ignore[arg-type]  # see the comment above
    expectations = check_expectations(proof, step_count, state.trace_id)
    misses = [e for e in expectations if not e.passed]
    table = "\n".join(
        f"| {e.name} | `{e.expected}` | `{e.found}` | {'pass' if e.passed else 'MISS'} |"
        for e in expectations
    )
    evidence = MetadataValue.md(f"| expectation | expected | found | |\n|---|---|---|---|\n{table}")
    if misses:
        failure = proof.integrity.failure
        metadata: dict[str, Any] = {"expectations": evidence}
        if failure is not None:
            metadata.update(
                {
                    "first_bad": first_bad(failure.location, failure.step_index),
                    "expected_hash": failure.expected or "—",
                    "found_hash": failure.found or "—",
                }
            )
        raise Failure(description=describe_misses(proof, misses), metadata=metadata)
    context.add_output_metadata({"expectations": evidence})
    return state


@op(description="Step 5: the coordinator's tests, on a throwaway server.")
def step_5_coordinator_tests(
    context: OpExecutionContext, config: CoordinatorTestsConfig, state: PlanState
) -> PlanState:
    if config.tests_path is not None:  # the preconditions stop such a run first
        raise Failure(description=removed_key(TESTS_OP, "tests_path"))
    if not config.enabled:
        context.log.info("Step 5 skipped by configuration")
        return state.with_(pytest_result=SKIPPED_BY_CONFIGURATION)
    path = own_tests_path()
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
    metadata: dict[str, Any] = {
        "tests_path": str(path.relative_to(project_root()))
        if path.is_relative_to(project_root())
        else str(path),
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
    if config.report_dir is not None:  # the preconditions stop such a run first
        raise Failure(description=removed_key(REPORT_OP, "report_dir"))
    directory = report_directory()
    problem = report_directory_problem(directory)
    if problem is not None:  # changed since the preconditions checked it
        raise Failure(description=f"Output report: {problem}")
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
    try:
        path = report.write(directory, f"run-proof-report-{context.run_id}")
    except OSError as exc:
        raise Failure(
            description=f"Output report: cannot write to {_report_dir_setting(directory)}: "
            f"{exc.strerror or exc}: set {REPORT_DIR_ENV} in the code location's environment "
            "to a writable directory"
        ) from None
    context.log.info("Output Report\n" + report.text())
    context.add_output_metadata(
        {
            "report": MetadataValue.md(report.markdown()),
            "report_path": MetadataValue.path(str(path)),
        }
    )
    return str(path)
