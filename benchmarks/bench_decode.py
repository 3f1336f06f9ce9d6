"""The per-row decode path of a proof, without a database: COPY line -> decoded step -> chain.

    .venv/bin/python -m benchmarks.bench_decode                 # 100k steps, best of 5
    .venv/bin/python -m benchmarks.bench_decode --steps 20000 --repeats 3

bench_verify.py measures whole proofs against a server; this isolates what runs once per
stored step inside one (the decoders of store/step_rows.py, then ChainVerifier), so a change
to the decoders can be compared before/after on a shared machine in seconds. The lines are
those COPY sends for benchmarks/dataset.py's steps (jsonb in PostgreSQL's output layout,
float8 and timestamptz text), chained with correct hashes, so every row verifies:
- v1 line: StepLineDecoder.decode (the proof's fast path for format-v1 traces);
- v1 row: StepRowDecoder.decode (a client encoding other than UTF-8);
- v2 line: StepV2Decoder.decode_line (format-v2 traces).
Prints one line per path: steps per CPU second (best run) and CPU microseconds per step.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from benchmarks.dataset import RunSpec, _step_values
from run_proof_pipeline.integrity import (
    HEADER_V2_ONLY_FIELDS,
    STEP_V2_ONLY_FIELDS,
    ChainVerifier,
    StoredTrace,
    canonicalize,
    canonicalize_v2,
    header_record_v2,
)
from run_proof_pipeline.store.step_rows import StepLineDecoder, StepRowDecoder
from run_proof_pipeline.store.step_rows_v2 import StepV2Decoder

_SPEC = RunSpec("tenant-000", "bench-run", "bench-trace", 0, datetime(2026, 2, 9, 10, tzinfo=UTC))


def _jsonb_text(text: str) -> str:
    """PostgreSQL prints jsonb with `, ` and `: ` separators, non-ASCII as it is."""
    return json.dumps(json.loads(text), ensure_ascii=False)


def _float8_text(text: str) -> str:
    """float8 output: the shortest form, no `.0` on a whole number."""
    return text[:-2] if text.endswith(".0") else text


def _v1_trace() -> tuple[StoredTrace, bytes]:
    header = _SPEC.header()
    genesis = hashlib.sha256(canonicalize(header, strict=False)).digest()
    fields: dict[str, Any] = {k: v for k, v in header.items() if k not in ("v", "kind")}
    trace = StoredTrace(
        **fields,
        status="running",
        completed_at=None,
        genesis_hash=genesis.hex(),
        root_hash=None,
        chain_length=None,
    )
    return trace, genesis


_V2_EXTRA = ("in-hash", "out-hash", None, "idem", "execute", "engine", "INFO", "f", None)


def _v2_header() -> dict[str, Any]:
    header = {k: v for k, v in _SPEC.header().items() if k not in ("v", "kind")}
    return {**header, **dict.fromkeys(HEADER_V2_ONLY_FIELDS)}


def _lines(steps: int) -> tuple[list[bytes], list[bytes], StoredTrace, StoredTrace]:
    """v1 and v2 COPY lines of one run with correct hashes, and their two traces."""
    from run_proof_pipeline.integrity import parse_stored_json_v2, step_canonical_bytes
    from run_proof_pipeline.integrity.records_v2 import step_canonical_v2

    v1_trace, prev1 = _v1_trace()
    header_v2 = _v2_header()
    prev2 = hashlib.sha256(canonicalize_v2(header_record_v2(**header_v2))).digest()
    v2_trace = StoredTrace(
        **{k: header_v2[k] for k in ("tenant_id", "run_id", "trace_id", "agent_id", "plan_id")},
        plan=header_v2["plan"],
        started_at=header_v2["started_at"],
        status="running",
        completed_at=None,
        genesis_hash=prev2.hex(),
        root_hash=None,
        chain_length=None,
        chain_format=2,
        header_v2={k: header_v2[k] for k in HEADER_V2_ONLY_FIELDS},
    )
    v1: list[bytes] = []
    v2: list[bytes] = []
    ids = (_SPEC.tenant_id, _SPEC.run_id)
    for i in range(steps):
        index, skill_id, skill_name, params, status, cat, code, data, cost, dur, retry, ts = (
            _step_values(_SPEC, i)
        )
        params, data = _jsonb_text(params), _jsonb_text(data)
        cost, dur = _float8_text(cost), _float8_text(dur)
        canonical = step_canonical_bytes(
            tenant_id=ids[0],
            run_id=ids[1],
            step_index=i,
            skill_id=skill_id,
            skill_name=skill_name,
            params=json.loads(params),
            status=status,
            outcome_category=cat,
            outcome_code=code,
            outcome_data=json.loads(data),
            cost_cents=float(cost),
            duration_ms=float(dur),
            retry_count=int(retry),
            timestamp=ts,
        )
        step1 = hashlib.sha256(prev1 + canonical).digest()
        row = (index, *ids, skill_id, skill_name, params, status, cat, code, data, cost, dur)
        v1.append("\t".join((*row, retry, ts, prev1.hex(), step1.hex())).encode() + b"\n")
        prev1 = step1
        extra = dict(zip(STEP_V2_ONLY_FIELDS[1:], _V2_EXTRA, strict=True))
        canonical2 = step_canonical_v2(
            tenant_id=ids[0],
            run_id=ids[1],
            trace_id=_SPEC.trace_id,
            step_index=i,
            skill_id=skill_id,
            skill_name=skill_name,
            params=parse_stored_json_v2(params),
            status=status,
            outcome_category=cat,
            outcome_code=code,
            outcome_data=parse_stored_json_v2(data),
            cost_cents=float(cost),
            duration_ms=float(dur),
            retry_count=int(retry),
            timestamp=ts,
            **{**extra, "is_synthetic": False},
        )
        step2 = hashlib.sha256(prev2 + canonical2).digest()
        content = (index, skill_id, skill_name, params, status, cat, code, data, cost, dur, retry)
        texts = [v if v is not None else "\\N" for v in _V2_EXTRA]
        chain = (str(i), prev2.hex(), step2.hex())
        v2.append("\t".join((*content, ts, *texts, *chain)).encode() + b"\n")
        prev2 = step2
    return v1, v2, v1_trace, v2_trace


def _time(run: Callable[[], int], repeats: int) -> float:
    """The best CPU time of `repeats` runs: the loop is one thread, so its CPU time is its
    work, much less disturbed than wall time by other load on a shared machine."""
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        verified = run()
        best = min(best, time.process_time() - started)
        if verified:
            raise SystemExit(f"the benchmark's rows did not verify: {verified}")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    v1, v2, v1_trace, v2_trace = _lines(args.steps)
    rows = [
        tuple(None if f == "\\N" else f for f in line.decode().rstrip("\n").split("\t"))
        for line in v1
    ]

    def v1_lines() -> int:
        decoder, chain = StepLineDecoder(), ChainVerifier(v1_trace)
        for line in v1:
            if decoder.decode(line).feed_to(chain):
                return 1
        return 0

    def v1_rows() -> int:
        decoder, chain = StepRowDecoder(), ChainVerifier(v1_trace)
        for row in rows:
            if decoder.decode(row).feed_to(chain):
                return 1
        return 0

    def v2_lines() -> int:
        decoder = StepV2Decoder(_SPEC.tenant_id, _SPEC.run_id, _SPEC.trace_id)
        chain = ChainVerifier(v2_trace)
        for line in v2:
            if decoder.decode_line(line).feed_to(chain):
                return 1
        return 0

    for name, run in (("v1 line", v1_lines), ("v1 row", v1_rows), ("v2 line", v2_lines)):
        seconds = _time(run, args.repeats)
        print(
            f"{name}: {args.steps / seconds:,.0f} steps/s"
            f" ({seconds * 1e6 / args.steps:.2f} us/step CPU, best of {args.repeats})",
            flush=True,
        )


if __name__ == "__main__":
    main()
