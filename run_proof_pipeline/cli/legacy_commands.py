"""`run-proof adopt` and `run-proof retire`: legacy AOS traces into the proven formats, and
runs out of the store with a signed tombstone (one run, or every run created before a date,
ahead of AOS's retention: ledger/retire_batch.py)."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import typer

from run_proof_pipeline.cli.database import announced_database
from run_proof_pipeline.cli.errors import CommandError, handled, record_outcome
from run_proof_pipeline.errors import ExitCode

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


def parse_time_option(value: str, option: str) -> datetime | None:
    """A date (midnight UTC) or an ISO 8601 time with an offset; naive times are refused."""
    if not value:
        return None
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(
            f"{option} {value!r} is not a date (YYYY-MM-DD) or ISO 8601 time",
            ExitCode.USAGE,
        ) from None
    if parsed.tzinfo is None:
        raise CommandError(
            f"{option} {value!r} has no UTC offset (write e.g. {value}Z)", ExitCode.USAGE
        )
    return parsed


def parse_started_before(value: str) -> datetime | None:
    return parse_time_option(value, "--started-before")


def adopt(
    tenant_id: str = typer.Option("", "--tenant-id", help="Only this tenant's traces."),
    run_id: str = typer.Option("", "--run-id", help="Only this run."),
    started_before: str = typer.Option(
        "", "--started-before", help="Only traces started before this date or time (UTC)."
    ),
    batch_size: int = typer.Option(200, "--batch-size", min=1, help="Traces per batch."),
) -> None:
    """Adopt finished legacy AOS traces into format v2: hashes from their rows as they stand
    now, in columns and tables of ours (no AOS column changes), recorded in the ledger.
    Their proofs then cover changes since adoption."""
    from run_proof_pipeline.adoption.adopt import (
        AdoptionSelection,
        BatchDone,
        adopt_legacy_traces,
    )
    from run_proof_pipeline.store.engine import run_on_engine

    selection = AdoptionSelection(
        tenant_id=tenant_id or None,
        run_id=run_id or None,
        started_before=parse_started_before(started_before),
    )
    resolved = announced_database()
    interactive = sys.stdout.isatty()

    async def run(engine: AsyncEngine) -> Any:
        with _progress_bar() if interactive else nullcontext(None) as progress:
            task = None if progress is None else progress.add_task("adopting", total=None)

            def report(done: BatchDone) -> None:
                if progress is not None:
                    progress.update(task, advance=done.examined)
                else:
                    print(
                        f"batch {done.batch}: {done.examined} traces examined; "
                        f"{done.adopted} adopted, {done.skipped} skipped so far",
                        flush=True,
                    )

            return await adopt_legacy_traces(
                engine, selection, batch_size=batch_size, progress=report
            )

    report = run_on_engine(resolved.url, run)
    counts = (
        f"{len(report.adopted)} adopted, {len(report.skipped)} skipped, "
        f"{report.already_adopted} adopted before"
    )
    record_outcome(
        f"the adoption is committed ({counts})" if report.adopted else f"nothing adopted ({counts})"
    )
    for trace in report.adopted:
        print(
            f"adopted tenant {trace.tenant_id!r}, run {trace.run_id!r}: {trace.chain_length} "
            f"steps, seal {trace.root_hash}, adopted at {trace.adopted_at.isoformat()}"
        )
    for skipped in report.skipped:
        print(
            f"skipped tenant {skipped.tenant_id!r}, run {skipped.run_id!r} "
            f"(trace {skipped.trace_id!r}): {skipped.reason}"
        )
    print(counts)


def _progress_bar() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())


def retire(
    tenant_id: str = typer.Option(
        "", "--tenant-id", help="Tenant of the run (with --run-id: required)."
    ),
    run_id: str = typer.Option("", "--run-id", help="Run to retire."),
    created_before: str = typer.Option(
        "",
        "--created-before",
        help="Instead of --run-id: every format run created before this date or time (UTC), "
        "sealed or not, as AOS's retention selects them.",
    ),
    reason: str = typer.Option(..., "--reason", help="Why (retention, erasure request...)."),
    batch_size: int = typer.Option(
        200, "--batch-size", min=1, help="With --created-before: runs per batch."
    ),
) -> None:
    """Append the run's signed tombstone to the ledger, so that its rows may then be deleted or
    archived without an alarm. Needs RUN_PROOF_SIGNING_KEY (an existing key)."""
    if bool(run_id) == bool(created_before):
        raise CommandError(
            "give either --run-id (one run, with --tenant-id) or --created-before (every run "
            "created before a date)",
            ExitCode.USAGE,
        )
    cut = parse_time_option(created_before, "--created-before")
    if cut is not None:
        _retire_created_before(tenant_id or None, cut, reason, batch_size)
        return
    if not tenant_id:
        raise CommandError("--run-id needs --tenant-id", ExitCode.USAGE)
    _retire_one(tenant_id, run_id, reason)


def _retire_one(tenant_id: str, run_id: str, reason: str) -> None:
    from run_proof_pipeline.ledger.retirement import RetirementError, retire_run
    from run_proof_pipeline.ledger.settings import load_ledger_settings
    from run_proof_pipeline.store.engine import run_on_engine

    resolved = announced_database()
    key = load_ledger_settings().signing_key()
    try:
        retirement = run_on_engine(
            resolved.url, lambda engine: retire_run(engine, tenant_id, run_id, reason, key)
        )
    except RetirementError as exc:
        raise CommandError(str(exc), ExitCode.NOT_FOUND) from None
    tombstone = retirement.tombstone
    ids = f"tenant {tombstone.tenant_id!r}, run {tombstone.run_id!r}"
    record_outcome(
        f"the tombstone of {ids} is committed as ledger entry {retirement.ledger_seq}"
        if retirement.newly_retired
        else f"{ids} was retired before (ledger entry {retirement.ledger_seq}); nothing changed"
    )
    verb = "retired" if retirement.newly_retired else "already retired"
    print(
        f"{verb}: tenant {tombstone.tenant_id!r}, run {tombstone.run_id!r} "
        f"(trace {tombstone.trace_id!r}, {tombstone.chain_length} steps, hash "
        f"{tombstone.root_hash}); tombstone is ledger entry {retirement.ledger_seq}, "
        f"signed by {retirement.signer} at {retirement.retired_at.isoformat()}"
    )
    print(
        "its rows may now be deleted (DELETE FROM aos_traces WHERE trace_id = ...) or moved "
        "to aos_traces_archive; create a checkpoint to cover the tombstone"
    )


def _retire_created_before(
    tenant_id: str | None, cut: datetime, reason: str, batch_size: int
) -> None:
    from run_proof_pipeline.ledger.retire_batch import (
        RetireBatchDone,
        RetireSelection,
        retire_created_before,
    )
    from run_proof_pipeline.ledger.retirement import RetirementError
    from run_proof_pipeline.ledger.settings import load_ledger_settings
    from run_proof_pipeline.store.engine import run_on_engine

    resolved = announced_database()
    key = load_ledger_settings().signing_key()
    selection = RetireSelection(created_before=cut, tenant_id=tenant_id)

    def progress(done: RetireBatchDone) -> None:
        # On stderr: stdout lists the runs, one line each.
        print(
            f"batch {done.batch}: {done.examined} runs examined; {done.retired} retired, "
            f"{done.already_retired} retired before, {done.refused} refused so far",
            file=sys.stderr,
            flush=True,
        )

    try:
        report = run_on_engine(
            resolved.url,
            lambda engine: retire_created_before(
                engine, selection, reason, key, batch_size=batch_size, progress=progress
            ),
        )
    except RetirementError as exc:
        raise CommandError(str(exc), ExitCode.USAGE) from None
    counts = (
        f"{len(report.retired)} retired, {len(report.already_retired)} retired before, "
        f"{len(report.refused)} refused"
    )
    record_outcome(
        f"the tombstones are committed ({counts})"
        if report.retired
        else f"no new tombstone ({counts})"
    )
    for retirement in report.retired:
        tombstone = retirement.tombstone
        print(
            f"retired: tenant {tombstone.tenant_id!r}, run {tombstone.run_id!r} (trace "
            f"{tombstone.trace_id!r}, {tombstone.chain_length} steps, hash "
            f"{tombstone.root_hash}); tombstone is ledger entry {retirement.ledger_seq}"
        )
    for refused in report.refused:
        print(
            f"refused: tenant {refused.tenant_id!r}, run {refused.run_id!r} (trace "
            f"{refused.trace_id!r}): {refused.reason}"
        )
    where = f" of tenant {tenant_id!r}" if tenant_id else ""
    print(f"format runs{where} created before {cut.isoformat()}: {counts}")
    if report.refused:
        raise CommandError(
            f"{len(report.refused)} runs created before {cut.isoformat()} were not retired "
            "(listed above): AOS's retention will fail on them until they are resolved",
            ExitCode.NOT_FOUND,
        )


def register(app: typer.Typer, db_app: typer.Typer) -> None:
    app.command("adopt")(handled(adopt))
    app.command("retire")(handled(retire))
