"""`run-proof`: manage the store, seed demo data, verify runs and check test vectors.

Kept free of Dagster imports: `run-proof verify` is a whole process whose start-up counts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from run_proof_pipeline.cli.database import announced_database, embedded_store_ready
from run_proof_pipeline.cli.errors import CommandError, handled, record_outcome
from run_proof_pipeline.cli.exit_codes import STATUS_EXIT
from run_proof_pipeline.errors import ExitCode
from run_proof_pipeline.proof.worker_limit import MAX_WORKERS
from run_proof_pipeline.store.engine import run_on_engine

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

app = typer.Typer(
    help="Prove that AI-agent run traces in PostgreSQL have not been altered.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="The trace store: migrations and the embedded default server.")
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
@handled
def db_upgrade(
    check: bool = typer.Option(
        False, "--check", help="Print what the upgrade would change; change nothing."
    ),
) -> None:
    """Apply the trace store's migrations (idempotent); AOS's own tables are upgraded in place."""
    from run_proof_pipeline.store.migrate import head_revision, upgrade

    resolved = announced_database()
    if check:
        from run_proof_pipeline.store.upgrade_check import upgrade_plan

        print("\n".join(upgrade_plan(resolved.url).lines()))
        return
    upgrade(resolved.url)
    record_outcome(f"the trace store is migrated to revision {head_revision()}")
    print(f"trace store at revision {head_revision()}")


@db_app.command("start")
@handled
def db_start() -> None:
    """Start the embedded default PostgreSQL (reused if already running)."""
    from run_proof_pipeline.store.engine import embedded_database_url

    url = embedded_database_url()
    print(f"embedded PostgreSQL running: {url.redacted()}")


@db_app.command("stop")
@handled
def db_stop() -> None:
    """Stop the embedded default PostgreSQL."""
    from run_proof_pipeline.embedded.server import embedded_default

    server = embedded_default()
    was_running = server.is_running()
    server.stop()
    print("embedded PostgreSQL stopped" if was_running else "embedded PostgreSQL was not running")


@db_app.command("url")
@handled
def db_url(
    reveal: bool = typer.Option(False, help="Print the password too (for DATABASE_URL)."),
) -> None:
    """Print the embedded default's URL (password hidden unless --reveal)."""
    from run_proof_pipeline.store.engine import embedded_database_url

    url = embedded_database_url()
    print(url.libpq() if reveal else url.redacted())


@app.command()
@handled
def demo(
    runs: int = typer.Option(12, min=1, help="How many runs to seed."),
    force: bool = typer.Option(False, help="Seed even when the store already has traces."),
) -> None:
    """Seed realistic demo traces through the recorder."""
    from run_proof_pipeline.demo import seed_demo, store_is_empty
    from run_proof_pipeline.store.migrate import upgrade

    resolved = announced_database()
    upgrade(resolved.url)

    async def run(engine: AsyncEngine) -> None:
        if not force and not await store_is_empty(engine):
            print("the store already has traces; nothing seeded (use --force to add more)")
            return
        summary = await seed_demo(engine, runs=runs)
        record_outcome(f"{summary.traces} demo traces are committed")
        print(
            f"seeded {summary.traces} traces with {summary.steps} steps; "
            f"latest run {summary.latest_run_id}, still running: {summary.running_run_id}"
        )

    run_on_engine(resolved.url, run)


@app.command()
@handled
def verify(
    tenant_id: str = typer.Option(..., "--tenant-id", help="Tenant of the run."),
    run_id: str = typer.Option(..., "--run-id", help="Run to prove."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    workers_option: str | None = typer.Option(
        None,
        "--workers",
        metavar="N",
        help=f"Processes for a long run, 1 to {MAX_WORKERS} "
        "(default: RUN_PROOF_VERIFY_WORKERS, else one per core).",
    ),
) -> None:
    """Prove one run: prints the seed's Step 3 fields and the verdict."""
    from run_proof_pipeline.cli.progress import UPDATE_EVERY, StepProgress, step_progress_bar
    from run_proof_pipeline.coordinator import RunProofCoordinator, RunProofResult
    from run_proof_pipeline.plan.report import adoption_note
    from run_proof_pipeline.store.engine import run_in_session

    # Before anything else: a bad count (option or setting) is one line and exit 2.
    workers = _verify_workers(workers_option)
    resolved = announced_database(machine_output=as_json)

    def proved(progress: StepProgress | None) -> RunProofResult:
        coordinator = RunProofCoordinator(progress_every=UPDATE_EVERY, workers=workers)
        return run_in_session(
            resolved.url,
            lambda session: coordinator.get_run_proof(
                session, tenant_id, run_id, step_summary_limit=0, progress=progress
            ),
        )

    with step_progress_bar(enabled=not as_json) as progress:
        result = proved(progress)
    integrity = result.integrity
    if as_json:
        print(result.model_dump_json())
    else:
        print("integrity_model:", integrity.model)
        print("verification_status:", integrity.verification_status)
        print("chain_length:", integrity.chain_length)
        print("root_hash:", integrity.root_hash)
        print("trace_count:", len(result.aos_traces))
        print("step_count:", result.steps_read)
        print("anchor:", integrity.anchor)
        # An adopted trace is proven since its adoption only (docs/existing-aos-database.md):
        # the plain output says so, not only --json.
        print("adoption:", adoption_note(integrity.adopted_at))
        if integrity.failure_reason:
            print("failure_reason:", integrity.failure_reason)
    raise typer.Exit(int(STATUS_EXIT[integrity.verification_status]))


def _verify_workers(option: str | None) -> int:
    """--workers, else RUN_PROOF_VERIFY_WORKERS, else one per core; each bounded by
    proof.worker_limit. Read as text, so that `abc` is this one line too, not click's
    usage box."""
    from run_proof_pipeline.coordinator.run_proof import default_workers
    from run_proof_pipeline.proof.worker_limit import check_workers
    from run_proof_pipeline.settings import ConfigError

    if option is None:
        return default_workers()  # ConfigError naming RUN_PROOF_VERIFY_WORKERS: exit 2
    try:
        return check_workers(int(option), source="--workers")
    except (ValueError, ConfigError):
        raise CommandError(
            f"--workers must be a whole number from 1 to {MAX_WORKERS}, got {option!r}",
            ExitCode.USAGE,
        ) from None


@app.command()
@handled
def vectors(path: Path = typer.Argument(..., help="A vectors file in the v1 format.")) -> None:
    """Recompute every case of a hash-chain vectors file; exit 0 only if all match."""
    from run_proof_pipeline.integrity.vectors import check_vectors

    if not path.is_file():
        raise CommandError(f"no vectors file at {path}", ExitCode.USAGE)
    try:
        report = check_vectors(path)
    except (ValueError, KeyError, TypeError) as exc:
        raise CommandError(f"{path} is not a v1 vectors file: {exc}", ExitCode.USAGE) from None
    first = report.first_mismatch
    if report.ok or first is None:
        print(f"{report.text()} ({path})")
        return
    # The file's value is the stored side, ours the recomputed one (integrity/mismatch.py).
    mismatch = first.mismatch
    print(
        json.dumps(
            {
                "case": first.case,
                "field": mismatch.field,
                "stored": mismatch.stored,
                "recomputed": mismatch.recomputed,
            }
        ),
    )
    raise CommandError(report.text(), ExitCode.FAILED)


@app.command()
@handled
def plan(
    tenant_id: str = typer.Option("", "--tenant-id", help="Tenant of --run-id."),
    run_id: str = typer.Option("", "--run-id", help="Run to prove; default: the latest trace."),
    coordinator_tests: bool = typer.Option(True, help="Run Step 5 (the coordinator tests)."),
    verbose: bool = typer.Option(
        False, "--verbose", help="Show Dagster's own output (every event) instead of its log file."
    ),
) -> None:
    """Run the seed's test plan (Dagster job run_proof_plan): one line per step, then the
    Output Report; Dagster's own output goes to a log file (--verbose: to the terminal)."""
    import subprocess
    import tempfile
    import time
    import uuid

    from run_proof_pipeline.cli.dagster_env import dagster_environment, plan_execute_command
    from run_proof_pipeline.cli.plan_output import (
        INVOCATION_TAG,
        no_run_line,
        open_plan_log,
        read_run_steps,
        report_data,
        step_outcomes,
    )

    config = _plan_config(tenant_id, run_id, coordinator_tests)
    resolved = announced_database()
    if resolved.embedded:
        embedded_store_ready(resolved)
    environment = dagster_environment(resolved)
    # A tag of this invocation's own finds its run afterwards (not "the latest run": a
    # schedule or sensor may have started one meanwhile).
    invocation = uuid.uuid4().hex
    command = [*plan_execute_command(), "--tags", json.dumps({INVOCATION_TAG: invocation})]
    print(f"DAGSTER_HOME={environment.home}; running: dagster job execute -j run_proof_plan")
    log_path, log = (None, None) if verbose else open_plan_log(environment.home)
    if log_path is not None:
        print(f"Dagster's log: {log_path}")
    sys.stdout.flush()  # before the subprocess writes to the same terminal (--verbose)
    started = time.time()
    try:
        with tempfile.TemporaryDirectory(prefix="run-proof-plan-") as scratch:
            if config:
                # `dagster job execute` takes run config only as files (-c); JSON is YAML.
                config_file = Path(scratch) / "run_config.yaml"
                config_file.write_text(json.dumps(config), encoding="utf-8")
                command += ["-c", str(config_file)]
            completed = subprocess.run(
                command,
                env=environment.env,
                stdout=log,
                stderr=subprocess.STDOUT if log is not None else None,
                check=False,
            )
        steps = read_run_steps(environment.env, invocation, log)
        report = _plan_report(environment.report_dir, steps.dagster_run_id, started)
        print()
        if steps.dagster_run_id is None:
            # Dagster stopped before it recorded a run (a bad storage URL, say): no step ran,
            # and five "skipped" lines would hide why; its last line (redacted) says it.
            print(no_run_line(log_path))
        else:
            outcomes = step_outcomes(
                steps, report_data(report), coordinator_tests=coordinator_tests
            )
            for outcome in outcomes:
                print(outcome.line())
        if report is not None:
            print()
            print(report.read_text(encoding="utf-8"))
            print(f"(report written to {report})")
        extras_ok = True
        if resolved.embedded and steps.dagster_run_id is not None:
            # The embedded default only (never a user's DATABASE_URL): what makes the UI
            # worth opening after `make demo` (cli/demo_extras.py), after the plan's result.
            from run_proof_pipeline.cli.demo_extras import run_demo_extras

            print()
            sys.stdout.flush()
            extras_ok = run_demo_extras(environment.env, steps.dagster_run_id, log, log_path)
    finally:
        if log is not None:
            log.close()
    if completed.returncode != 0:
        # With no Dagster run there is no step line, only the one line saying so.
        where = "the line above" if steps.dagster_run_id is None else "the failed step above"
        raise CommandError(
            f"the run-proof plan stopped: see {where} (dagster exit code {completed.returncode})",
            ExitCode.FAILED,
        )
    if not extras_ok:
        raise CommandError(
            "the plan passed, but the demo's sweep or checkpoint did not: see the line above",
            ExitCode.FAILED,
        )


def _plan_report(directory: Path, dagster_run_id: str | None, started: float) -> Path | None:
    """The run's Markdown report: named by its Dagster run id (defs/plan/ops.py), else the
    newest one written since the plan started (the run could not be read back)."""
    if dagster_run_id is not None:
        named = directory / f"run-proof-report-{dagster_run_id}.md"
        return named if named.is_file() else None
    reports = sorted(
        (p for p in directory.glob("run-proof-report-*.md") if p.stat().st_mtime >= started),
        key=lambda p: p.stat().st_mtime,
    )
    return reports[-1] if reports else None


def _plan_config(tenant_id: str, run_id: str, coordinator_tests: bool) -> dict[str, object]:
    if bool(tenant_id) != bool(run_id):
        raise CommandError("--tenant-id and --run-id go together", ExitCode.USAGE)
    ops: dict[str, object] = {}
    if run_id:
        ops["step_1_latest_trace"] = {"config": {"run_id": run_id, "tenant_id": tenant_id}}
    if not coordinator_tests:
        ops["step_5_coordinator_tests"] = {"config": {"enabled": False}}
    return {"ops": ops} if ops else {}


# --- command modules: each domain registers its own commands on `app` here, one line each.
from run_proof_pipeline.cli import ledger_commands  # noqa: E402

ledger_commands.register(app, db_app)
from run_proof_pipeline.cli import legacy_commands  # noqa: E402

legacy_commands.register(app, db_app)
from run_proof_pipeline.cli import sweep_commands  # noqa: E402

sweep_commands.register(app)
from run_proof_pipeline.cli import harden_commands  # noqa: E402

harden_commands.register(db_app)
from run_proof_pipeline.cli import ui_command  # noqa: E402

ui_command.register(app)
# (end of command modules)

if __name__ == "__main__":
    app()
