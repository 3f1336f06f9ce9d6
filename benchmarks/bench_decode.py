"""The per-row decode path of a proof, without a database: COPY line -> decoded step -> chain.

    .venv/bin/python -m benchmarks.bench_decode                 # 100k steps, best of 5
    .venv/bin/python -m benchmarks.bench_decode --steps 20000 --repeats 3

bench_verify.py measures whole proofs against a server; this isolates what runs once per
stored step inside one (the decoders of store/step_rows.py, then ChainVerifier), so a change
to the decoders can be compared before/after on a shared machine in seconds. The lines are
those COPY sends for benchmarks/dataset.py's steps (jsonb in PostgreSQL's output layout,
float8 and timestamptz text), chained with correct hashes, so every row verifies:
- v1 line: StepLineDecoder.decode, pure path (native=False): the reference;
- v1 line native: StepLineDecoder.decode with the compiled C(step) (store/native_line.py);
- v1 walk native: store/line_walk.py's LineWalk, the compiled walk over batches of lines
  (decode, canonicalize, hash and link in C), as a segment worker runs it;
- v1 row: StepRowDecoder.decode (a client encoding other than UTF-8);
- v2 line: StepV2Decoder.decode_line (format-v2 traces), pure path (native=False);
- v2 line native: StepV2Decoder.decode_line with the compiled C2(step) (canonical_line_v2);
- v2 walk native: LineWalk over a v2 trace's lines (walk_v2: decode, C2, hash, link and
  chain position in C).
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
    ChainVerifier,
    StoredTrace,
    canonicalize,
    canonicalize_v2,
    header_record_v2,
    parse_stored_json_v2,
    step_canonical_bytes,
    step_canonical_v2,
)
from run_proof_pipeline.integrity.fields import (
    FIELD_TYPES,
    HEADER_V1_FIELDS,
    HEADER_V2_ONLY_FIELDS,
    STEP_STORED_FIELDS,
    STEP_V2_ADDED_FIELDS,
    FieldType,
)
from run_proof_pipeline.store.line_walk import LINE_BATCH, LineWalk
from run_proof_pipeline.store.native_line import native_status
from run_proof_pipeline.store.step_rows import STEP_COLUMNS, StepLineDecoder, StepRowDecoder
from run_proof_pipeline.store.step_rows_v2 import STEP_V2_COLUMNS, StepV2Decoder

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


# The v2-only step columns' text in every row (STEP_V2_ADDED_FIELDS order; None for NULL).
_V2_ADDED = ("in-hash", "out-hash", None, "idem", "execute", "engine", "INFO", "f", None)


def _v2_header() -> dict[str, Any]:
    header = {k: v for k, v in _SPEC.header().items() if k not in ("v", "kind")}
    return {**header, **dict.fromkeys(HEADER_V2_ONLY_FIELDS)}


def _value(name: str, text: str | None, *, exact: bool) -> Any:
    """A column's text as the record takes it (exact: format v2's JSON numbers)."""
    kind = FIELD_TYPES[name]
    if text is None or kind in (FieldType.TEXT, FieldType.TIMESTAMP):
        return text
    if kind is FieldType.JSON:
        return parse_stored_json_v2(text) if exact else json.loads(text)
    if kind is FieldType.BOOLEAN:
        return text == "t"
    return float(text) if kind is FieldType.DOUBLE else int(text)


def _line(texts: dict[str, str | None], columns: tuple[str, ...]) -> bytes:
    return "\t".join("\\N" if texts[c] is None else str(texts[c]) for c in columns).encode() + b"\n"


def _lines(steps: int) -> tuple[list[bytes], list[bytes], StoredTrace, StoredTrace]:
    """v1 and v2 COPY lines of one run with correct hashes, and their two traces."""
    v1_trace, prev1 = _v1_trace()
    header_v2 = _v2_header()
    prev2 = hashlib.sha256(canonicalize_v2(header_record_v2(**header_v2))).digest()
    v2_trace = StoredTrace(
        **{k: header_v2[k] for k in HEADER_V1_FIELDS},
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
    ids = {"tenant_id": _SPEC.tenant_id, "run_id": _SPEC.run_id}
    for i in range(steps):
        texts: dict[str, str | None] = dict(
            zip(STEP_STORED_FIELDS, _step_values(_SPEC, i), strict=True)
        )
        texts["params"] = _jsonb_text(str(texts["params"]))
        texts["outcome_data"] = _jsonb_text(str(texts["outcome_data"]))
        texts["cost_cents"] = _float8_text(str(texts["cost_cents"]))
        texts["duration_ms"] = _float8_text(str(texts["duration_ms"]))
        texts |= dict(zip(STEP_V2_ADDED_FIELDS, _V2_ADDED, strict=True)) | ids
        v1_values = {n: _value(n, texts[n], exact=False) for n in STEP_STORED_FIELDS}
        step1 = hashlib.sha256(prev1 + step_canonical_bytes(**ids, **v1_values)).digest()
        v1.append(
            _line({**texts, "prev_hash": prev1.hex(), "step_hash": step1.hex()}, STEP_COLUMNS)
        )
        prev1 = step1
        own = (*STEP_STORED_FIELDS, *STEP_V2_ADDED_FIELDS)
        v2_values = {n: _value(n, texts[n], exact=True) for n in own}
        canonical2 = step_canonical_v2(**ids, trace_id=_SPEC.trace_id, **v2_values)
        step2 = hashlib.sha256(prev2 + canonical2).digest()
        chain = {"chain_position": str(i), "prev_hash": prev2.hex(), "step_hash": step2.hex()}
        v2.append(_line({**texts, **chain}, STEP_V2_COLUMNS))
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

    def v1_lines(native: bool = False) -> int:
        decoder, chain = StepLineDecoder(native=native), ChainVerifier(v1_trace)
        for line in v1:
            if decoder.decode(line).feed_to(chain):
                return 1
        return 0

    def v1_walk() -> int:
        chain = ChainVerifier(v1_trace)
        walker = LineWalk(chain, StepLineDecoder())
        for start in range(0, len(v1), LINE_BATCH):
            if walker.feed(v1[start : start + LINE_BATCH]):
                return 1
        return 0 if walker.read == len(v1) and chain.failure is None else 1

    def v1_rows() -> int:
        decoder, chain = StepRowDecoder(), ChainVerifier(v1_trace)
        for row in rows:
            if decoder.decode(row).feed_to(chain):
                return 1
        return 0

    def v2_lines(native: bool = False) -> int:
        decoder = StepV2Decoder(_SPEC.tenant_id, _SPEC.run_id, _SPEC.trace_id, native=native)
        chain = ChainVerifier(v2_trace)
        for line in v2:
            if decoder.decode_line(line).feed_to(chain):
                return 1
        return 0

    def v2_walk() -> int:
        chain = ChainVerifier(v2_trace)
        walker = LineWalk(chain, StepV2Decoder(_SPEC.tenant_id, _SPEC.run_id, _SPEC.trace_id))
        for start in range(0, len(v2), LINE_BATCH):
            if walker.feed(v2[start : start + LINE_BATCH]):
                return 1
        return 0 if walker.read == len(v2) and chain.failure is None else 1

    paths: list[tuple[str, Callable[[], int]]] = [("v1 line", v1_lines)]
    native = native_status()
    if native == "native":
        paths += [("v1 line native", lambda: v1_lines(native=True)), ("v1 walk native", v1_walk)]
    else:
        print(f"compiled path: {native}", flush=True)
    paths += [("v1 row", v1_rows), ("v2 line", v2_lines)]
    native_v2 = native_status(2)
    if native_v2 == "native":
        paths += [("v2 line native", lambda: v2_lines(native=True)), ("v2 walk native", v2_walk)]
    elif native_v2 != native:
        print(f"compiled v2 path: {native_v2}", flush=True)
    for name, run in paths:
        seconds = _time(run, args.repeats)
        print(
            f"{name}: {args.steps / seconds:,.0f} steps/s"
            f" ({seconds * 1e6 / args.steps:.2f} us/step CPU, best of {args.repeats})",
            flush=True,
        )


if __name__ == "__main__":
    main()
