"""One measurement, run as its own process by bench_verify.py (so that its peak RSS is its
own).  Prints one JSON object: what was verified and the time spent inside the process."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
from typing import Any

import psycopg

# The verifier's column list (store/snapshot.py), spelled out so that this process imports
# psycopg only: its start-up is part of the floor's wall time.
_STEP_SELECT = (
    '"step_index", "tenant_id", "run_id", "skill_id", "skill_name", "params", "status",'
    ' "outcome_category", "outcome_code", "outcome_data", "cost_cents", "duration_ms",'
    ' "retry_count", "timestamp", "prev_hash", "step_hash"'
)


def floor(conninfo: str, trace_id: str | None = None) -> dict[str, object]:
    """COPY the rows the verifier reads and SHA-256 each one: the physical floor."""
    where = (
        "WHERE trace_id = %s ORDER BY step_index" if trace_id else "ORDER BY trace_id, step_index"
    )
    started = time.perf_counter()
    rows = 0
    sha = hashlib.sha256
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        with cur.copy(
            f"COPY (SELECT {_STEP_SELECT} FROM aos_trace_steps {where}) TO STDOUT",  # noqa: S608
            (trace_id,) if trace_id else None,
        ) as copy:
            for block in copy:
                sha(block).digest()
                rows += 1
    return {"steps": rows, "inner_seconds": time.perf_counter() - started}


def prove(
    sqlalchemy_url: str, tenant_id: str, run_id: str, workers: str = "1", summaries: str = "0"
) -> dict[str, object]:
    """The coordinator's get_run_proof; workers="0" takes the default (one per core), and
    summaries="1000" is the call the Dagster plan's step 3 op makes."""
    from run_proof_pipeline.coordinator import RunProofCoordinator
    from run_proof_pipeline.settings import DatabaseUrl
    from run_proof_pipeline.store.engine import session_scope

    async def go() -> Any:
        async with session_scope(DatabaseUrl.parse(sqlalchemy_url)) as session:
            return await RunProofCoordinator(workers=int(workers) or None).get_run_proof(
                session, tenant_id, run_id, step_summary_limit=int(summaries)
            )

    started = time.perf_counter()
    result = asyncio.run(go())
    return {
        "steps": result.steps_read,
        "status": result.integrity.verification_status,
        "inner_seconds": time.perf_counter() - started,
    }


def naive(sqlalchemy_url: str, trace_id: str) -> dict[str, object]:
    from benchmarks.naive_verifier import naive_verify

    started = time.perf_counter()
    ok, steps = naive_verify(sqlalchemy_url, trace_id)
    return {
        "steps": steps,
        "status": "VERIFIED" if ok else "FAILED",
        "inner_seconds": time.perf_counter() - started,
    }


def profile(conninfo: str, trace_id: str) -> dict[str, object]:
    """cProfile of a segment worker's loop over a whole run (the hot path of a long proof)."""
    import cProfile
    import pstats

    from run_proof_pipeline.proof.segment_worker import SegmentTask, verify_segment

    with psycopg.connect(conninfo) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
        task = SegmentTask(conninfo, snapshot, trace_id, None, None, None, 0, 10**9)
        profiler = cProfile.Profile()
        profiler.enable()
        verify_segment(task)
        profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    top = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:18]  # type: ignore[attr-defined]
    return {
        "total_tottime": total,
        "top": [
            {
                "function": f"{k[0].split('site-packages/')[-1].split('/work/main/')[-1]}:{k[2]}",
                "tottime": v[2],
                "share": v[2] / total,
            }
            for k, v in top
        ],
    }


if __name__ == "__main__":
    kind, *args = sys.argv[1:]
    print(
        json.dumps(
            {"floor": floor, "prove": prove, "naive": naive, "profile": profile}[kind](*args)
        )
    )
