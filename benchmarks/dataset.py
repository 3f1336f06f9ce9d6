"""Build a benchmark data set in a migrated trace store through COPY, with correct hashes.

Rows look like real agent steps (~470 bytes of COPY text each: URLs, nested params, an
outcome with floats and lists).  The hashes come from the project's integrity core
(`step_canonical_bytes` of the very text values written), so the verifiers under test
recompute exactly what is stored.  Canonicalization runs in a process pool, one chunk of
steps per task; the main process only chains SHA-256 and streams rows into COPY, so the
whole set never sits in memory.

`build_v2` writes the same steps in format v2 (docs/hash-chain-v2.md), as AOS's writer
does after migration 0006: trace rows without a hash, steps through COPY with the v2 content
columns (the database's trigger chains every row as it arrives), then one UPDATE that
completes the runs (the trigger seals them).  No hash is computed here at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
import psycopg

from run_proof_pipeline.integrity import (
    canonicalize,
    header_record,
    parse_stored_json,
    seal_record,
    step_canonical_bytes,
)

BASE = datetime(2026, 2, 9, 10, 0, tzinfo=UTC)
STEP_COPY_COLUMNS = (
    "trace_id, run_id, tenant_id, step_index, skill_id, skill_name, params, status,"
    " outcome_category, outcome_code, outcome_data, cost_cents, duration_ms, retry_count,"
    ' "timestamp", prev_hash, step_hash'
)
_SKILLS = ("http_call", "llm_complete", "sql_query", "vector_search", "file_read")
CHUNK = 20_000  # steps per pool task: big enough to amortize pickling, small for memory


@dataclass(frozen=True)
class RunSpec:
    tenant_id: str
    run_id: str
    trace_id: str
    steps: int
    started_at: datetime

    def header(self) -> dict[str, object]:
        return header_record(
            tenant_id=self.tenant_id,
            run_id=self.run_id,
            trace_id=self.trace_id,
            agent_id="agent-7",
            plan_id="plan-42",
            plan={"goal": "fetch, rank and summarize", "budget_cents": 250},
            started_at=self.started_at,
        )


def run_specs(runs: int, steps: int, *, tenants: int = 1, prefix: str = "bench") -> list[RunSpec]:
    return [
        RunSpec(
            tenant_id=f"tenant-{r % tenants:03d}",
            run_id=f"{prefix}-run-{r:06d}",
            trace_id=f"{prefix}-trace-{r:06d}",
            steps=steps,
            started_at=BASE + timedelta(minutes=r),
        )
        for r in range(runs)
    ]


def _step_values(spec: RunSpec, i: int) -> tuple[str, ...]:
    """Text values of one step as PostgreSQL prints them back (jsonb, float8, timestamptz)."""
    skill = _SKILLS[i % len(_SKILLS)]
    params = {
        "url": f"https://api.example.com/v2/items/{i * 7919 % 100003}",
        "method": "GET" if i % 3 else "POST",
        "attempt": i % 4,
        "query": {"limit": 50, "offset": i % 1000, "sort": "-updated_at"},
    }
    outcome = {
        "status_code": 200,
        "bytes": 1000 + i % 50_000,
        "latency_ms": 12.5 + (i % 977) / 8,
        "score": (i % 1013) / 1013,
        "items": [f"item-{(i + k) % 1000}" for k in range(3)],
        "cached": i % 5 == 0,
        "summary": "résumé ✓ fetched and ranked",
    }
    ts = spec.started_at + timedelta(milliseconds=250 * i, microseconds=i % 1_000_000)
    return (
        str(i),
        f"skill.{skill}",
        skill,
        # jsonb input; PostgreSQL prints it back in its own layout, which the verifiers parse.
        orjson.dumps(params).decode(),
        "succeeded" if i % 17 else "retried",
        "success",
        "200",
        orjson.dumps(outcome).decode(),
        repr(0.25 + (i % 40) / 8),
        repr(100.0 + (i % 3000) / 4),
        str(i % 3),
        ts.strftime("%Y-%m-%d %H:%M:%S.%f+00"),
    )


def _render_chunk(spec: RunSpec, start: int, stop: int) -> list[tuple[tuple[str, ...], bytes]]:
    """Row values and C(step) for steps start..stop-1 (runs in a pool worker)."""
    out = []
    for i in range(start, stop):
        values = _step_values(spec, i)
        (idx, skill_id, skill_name, params, status, cat, code, data, cost, dur, retry, ts) = values
        canonical = step_canonical_bytes(
            tenant_id=spec.tenant_id,
            run_id=spec.run_id,
            step_index=int(idx),
            skill_id=skill_id,
            skill_name=skill_name,
            params=parse_stored_json(params),
            status=status,
            outcome_category=cat,
            outcome_code=code,
            outcome_data=parse_stored_json(data),
            cost_cents=float(cost),
            duration_ms=float(dur),
            retry_count=int(retry),
            timestamp=ts,
        )
        out.append((values, canonical))
    return out


def _render_task(task: tuple[RunSpec, int, int]) -> list[tuple[tuple[str, ...], bytes]]:
    return _render_chunk(*task)


def _tasks(specs: list[RunSpec]) -> Iterator[tuple[RunSpec, int, int]]:
    pending: list[tuple[RunSpec, int, int]] = []
    for spec in specs:
        for start in range(0, spec.steps, CHUNK):
            pending.append((spec, start, min(spec.steps, start + CHUNK)))
    # Small runs: many runs per task would be better, but tasks stay in order, which keeps
    # the chaining in the main process trivial.
    yield from pending


def _seal_root(spec: RunSpec, head: bytes) -> str:
    seal = seal_record(
        tenant_id=spec.tenant_id,
        run_id=spec.run_id,
        status="succeeded",
        completed_at=spec.started_at + timedelta(hours=1),
        chain_length=spec.steps,
    )
    return hashlib.sha256(head + canonicalize(seal, strict=False)).hexdigest()


def build(conninfo: str, specs: list[RunSpec], *, workers: int = 2) -> int:
    """Insert the runs (traces, steps, then seals) and return the number of steps written."""
    sha = hashlib.sha256
    written = 0
    with psycopg.connect(conninfo) as conn:
        with conn.cursor() as cur:
            with cur.copy(
                "COPY aos_traces (trace_id, run_id, tenant_id, agent_id, plan_id, plan,"
                " status, started_at, genesis_hash) FROM STDIN"
            ) as copy:
                genesis: dict[str, bytes] = {}
                for spec in specs:
                    g = sha(canonicalize(spec.header(), strict=False)).digest()
                    genesis[spec.run_id] = g
                    h = spec.header()
                    copy.write_row(
                        (
                            spec.trace_id,
                            spec.run_id,
                            spec.tenant_id,
                            h["agent_id"],
                            h["plan_id"],
                            orjson.dumps(h["plan"]).decode(),
                            "running",
                            spec.started_at.isoformat(),
                            g.hex(),
                        )
                    )
        conn.commit()
        heads: dict[str, bytes] = dict(genesis)
        with ProcessPoolExecutor(workers) as pool, conn.cursor() as cur:
            tasks = list(_tasks(specs))
            with cur.copy(f"COPY aos_trace_steps ({STEP_COPY_COLUMNS}) FROM STDIN") as copy:
                for (spec, _, _), rows in zip(
                    tasks, pool.map(_render_task, tasks, chunksize=1), strict=True
                ):
                    prev = heads[spec.run_id]
                    prefix = (spec.trace_id, spec.run_id, spec.tenant_id)
                    for values, canonical in rows:
                        digest = sha(prev + canonical).digest()
                        copy.write_row((*prefix, *values, prev.hex(), digest.hex()))
                        prev = digest
                    heads[spec.run_id] = prev
                    written += len(rows)
        conn.commit()
        with conn.cursor() as cur:
            cur.execute(
                "CREATE TEMP TABLE bench_seals (trace_id text, completed_at timestamptz,"
                " root_hash text, chain_length integer)"
            )
            with cur.copy("COPY bench_seals FROM STDIN") as copy:
                for spec in specs:
                    copy.write_row(
                        (
                            spec.trace_id,
                            (spec.started_at + timedelta(hours=1)).isoformat(),
                            _seal_root(spec, heads[spec.run_id]),
                            spec.steps,
                        )
                    )
            # One statement; the triggers assign seal_seq and append the ledger entries.
            cur.execute(
                "UPDATE aos_traces t SET status = 'succeeded', completed_at = s.completed_at,"
                " root_hash = s.root_hash, chain_length = s.chain_length"
                " FROM bench_seals s WHERE t.trace_id = s.trace_id"
            )
            cur.execute("ANALYZE aos_traces")
            cur.execute("ANALYZE aos_trace_steps")
        conn.commit()
    return written


# The v2 step columns beyond format v1's (integrity/fields.py STEP_V2_ADDED_FIELDS), and
# their text in every row (None: NULL, as AOS leaves rng_state_before and the scenario).
STEP_V2_COPY_COLUMNS = (
    "trace_id, step_index, skill_id, skill_name, params, status, outcome_category,"
    ' outcome_code, outcome_data, cost_cents, duration_ms, retry_count, "timestamp",'
    " input_hash, output_hash, rng_state_before, idempotency_key, replay_behavior, source,"
    " level, is_synthetic, synthetic_scenario_id"
)


def _v2_added(spec: RunSpec, i: int) -> tuple[str | None, ...]:
    return (
        f"in-{i}",
        f"out-{i}",
        None,
        f"key-{spec.run_id}-{i}",
        "execute",
        "engine",
        "INFO",
        "false",
        None,
    )


def build_v2(conninfo: str, specs: list[RunSpec]) -> int:
    """Insert the runs in format v2 (traces, steps chained by the database, then the
    completing UPDATE that seals them); the number of steps written."""
    written = 0
    with psycopg.connect(conninfo) as conn:
        with conn.cursor() as cur:
            with cur.copy(
                "COPY aos_traces (trace_id, run_id, correlation_id, tenant_id, agent_id,"
                " plan_id, root_hash, plan, trace, schema_version, status, started_at,"
                " created_at, seed, is_synthetic) FROM STDIN"
            ) as copy:
                for spec in specs:
                    h = spec.header()
                    copy.write_row(
                        (
                            spec.trace_id,
                            spec.run_id,
                            f"corr-{spec.run_id}",
                            spec.tenant_id,
                            h["agent_id"],
                            h["plan_id"],
                            "pending",
                            orjson.dumps(h["plan"]).decode(),
                            '{"steps": []}',
                            "1.0",
                            "running",
                            spec.started_at.isoformat(),
                            spec.started_at.isoformat(),
                            7,
                            "false",
                        )
                    )
        conn.commit()
        with conn.cursor() as cur:
            with cur.copy(f"COPY aos_trace_steps ({STEP_V2_COPY_COLUMNS}) FROM STDIN") as copy:
                for spec in specs:
                    for i in range(spec.steps):
                        copy.write_row((spec.trace_id, *_step_values(spec, i), *_v2_added(spec, i)))
                        written += 1
        conn.commit()
        with conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE bench_done (trace_id text, completed_at timestamptz)")
            with cur.copy("COPY bench_done FROM STDIN") as copy:
                for spec in specs:
                    done = spec.started_at + timedelta(hours=1)
                    copy.write_row((spec.trace_id, done.isoformat()))
            # AOS's complete_trace, for every run at once: the trigger seals each.
            cur.execute(
                "UPDATE aos_traces t SET status = 'completed', completed_at = d.completed_at"
                " FROM bench_done d WHERE t.trace_id = d.trace_id"
            )
            cur.execute("ANALYZE aos_traces")
            cur.execute("ANALYZE aos_trace_steps")
        conn.commit()
    return written
