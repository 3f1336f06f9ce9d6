"""Faults (slow): the server stopped mid-plan, a writer killed between steps, and eight
concurrent writers. Each test that needs its own server starts one in a tmp dir and stops it
(pg_ctl on its own data dir); the killed writer is killed by its own PID."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterEventType, HookContext, success_hook

from run_proof_pipeline.defs.plan.job import run_proof_plan
from run_proof_pipeline.defs.resources import TraceStoreResource
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import async_engine
from run_proof_pipeline.store.migrate import upgrade
from run_proof_pipeline.store.recorder import TraceRecorder, TraceStart
from run_proof_pipeline_tests.support.stores import BASE, make_step, prove, record_run
from run_proof_pipeline_tests.test_ledger_support import audit, ledger_entries, one

pytestmark = pytest.mark.slow

NO_STEP_5 = {"ops": {"step_5_coordinator_tests": {"config": {"enabled": False}}}}


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[LocalPostgres]:
    server = LocalPostgres(tmp_path / "pg", fast=True)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _plan(url: DatabaseUrl, stop_after: str | None, server: LocalPostgres, instance: Any) -> Any:
    @success_hook
    def stop_server(context: HookContext) -> None:
        # Deterministic "in the middle": the server goes away between two ops.
        if context.op.name == stop_after:
            server.stop()

    job = run_proof_plan.with_hooks({stop_server}) if stop_after else run_proof_plan
    return job.execute_in_process(
        instance=instance,
        run_config=NO_STEP_5,
        resources={
            "trace_store": TraceStoreResource(database_url=url.libpq(), use_postgres_traces="true")
        },
        raise_on_error=False,
    )


def test_server_stopped_mid_plan_fails_that_run_naming_the_step_then_recovers(
    own_server: LocalPostgres,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    dagster_instance: Any,
) -> None:
    monkeypatch.setenv("RUN_PROOF_REPORT_DIR", str(tmp_path / "reports"))
    url = DatabaseUrl.parse(own_server.create_database("faults"))
    upgrade(url)
    record_run(url, "tenant-a", "run-1", steps=4)

    broken = _plan(url, "step_2_step_count", own_server, dagster_instance)

    assert not broken.success
    failures = [e for e in broken.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert [e.step_key for e in failures] == ["step_3_coordinator_proof"]
    message = failures[0].event_specific_data.error.message  # type: ignore[union-attr]
    assert "Step 3" in message
    assert "connection" in message.lower() or "server" in message.lower(), message
    assert own_server.password not in message

    own_server.start()
    recovered = _plan(url, None, own_server, dagster_instance)

    assert recovered.success
    proof = recovered.output_for_node("step_3_coordinator_proof")
    assert proof.proven.integrity.verification_status == "VERIFIED"


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from run_proof_pipeline.settings import DatabaseUrl
    from run_proof_pipeline.store.engine import async_engine
    from run_proof_pipeline.store.recorder import TraceRecorder, TraceStart
    from run_proof_pipeline_tests.support.stores import BASE, make_step

    async def main(url):
        engine = async_engine(DatabaseUrl.parse(url))
        recorder = TraceRecorder(engine)
        await recorder.start_trace(TraceStart(tenant_id="tenant-a", run_id="run-killed",
                                              started_at=BASE))
        for index in range(100):
            await recorder.append_step("tenant-a", "run-killed", make_step(index))
            print(f"step {index}", flush=True)
            sys.stdin.readline()  # wait to be told to go on (or to be killed here)
        await recorder.seal("tenant-a", "run-killed", status="succeeded", completed_at=BASE)

    asyncio.run(main(sys.argv[1]))
    """
)


def test_writer_killed_between_steps_leaves_an_unsealed_prefix(store: DatabaseUrl) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, store.libpq()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert writer.stdout is not None and writer.stdin is not None
        for expected in range(3):
            assert writer.stdout.readline().strip() == f"step {expected}"
            if expected < 2:
                writer.stdin.write("\n")
                writer.stdin.flush()
    finally:
        writer.kill()  # by its own PID
        writer.wait(timeout=30)

    integrity = prove(store, "tenant-a", "run-killed").integrity
    assert writer.returncode != 0
    assert integrity.verification_status == "UNSEALED"
    assert integrity.chain_length == 3 and integrity.failure is None
    assert ledger_entries(store) == []


WRITERS = 8
RUNS = 16
STEPS_PER_RUN_PER_WRITER = 6


def _assignments() -> dict[int, list[str]]:
    """Writer w owns runs 2w and 2w+1; runs 12-15 are also written by two other writers."""
    # (writers 6 and 7 own runs 12-15, so the extra writers are always others)
    plan = {w: [f"run-{2 * w:02d}", f"run-{2 * w + 1:02d}"] for w in range(WRITERS)}
    for shared, extra in ((12, (0, 1)), (13, (2, 3)), (14, (4, 5)), (15, (1, 6))):
        for w in extra:
            plan[w].append(f"run-{shared:02d}")
    return plan


def test_eight_concurrent_writers_make_no_fork_no_gap_and_lose_no_step(store: DatabaseUrl) -> None:
    async def start_all() -> None:
        engine = async_engine(store)
        try:
            recorder = TraceRecorder(engine)
            for r in range(RUNS):
                await recorder.start_trace(
                    TraceStart(tenant_id="tenant-a", run_id=f"run-{r:02d}", started_at=BASE)
                )
        finally:
            await engine.dispose()

    asyncio.run(start_all())
    plan = _assignments()
    barrier = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    async def write(writer: int) -> None:
        engine = async_engine(store)
        try:
            recorder = TraceRecorder(engine)
            for k in range(STEPS_PER_RUN_PER_WRITER):
                for run_id in plan[writer]:
                    step = make_step(k, params={"writer": writer, "k": k})
                    await recorder.append_step("tenant-a", run_id, step)
        finally:
            await engine.dispose()

    async def seal(runs: list[str]) -> None:
        engine = async_engine(store)
        try:
            for run_id in runs:
                await TraceRecorder(engine).seal(
                    "tenant-a", run_id, status="succeeded", completed_at=BASE
                )
        finally:
            await engine.dispose()

    def thread(writer: int) -> None:
        try:
            barrier.wait(timeout=60)
            asyncio.run(write(writer))
            barrier.wait(timeout=120)  # every step written before any seal
            asyncio.run(seal([f"run-{r:02d}" for r in (2 * writer, 2 * writer + 1)]))
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    # Daemon threads: a writer that hangs fails the test below instead of blocking pytest's exit.
    threads = [
        threading.Thread(target=thread, args=(w,), name=f"writer-{w}", daemon=True)
        for w in range(WRITERS)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 300
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))

    assert [t.name for t in threads if t.is_alive()] == [], "writers still running after 300 s"
    assert errors == []
    writers_of = Counter(run_id for runs in plan.values() for run_id in runs)
    for r in range(RUNS):
        run_id = f"run-{r:02d}"
        expected = writers_of[run_id] * STEPS_PER_RUN_PER_WRITER
        integrity = prove(store, "tenant-a", run_id).integrity
        assert integrity.verification_status == "VERIFIED", integrity.failure_reason
        assert integrity.chain_length == expected
        written = one(
            store,
            "SELECT count(DISTINCT (params->>'writer', params->>'k')) FROM aos_trace_steps"
            " WHERE run_id = %s",
            (run_id,),
        )
        assert written == expected  # every (writer, k) exactly once: nothing lost
    assert [e.seq for e in ledger_entries(store)] == list(range(1, RUNS + 1))
    assert audit(store).problems == []
