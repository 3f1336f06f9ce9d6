"""The write path, measured side by side in one run: AOS's writer before and after
`run-proof db upgrade` (issue 13 item 6).

    .venv/bin/python -m benchmarks.write_path --json benchmarks/results/write-path.json
    .venv/bin/python -m benchmarks.write_path --steps 50 --batches 1 --batch-size 50 --rounds 1

Starts two PostgreSQL servers of its own in a temporary directory (LocalPostgres): one with
`fsync=on` and `synchronous_commit=on` (PostgreSQL's defaults), one with `fsync=off` (the
tests' fast mode, which also turns `synchronous_commit` and `full_page_writes` off). On each it
builds two databases with AOS's tables and triggers as AOS's whole migration chain leaves
them (run_proof_pipeline_tests/support/aos_deployed.py):
- before: AOS as deployed, nothing of run-proof's: plain inserts;
- after: the same, then `upgrade()` (what `run-proof db upgrade` runs) to the head revision,
  whose triggers chain each step at insert (migration 0006, docs/hash-chain-v2.md).
It measures, alternating which side goes first from one round to the next:
- (a) autocommit: AOS's `record_step` (its SELECT EXISTS, then its INSERT ... ON CONFLICT DO
  NOTHING), each statement its own transaction, through asyncpg with statement_cache_size=0;
  steps/s and the latency of one step (both statements), median and p99;
- (b) batched: the same INSERT, `--batch-size` steps per transaction (asyncpg executemany).
Each round writes a new trace (AOS's start_trace) and completes it (complete_trace) after
its steps, untimed.  Afterwards, the last runs written on each "after" database are proved by
the coordinator (the proof `run-proof verify` runs) and their chained steps counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import aos_writer
from benchmarks.write_recheck import recheck_steps
from benchmarks.write_stats import paired_ratio, round_summary, side_summary, table
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.migrate import current_revision, upgrade
from run_proof_pipeline_tests.support.aos_deployed import (
    FIRST_MIGRATION,
    IMMUTABILITY,
    LATER_COLUMNS,
)

ROOT = Path(__file__).resolve().parents[1]
TENANT = "tenant-bench"
SIDES = ("before", "after")
SETTINGS = ("fsync", "synchronous_commit", "full_page_writes", "wal_sync_method")
# Issue 13 item 6's targets.
TARGET_AUTOCOMMIT_RATIO = 1.25
TARGET_BATCHED_STEPS_PER_SECOND = 5_000


@dataclass(frozen=True)
class Database:
    server: str
    side: str
    url: DatabaseUrl

    @property
    def dsn(self) -> str:
        return self.url.libpq()


def _aos_as_deployed(url: DatabaseUrl) -> None:
    with psycopg.connect(url.libpq()) as conn:
        conn.execute(FIRST_MIGRATION)
        conn.execute(LATER_COLUMNS)
        conn.execute(IMMUTABILITY)


def _databases(label: str, server: LocalPostgres) -> dict[str, Database]:
    found = {}
    for side in SIDES:
        url = DatabaseUrl.parse(server.create_database(f"write_{side}", exist_ok=False))
        _aos_as_deployed(url)
        if side == "after":
            upgrade(url)
        found[side] = Database(label, side, url)
    return found


def _server_settings(url: DatabaseUrl) -> dict[str, str]:
    with psycopg.connect(url.libpq()) as conn:
        values = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in SETTINGS}  # type: ignore[index]
        values["server_version"] = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    return values


async def _autocommit(db: Database, run_id: str, steps: int) -> dict[str, float]:
    conn = await aos_writer.connect(db.dsn)
    try:
        trace_id = await aos_writer.start_trace(conn, run_id, TENANT)
        latencies = []
        clock = time.perf_counter
        began = clock()
        for i in range(steps):
            t = clock()
            await aos_writer.record_step(conn, trace_id, i)
            latencies.append(clock() - t)
        seconds = clock() - began
        await aos_writer.complete_trace(conn, run_id)
    finally:
        await conn.close()
    return round_summary(seconds, steps, latencies)


async def _batched(db: Database, run_id: str, batches: int, size: int) -> dict[str, float]:
    conn = await aos_writer.connect(db.dsn)
    try:
        trace_id = await aos_writer.start_trace(conn, run_id, TENANT)
        latencies = []
        clock = time.perf_counter
        for b in range(batches):
            # Built before the clock of the transaction starts: the client's row building is
            # the same on both sides and is not what is compared.
            rows = [aos_writer.step_args(trace_id, b * size + i) for i in range(size)]
            t = clock()
            async with conn.transaction():
                await conn.executemany(aos_writer.RECORD_STEP, rows)
            latencies.append(clock() - t)
        seconds = sum(latencies)
        await aos_writer.complete_trace(conn, run_id)
    finally:
        await conn.close()
    return round_summary(seconds, batches * size, latencies)


def _stored(db: Database, run_id: str) -> dict[str, Any]:
    """How many steps of the run were stored, and how many of them the database chained
    (step_hash set by a trigger: AOS's INSERT names no hash column)."""
    with psycopg.connect(db.dsn) as conn:
        steps, chained = conn.execute(
            "SELECT count(*), count(step_hash) FROM aos_trace_steps WHERE trace_id = %s"
            if db.side == "after"
            else "SELECT count(*), 0 FROM aos_trace_steps WHERE trace_id = %s",
            (f"trace_{run_id}",),
        ).fetchone()  # type: ignore[misc]
    return {"run_id": run_id, "steps": steps, "chained_steps": chained}


def _verify(db: Database, run_id: str) -> dict[str, Any]:
    """The proof of one run on an "after" database: the coordinator's get_run_proof, the
    call `run-proof verify` makes."""
    from run_proof_pipeline.coordinator import RunProofCoordinator
    from run_proof_pipeline.store.engine import session_scope

    async def prove() -> Any:
        async with session_scope(db.url) as session:
            return await RunProofCoordinator(workers=1).get_run_proof(session, TENANT, run_id)

    outcome = _stored(db, run_id)
    try:
        outcome["reference"] = recheck_steps(db.dsn, f"trace_{run_id}")
    except Exception as exc:  # reported, not raised, like the proof below
        outcome["reference"] = {
            "checked": 0,
            "ok": False,
            "problem": f"{type(exc).__name__}: {exc}",
        }
    try:
        result = asyncio.run(prove())
    except Exception as exc:  # reported, not raised: the figures stand without the proof
        outcome |= {"status": "ERROR", "error": f"{type(exc).__name__}: {exc}"[:500]}
        return outcome
    integrity = result.integrity
    return outcome | {
        "status": integrity.verification_status,
        "model": integrity.model,
        "chain_length": integrity.chain_length,
        "sealed": integrity.sealed,
        "failure_reason": integrity.failure_reason,
    }


@contextlib.contextmanager
def _servers(base: Path, which: list[str]) -> Iterator[dict[str, LocalPostgres]]:
    """The servers, each stopped by pg_ctl on its own data directory however the run ends
    (LocalPostgres runs initdb and the server as the `postgres` OS user when we are root)."""
    with contextlib.ExitStack() as stack:
        servers = {}
        for label in which:
            server = LocalPostgres(base / label.replace("=", "-"), fast=label == "fsync=off")
            stack.callback(server.stop)  # registered first: a half-started server stops too
            server.start()
            servers[label] = server
        yield servers


def _source() -> dict[str, Any]:
    """The commit measured, and any uncommitted change to what `db upgrade` installs (other
    work lands in the same tree while a benchmark runs): the "after" side is this code."""
    installed = ["run_proof_pipeline/store/migrations", "run_proof_pipeline/store/sql"]

    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted_in_upgrade": git("status", "--porcelain", "--", *installed).splitlines(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    servers_wanted = [f"fsync={v}" for v in args.fsync]
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.write_path " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, shared with other work while measured",
        "source": _source(),
        "client": "asyncpg, statement_cache_size=0, one connection, same process for both sides",
        "step_shape": asdict(aos_writer.StepShape.measure()),
        "steps_per_round": args.steps,
        "batch_size": args.batch_size,
        "batches_per_round": args.batches,
        "rounds": args.rounds,
        "servers": {},
        "revisions": {},
        "autocommit": {},
        "batched": {},
        "verification": {},
    }
    with (
        tempfile.TemporaryDirectory(prefix="run-proof-write-") as base,
        _servers(Path(base), servers_wanted) as servers,
    ):
        dbs = {label: _databases(label, server) for label, server in servers.items()}
        for label, sides in dbs.items():
            results["servers"][label] = _server_settings(sides["before"].url)
        first = next(iter(dbs.values()))
        results["revisions"] = {
            "before": "AOS as deployed (no run-proof objects)",
            "after": current_revision(first["after"].url),
        }
        _measure_all(dbs, args, results)
    return results


def _measure_all(
    dbs: dict[str, dict[str, Database]], args: argparse.Namespace, results: dict[str, Any]
) -> None:
    auto: dict[tuple[str, str], list[dict[str, float]]] = {}
    batch: dict[tuple[str, str], list[dict[str, float]]] = {}
    last: dict[tuple[str, str, str], str] = {}
    for label, sides in dbs.items():  # warm-up: caches, the first plan of each statement
        for side in SIDES:
            asyncio.run(_autocommit(sides[side], f"warm-{label}-{side}", min(args.steps, 200)))
    for r in range(args.rounds):
        order = SIDES if r % 2 == 0 else SIDES[::-1]
        for label, sides in dbs.items():
            for side in order:
                run_id = f"auto-{r}-{side}"
                auto.setdefault((label, side), []).append(
                    asyncio.run(_autocommit(sides[side], run_id, args.steps))
                )
                last[(label, "autocommit", side)] = run_id
            for side in order:
                run_id = f"batch-{r}-{side}"
                batch.setdefault((label, side), []).append(
                    asyncio.run(_batched(sides[side], run_id, args.batches, args.batch_size))
                )
                last[(label, "batched", side)] = run_id
            print(f"round {r + 1}/{args.rounds} on {label} done", file=sys.stderr, flush=True)
    for key, rounds in (("autocommit", auto), ("batched", batch)):
        for label in dbs:
            before, after = rounds[(label, "before")], rounds[(label, "after")]
            results[key][label] = {
                "before": side_summary(before),
                "after": side_summary(after),
                "ratio": paired_ratio(before, after),
            }
    for label, sides in dbs.items():
        results["verification"][label] = {
            kind: {
                "before": _stored(sides["before"], last[(label, kind, "before")]),
                "after": _verify(sides["after"], last[(label, kind, "after")]),
            }
            for kind in ("autocommit", "batched")
        }
    results["targets"] = _targets(results)


def _chained(results: dict[str, Any], server: str, part: str) -> bool:
    proof = results["verification"][server][part]["after"]
    return bool(proof["steps"]) and proof["chained_steps"] == proof["steps"]


def _targets(results: dict[str, Any]) -> dict[str, Any]:
    """Issue 13 item 6's targets; a target is met only where the after side was chained
    (before migration 0006 the after side is plain and proves nothing about chaining)."""
    out: dict[str, Any] = {}
    on = results["autocommit"].get("fsync=on")
    if on:
        ratio = on["ratio"]["median"]
        chained = _chained(results, "fsync=on", "autocommit")
        out["autocommit_fsync_on_ratio"] = {
            "target": f"<= {TARGET_AUTOCOMMIT_RATIO}",
            "measured": ratio,
            "chained": chained,
            "met": chained and ratio <= TARGET_AUTOCOMMIT_RATIO,
        }
    for label, sides in results["batched"].items():
        rate = sides["after"]["steps_per_second"]
        chained = _chained(results, label, "batched")
        out[f"batched_{label}_chained_steps_per_second"] = {
            "target": f">= {TARGET_BATCHED_STEPS_PER_SECOND}",
            "measured": rate,
            "chained": chained,
            "met": chained and rate >= TARGET_BATCHED_STEPS_PER_SECOND,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="Autocommit steps per round")
    parser.add_argument("--batch-size", type=int, default=1000, help="Steps per transaction")
    parser.add_argument("--batches", type=int, default=10, help="Transactions per batched round")
    parser.add_argument("--rounds", type=int, default=5, help="Rounds per side (alternating)")
    parser.add_argument(
        "--fsync", nargs="+", choices=("on", "off"), default=["on", "off"], help="Servers"
    )
    parser.add_argument("--json", type=Path, help="Write the results as JSON to this file")
    args = parser.parse_args()
    results = run(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(json.dumps({"verification": results["verification"], "targets": results["targets"]}))


if __name__ == "__main__":
    main()
