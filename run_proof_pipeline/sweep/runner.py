"""Run a sweep: page through the selected traces, prove them in batches, record the results.

With `workers` > 1 the traces are split into that many shards (by a hash of trace_id), each
proven by its own process on its own connection, so both the Python work and PostgreSQL's
work spread over the cores.  Progress reaches the caller at most every `progress_every`
seconds, from whichever process did the work.

Nothing is written before the store passed the relation check (store/relations.py): an
unmigrated store gets no state table. A shard that fails reports what kind of failure it
was, so that the caller maps it as it would the same error in process (docs/bad-input.md):
the server gone is `unreachable`, an untrusted or unmigrated store is that error again.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import OperationalError as SqlOperationalError

from run_proof_pipeline.ledger.queries import entries_of_legacy_traces, ledger_present
from run_proof_pipeline.proof.stream import prove_traces
from run_proof_pipeline.settings import ConfigError, DatabaseUrl
from run_proof_pipeline.store.copy_reader import SnapshotCopyReader
from run_proof_pipeline.store.engine import async_engine
from run_proof_pipeline.store.relations import StoreNotMigrated, UntrustedStore
from run_proof_pipeline.store.snapshot import begin_snapshot, export_snapshot
from run_proof_pipeline.sweep.report import FailedRun, SweepProgress, SweepReport
from run_proof_pipeline.sweep.state import (
    Selection,
    ensure_state_table,
    next_page,
    record,
    totals,
)

ProgressCallback = Callable[[SweepProgress], None]
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


def run_sweep(
    url: DatabaseUrl, options: SweepOptions, progress: ProgressCallback | None = None
) -> SweepReport:
    """Verify every trace the options select; the report lists each failed run."""
    started = time.perf_counter()
    runs_total, steps_total = asyncio.run(_prepare(url, options.selection()))
    tracker = _Tracker(runs_total, steps_total, started, options.progress_every, progress)
    if options.workers <= 1:
        report = asyncio.run(_sweep_shard(url, options, 0, tracker.add))
    else:
        report = _sweep_in_processes(url, options, tracker)
    # The pages hold format traces only (v1, v2); a run the ledger recorded whose trace was turned
    # legacy would otherwise drop out of the sweep without a word.
    for failed in asyncio.run(_recorded_runs_turned_legacy(url, options)):
        report.add_failed(failed)
    report.elapsed_seconds = time.perf_counter() - started
    tracker.emit(force=True)
    return report


async def _prepare(url: DatabaseUrl, selection: Selection) -> tuple[int, int]:
    engine = async_engine(url)
    try:
        # The relation check first (StoreNotMigrated, UntrustedStore): a store that cannot be
        # proved gets nothing written, not even the sweep's state table.
        async with engine.connect() as conn:
            await begin_snapshot(conn)
            await conn.rollback()
        async with engine.begin() as conn:
            await ensure_state_table(conn)
        async with engine.connect() as conn:
            return await totals(conn, replace(selection, shards=1, shard=0))
    finally:
        await engine.dispose()


async def _recorded_runs_turned_legacy(url: DatabaseUrl, options: SweepOptions) -> list[FailedRun]:
    """A FAILED run for every live ledger entry (of the selected tenant and time) whose trace
    is still in aos_traces but no longer in format v1 or v2, naming the entry."""
    engine = async_engine(url)
    try:
        async with engine.connect() as conn:
            await begin_snapshot(conn)
            if not await ledger_present(conn):
                return []
            entries = await entries_of_legacy_traces(
                conn, tenant_id=options.tenant_id, since=options.since
            )
            await conn.rollback()
    finally:
        await engine.dispose()
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
    url: DatabaseUrl, options: SweepOptions, shard: int, on_page: Callable[[int, int], None]
) -> SweepReport:
    selection = options.selection(shard)
    report = SweepReport(mode=options.mode)
    engine = async_engine(url)
    after = ""
    try:
        # The steps are read through a sync connection that joins each page's snapshot: this
        # process does nothing else meanwhile, and a blocking libpq loop is the cheaper read.
        async with engine.connect() as conn:
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
    finally:
        await engine.dispose()
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


def _shard_process(url: DatabaseUrl, options: SweepOptions, shard: int, out: Any) -> None:
    try:
        report = asyncio.run(
            _sweep_shard(
                url,
                options,
                shard,
                lambda runs, steps: out.put(("page", runs, steps)),
            )
        )
        out.put(("done", report))
    except BaseException as exc:
        out.put(("error", *_failure_of(exc)))


# What a shard's failure was: the kinds the CLI maps (cli/errors.py), by the same types.
UNREACHABLE, UNTRUSTED, NOT_MIGRATED, CONFIG, DATABASE, BUG = (
    "unreachable",
    "untrusted",
    "not migrated",
    "config",
    "database",
    "bug",
)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _failure_of(exc: BaseException) -> tuple[str, str]:
    """(kind, message) of a shard's exception; only a bug keeps its traceback."""
    if isinstance(exc, (SqlOperationalError, psycopg.OperationalError, ConnectionError)):
        return UNREACHABLE, f"database unreachable: {_first_line(exc)}"
    if isinstance(exc, UntrustedStore):
        return UNTRUSTED, str(exc)
    if isinstance(exc, StoreNotMigrated):
        return NOT_MIGRATED, str(exc)
    if isinstance(exc, ConfigError):
        return CONFIG, str(exc)
    if isinstance(exc, (DBAPIError, psycopg.Error)):
        return DATABASE, f"database error: {_first_line(exc)}"
    return BUG, traceback.format_exc()


class SweepWorkerError(RuntimeError):
    """A shard's process failed. `unreachable`: the database went away or refused it (the
    message is one line, as in process); otherwise the message holds what the shard said
    (its traceback for a bug)."""

    def __init__(self, message: str, *, unreachable: bool = False, bug: bool = True) -> None:
        super().__init__(message)
        self.unreachable = unreachable
        # False for an expected failure (a database error): one line, no traceback.
        self.bug = bug and not unreachable


def _raise_failure(kind: str, message: str) -> None:
    """Raise in the parent what the shard raised, as far as the CLI tells them apart."""
    if kind == UNTRUSTED:
        raise UntrustedStore(message)
    if kind == NOT_MIGRATED:
        raise StoreNotMigrated(message)
    if kind == CONFIG:
        raise ConfigError(message)
    raise SweepWorkerError(message, unreachable=kind == UNREACHABLE, bug=kind == BUG)


def _sweep_in_processes(url: DatabaseUrl, options: SweepOptions, tracker: _Tracker) -> SweepReport:
    # fork: the workers need no re-import, and nothing here holds a connection or a loop yet.
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    processes = [
        context.Process(
            target=_shard_process,
            args=(url, options, shard, out),
            daemon=True,
        )
        for shard in range(options.workers)
    ]
    for process in processes:
        process.start()
    report = SweepReport(mode=options.mode)
    pending = len(processes)
    failure: tuple[str, str] | None = None
    try:
        while pending:
            try:
                message = out.get(timeout=1.0)
            except queue.Empty:
                if not any(p.is_alive() for p in processes) and out.empty():
                    failure = (BUG, "a sweep worker exited without a report")
                    break
                continue
            kind = message[0]
            if kind == "page":
                tracker.add(message[1], message[2])
            elif kind == "done":
                report.merge(message[1])
                pending -= 1
            else:
                # The first failure is the sweep's: the other shards stop (each page they
                # committed is recorded; the rest is proved by the next sweep).
                failure = (message[1], message[2])
                break
    finally:
        for process in processes:
            if failure is not None and process.is_alive():
                process.terminate()  # our own child, by its handle
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()  # our own child, by its handle
                process.join()
    if failure is not None:
        _raise_failure(*failure)
    return report
