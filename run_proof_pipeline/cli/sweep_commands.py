"""`run-proof sweep`: verify many runs with the nightly sweep's code and exit codes."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import typer

from run_proof_pipeline.cli.errors import CommandError, handled
from run_proof_pipeline.errors import ExitCode

if TYPE_CHECKING:  # the CLI imports its domains only when a command runs (start-up time)
    from run_proof_pipeline.sweep.report import SweepProgress


def _since(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(
            f"--since {value!r} is not a date (YYYY-MM-DD or an ISO-8601 timestamp)",
            ExitCode.USAGE,
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def sweep(
    tenant_id: str | None = typer.Option(None, "--tenant-id", help="Only this tenant's runs."),
    since: str | None = typer.Option(
        None, "--since", help="Only runs started on or after this date (UTC unless given)."
    ),
    full: bool = typer.Option(
        False, "--full", help="Re-verify every sealed run, not only those not verified yet."
    ),
    workers: int = typer.Option(
        2, "--workers", help="Processes, 1 to 16 (each with its own connection)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Verify every sealed run not verified since its seal (or all with --full); exit 1 if
    any run FAILED."""
    from run_proof_pipeline.cli.database import announced_database
    from run_proof_pipeline.proof.worker_limit import check_workers
    from run_proof_pipeline.sweep import SweepOptions, run_sweep

    # The shared bound (proof/worker_limit.py): a ConfigError, exit 2, before any connection.
    check_workers(workers, source="--workers")
    options = SweepOptions(
        full=full, tenant_id=tenant_id, since=_since(since), workers=workers, progress_every=0.5
    )
    resolved = announced_database(machine_output=as_json)
    # A shard's failure is a SweepWorkerError (a RunProofError: exit 5 when the server went
    # away, else 1, as in process) and a shard's bug a WorkerBug with its traceback; the
    # root mapping in cli/errors.py reports both.
    with _progress_bar(enabled=not as_json and sys.stdout.isatty()) as on_progress:
        report = run_sweep(resolved.url, options, progress=on_progress)
    if as_json:
        print(json.dumps(report.to_dict()))
    else:
        print(
            f"{report.mode} sweep: {report.runs} runs, {report.steps} steps, "
            f"{report.failures} failed, {report.elapsed_seconds:.1f} s "
            f"({report.steps_per_second:,.0f} steps/s)"
        )
        for failed in report.failed:
            print(
                f"FAILED tenant {failed.tenant_id} run {failed.run_id}: first bad "
                f"{failed.first_bad}: {failed.reason}"
            )
        if report.failures > len(report.failed):
            print(f"... and {report.failures - len(report.failed)} more failed runs")
    if not report.ok:
        raise typer.Exit(int(ExitCode.FAILED))


@contextmanager
def _progress_bar(*, enabled: bool) -> Iterator[Callable[[SweepProgress], None] | None]:
    """A rich progress bar on a TTY; nothing elsewhere (logs and pipes stay clean)."""
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("sweeping"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps · {task.fields[rate]} steps/s"),
        TimeRemainingColumn(),
        transient=True,
    )
    task = progress.add_task("sweep", total=None, rate="0")

    def update(p: SweepProgress) -> None:
        progress.update(
            task,
            completed=p.steps_done,
            total=p.steps_total or None,
            rate=f"{p.steps_per_second:,.0f}",
        )

    with progress:
        yield update


def register(app: typer.Typer) -> None:
    app.command("sweep")(handled(sweep))
