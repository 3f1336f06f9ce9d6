"""Run a sweep: page through the selected traces, prove them in batches, record the results.

With `workers` > 1 the traces are split into that many shards (by a hash of trace_id), each
proven by a worker process of proof/workers.py (a fresh interpreter, never a fork of this
possibly threaded process) on its own connection, so both the Python work and PostgreSQL's
work spread over the cores.  Progress reaches the caller at most every `progress_every`
seconds, from whichever process did the work.

Nothing is written before the store passed the relation check (store/relations.py): an
unmigrated store gets no state table. A shard that fails is raised in the caller as the same
error in process would be (proof/workers.py decides, docs/bad-input.md): the server gone is
an unreachable SweepWorkerError, an untrusted or unmigrated store is that error again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.ledger.queries import entries_of_legacy_traces, ledger_present
from run_proof_pipeline.proof.stream import prove_traces
from run_proof_pipeline.proof.workers import WorkerError, WorkerJob, run_workers
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.copy_reader import SnapshotCopyReader
from run_proof_pipeline.store.engine import run_on_connection
from run_proof_pipeline.store.snapshot import begin_snapshot, export_snapshot
from run_proof_pipeline.sweep.report import FailedRun, SweepProgress, SweepReport
from run_proof_pipeline.sweep.state import (
    Selection,
    ensure_state_table,
    next_page,
    record,
    totals,
)

__all__ = ["PAGE_SIZE", "SweepOptions", "SweepWorkerError", "run_sweep", "shard_job"]

ProgressCallback = Callable[[SweepProgress], None]
_SHARD_JOB = "run_proof_pipeline.sweep.runner:shard_job"
# Traces per snapshot and per COPY: big enough that per-statement costs vanish, small enough
# that a page of long runs still streams (memory is per step, never per page).
PAGE_SIZE = 500


@dataclass(frozen=True)
class SweepOptions:
    full: bool = False
    tenant_id: str | None = None
    since: datetime | None = None
    workers: int = 1
    progress_every: float = 10.0
    page_size: int = PAGE_SIZE

    @property
    def mode(self) -> str:
        return "full" if self.full else "incremental"

    def selection(self, shard: int = 0) -> Selection:
        return Selection(
            full=self.full,
            tenant_id=self.tenant_id,
            since=self.since,
            shards=max(1, self.workers),
            shard=shard,
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["since"] = None if self.since is None else self.since.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SweepOptions:
        since = data["since"]
        return cls(**{**data, "since": None if since is None else datetime.fromisoformat(since)})


class SweepWorkerError(WorkerError):
    """A shard's worker failed (proof/workers.py): the message is one line, as the same
    failure says it in process; `unreachable` when the database went away or refused it. A
    shard's bug is a WorkerBug instead, which keeps its traceback."""


def run_sweep(
    url: DatabaseUrl, options: SweepOptions, progress: ProgressCallback | None = None
) -> SweepReport:
    """Verify every trace the options select; the report lists each failed run."""
    started = time.perf_counter()
    runs_total, steps_total = run_on_connection(url, lambda conn: _prepare(conn, options))
    tracker = _Tracker(runs_total, steps_total, started, options.progress_every, progress)
    if options.workers <= 1:
        report = run_on_connection(
            url, lambda conn: _sweep_shard(conn, url, options, 0, tracker.add)
        )
    else:
        report = _sweep_in_processes(url, options, tracker)
    # The pages hold format traces only (v1, v2); a run the ledger recorded whose trace was turned
    # legacy would otherwise drop out of the sweep without a word.
    legacy = run_on_connection(
        url, lambda conn: _recorded_runs_turned_legacy(conn, options), snapshot=True
    )
    for failed in legacy:
        report.add_failed(failed)
    report.elapsed_seconds = time.perf_counter() - started
    tracker.emit(force=True)
    return report


async def _prepare(conn: AsyncConnection, options: SweepOptions) -> tuple[int, int]:
    # The relation check first (StoreNotMigrated, UntrustedStore): a store that cannot be
    # proved gets nothing written, not even the sweep's state table.
    await begin_snapshot(conn)
    await conn.rollback()
    await ensure_state_table(conn)
    await conn.commit()
    return await totals(conn, replace(options.selection(), shards=1, shard=0))


async def _recorded_runs_turned_legacy(
    conn: AsyncConnection, options: SweepOptions
) -> list[FailedRun]:
    """A FAILED run for every live ledger entry (of the selected tenant and time) whose trace
    is still in aos_traces but no longer in format v1 or v2, naming the entry."""
    if not await ledger_present(conn):
        return []
    entries = await entries_of_legacy_traces(conn, tenant_id=options.tenant_id, since=options.since)
    return [
        FailedRun(
            tenant_id=entry.tenant_id,
            run_id=entry.run_id,
            status="FAILED",
            first_bad="ledger",
            reason=f"ledger: {entry.reason()}",
        )
        for entry in entries
    ]


async def _sweep_shard(
    conn: AsyncConnection,
    url: DatabaseUrl,
    options: SweepOptions,
    shard: int,
    on_page: Callable[[int, int], None],
) -> SweepReport:
    selection = options.selection(shard)
    report = SweepReport(mode=options.mode)
    after = ""
    # The steps are read through a sync connection that joins each page's snapshot: this
    # process does nothing else meanwhile, and a blocking libpq loop is the cheaper read.
    with SnapshotCopyReader(url.libpq()) as reader:
        while True:
            # Each page is proven in its own snapshot; the keyset moves past it.
            await begin_snapshot(conn)
            page = await next_page(conn, selection, after, options.page_size)
            if not page:
                await conn.rollback()
                break
            reader.join(await export_snapshot(conn))
            proofs = await prove_traces(conn, page, reader=reader)
            await conn.rollback()
            await record(conn, proofs)
            await conn.commit()
            for trace, proof in proofs:
                report.add(trace, proof)
            after = page[-1].trace_id
            on_page(len(page), sum(proof.steps_read for _, proof in proofs))
    return report


class _Tracker:
    def __init__(
        self,
        runs_total: int,
        steps_total: int,
        started: float,
        every: float,
        callback: ProgressCallback | None,
    ) -> None:
        self.runs_total, self.steps_total = runs_total, steps_total
        self.runs = self.steps = 0
        self.started, self.every, self.callback = started, every, callback
        self.last = started

    def add(self, runs: int, steps: int) -> None:
        self.runs += runs
        self.steps += steps
        self.emit()

    def emit(self, *, force: bool = False) -> None:
        now = time.perf_counter()
        if self.callback is None or (not force and now - self.last < self.every):
            return
        self.last = now
        self.callback(
            SweepProgress(
                runs_done=self.runs,
                # Runs sealed while the sweep goes on can push "done" past the first count.
                runs_total=max(self.runs_total, self.runs),
                steps_done=self.steps,
                steps_total=max(self.steps_total, self.steps),
                elapsed_seconds=now - self.started,
            )
        )


def shard_job(task: dict[str, Any], emit: Callable[[Any], None]) -> dict[str, Any]:
    """A worker's job (proof/workers.py): one shard swept, `[runs, steps]` emitted per page,
    the shard's report returned."""
    url = DatabaseUrl.parse(task["url"])
    options = SweepOptions.from_json(task["options"])
    report = run_on_connection(
        url,
        lambda conn: _sweep_shard(
            conn, url, options, int(task["shard"]), lambda runs, steps: emit([runs, steps])
        ),
    )
    return report.to_json()


def _sweep_in_processes(url: DatabaseUrl, options: SweepOptions, tracker: _Tracker) -> SweepReport:
    """One worker per shard; the first failure is the sweep's: the other shards stop (each
    page they committed is recorded; the rest is proved by the next sweep)."""
    report = SweepReport(mode=options.mode)
    jobs = [
        WorkerJob(_SHARD_JOB, {"url": url.libpq(), "options": options.to_json(), "shard": shard})
        for shard in range(options.workers)
    ]
    password = url.url.password
    run_workers(
        jobs,
        lambda result: report.merge(SweepReport.from_json(result)),
        lambda page: tracker.add(int(page[0]), int(page[1])),
        secret=None if password is None else str(password),
        error=SweepWorkerError,
    )
    return report
