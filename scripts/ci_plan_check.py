"""CI: the plan's CI path, `dagster job execute`, on an untouched and on a tampered store.

On a throwaway server (scripts/ci_postgres.py) with a migrated trace store holding the demo
traces:
1. untouched: the command exits 0, Dagster's run record says SUCCESS, and the Output Report
   says HASH_CHAIN / VERIFIED, chain_length equal to the counted steps, coordinator tests passed
   (Step 5 runs, as the seed's plan says);
2. one step of the latest trace altered the way its table owner could: the command exits
   non-zero, and the run record shows Step 4 failed naming exactly that step, with Step 5 and
   the report not run.
Exits 0 only when all of that holds.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ci_postgres import ROOT, CiPostgres, ci_postgres
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus
from sqlalchemy import text

from run_proof_pipeline.cli.dagster_env import plan_execute_command
from run_proof_pipeline.demo import seed_demo
from run_proof_pipeline.plan.queries import LATEST_TRACE_SQL, STEP_COUNT_SQL
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import async_engine, sync_engine
from run_proof_pipeline.store.migrate import upgrade

# The tamper is the one the tests use (as table owner, append-only trigger disabled).
sys.path.insert(0, str(ROOT))
from run_proof_pipeline.plan.coordinator_checks.support import owner_sql


class CheckFailed(Exception):
    pass


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise CheckFailed(what)


def prepare_store(pg: CiPostgres) -> DatabaseUrl:
    store = DatabaseUrl.parse(pg.server.create_database("trace_store"))
    upgrade(store)

    async def seed() -> None:
        engine = async_engine(store)
        try:
            await seed_demo(engine)
        finally:
            await engine.dispose()

    asyncio.run(seed())
    return store


def latest_trace(store: DatabaseUrl) -> tuple[str, int]:
    """The seed's Step 1 and Step 2: the latest trace's run id and its step count."""
    engine = sync_engine(store)
    try:
        with engine.connect() as conn:
            run_id = conn.execute(text(LATEST_TRACE_SQL)).one().run_id
            count = conn.execute(text(STEP_COUNT_SQL), {"run_id": run_id}).scalar_one()
    finally:
        engine.dispose()
    return run_id, int(count)


def execute_plan(env: dict[str, str], instance: DagsterInstance) -> tuple[int, DagsterRun]:
    before = {run.run_id for run in instance.get_runs()}
    completed = subprocess.run(plan_execute_command(), env=env, cwd=ROOT, check=False, timeout=1800)
    new = [run for run in instance.get_runs() if run.run_id not in before]
    expect(len(new) == 1, f"expected one new Dagster run, found {len(new)}")
    return completed.returncode, new[0]


def step_keys(instance: DagsterInstance, run_id: str, kind: DagsterEventType) -> list[str]:
    return [
        entry.dagster_event.step_key
        for entry in instance.all_logs(run_id, of_type=kind)
        if entry.dagster_event is not None and entry.dagster_event.step_key
    ]


def report_of(report_dir: Path, run_id: str) -> dict[str, Any] | None:
    path = report_dir / f"run-proof-report-{run_id}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def check_untouched(env: dict[str, str], instance: DagsterInstance, report_dir: Path) -> str:
    code, run = execute_plan(env, instance)
    expect(code == 0, f"untouched store: dagster job execute exited {code}, expected 0")
    expect(run.status == DagsterRunStatus.SUCCESS, f"untouched store: run {run.status}")
    report = report_of(report_dir, run.run_id)
    expect(report is not None, f"untouched store: no Output Report for run {run.run_id}")
    assert report is not None
    expect(
        (report["integrity_model"], report["verification_status"]) == ("HASH_CHAIN", "VERIFIED"),
        f"untouched store: report says {report['integrity_model']} {report['verification_status']}",
    )
    expect(
        report["chain_length"] == report["step_count"] >= 1,
        f"untouched store: chain_length {report['chain_length']}, "
        f"step_count {report['step_count']}",
    )
    expect(
        str(report["pytest_result"]).startswith("pass"),
        f"untouched store: coordinator tests: {report['pytest_result']}",
    )
    return (
        f"untouched: exit 0, {report['run_id']} VERIFIED, chain_length "
        f"{report['chain_length']} == step_count, pytest {report['pytest_result']}"
    )


def check_tampered(
    env: dict[str, str], instance: DagsterInstance, report_dir: Path, store: DatabaseUrl
) -> str:
    run_id, count = latest_trace(store)
    bad = count // 2
    touched = owner_sql(
        store,
        "UPDATE aos_trace_steps SET params = '{\"tampered\": true}'"
        " WHERE run_id = %s AND step_index = %s",
        (run_id, bad),
        table="aos_trace_steps",
    )
    expect(touched == 1, f"tamper touched {touched} rows, expected 1")
    code, run = execute_plan(env, instance)
    expect(code != 0, "tampered store: dagster job execute exited 0")
    expect(run.status == DagsterRunStatus.FAILURE, f"tampered store: run {run.status}")
    failed = step_keys(instance, run.run_id, DagsterEventType.STEP_FAILURE)
    expect(failed == ["step_4_integrity_expectations"], f"tampered store: failed steps {failed}")
    (failure,) = instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_FAILURE)
    user = failure.dagster_event.step_failure_data.user_failure_data
    first_bad = user.metadata["first_bad"].value if user else None
    expect(first_bad == f"step {bad}", f"tampered store: first_bad {first_bad!r}, not step {bad}")
    ran = step_keys(instance, run.run_id, DagsterEventType.STEP_SUCCESS)
    expect(
        not {"step_5_coordinator_tests", "output_report"} & set(ran),
        f"tampered store: steps after Step 4 ran: {ran}",
    )
    expect(report_of(report_dir, run.run_id) is None, "tampered store: a report was written")
    return f"tampered step {bad} of {run_id}: exit {code}, Step 4 failed, first_bad step {bad}"


def main() -> int:
    with ci_postgres() as pg:
        store = prepare_store(pg)
        report_dir = pg.scratch / "reports"
        env = pg.env(
            DATABASE_URL=store.libpq(),
            USE_POSTGRES_TRACES="true",
            RUN_PROOF_REPORT_DIR=str(report_dir),
        )
        # The instance as the command sees it: its dagster.yaml reads DAGSTER_PG_URL.
        os.environ["DAGSTER_PG_URL"] = env["DAGSTER_PG_URL"]
        instance = DagsterInstance.from_config(str(pg.dagster_home))
        try:
            for line in (
                check_untouched(env, instance, report_dir),
                check_tampered(env, instance, report_dir, store),
            ):
                print(f"ci_plan_check: {line}")
        except CheckFailed as exc:
            print(f"ci_plan_check: FAILED: {exc}", file=sys.stderr)
            return 1
        finally:
            instance.dispose()
    print("ci_plan_check: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
