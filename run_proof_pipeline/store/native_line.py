"""The compiled fast path of a proof (store/_native_line.c), or why it is absent.

The extension is built when the package is installed (hatch_build.py) with the machine's C
compiler; without one the install still succeeds and every line takes the pure path
(store/step_line_decoder.py), which stays the reference the compiled path is tested against
(run_proof_pipeline_tests/test_native_line.py).  RUN_PROOF_NATIVE=0 forces the pure path.

- `canonical_line(line)`: (step_index, C(step), prev_hash, step_hash) of a raw COPY line, or
  None when the line needs the pure path;
- `walk(lines, start, prev, prev_hex, next_index, stop)`: rules 2-3 over a list of lines
  while each is fast and verifies, stopping after the step whose index + 1 is `stop`;
  (how many it consumed, the new prev digest);
- `canonical_line_v2(line, tenant, run, trace)` and `walk_v2(..., tenant, run, trace)`: the
  same for a format-v2 line (STEP_V2_COLUMNS; docs/hash-chain-v2.md), which also carries its
  chain position; the trace's ids come as their C2 text (`id_texts`).  A v2 line's refusals
  are the pure path's to word (store/step_rows_v2.py), numbers written in their exact form
  among them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import orjson

from run_proof_pipeline.store.step_columns import STEP_COLUMNS, STEP_V2_COLUMNS

__all__ = [
    "NativeWalk",
    "canonical_line",
    "canonical_line_v2",
    "id_texts",
    "native_enabled",
    "native_status",
    "walk",
    "walk_v2",
]

CanonicalLine = Callable[[bytes], tuple[int, bytes, str, str] | None]
NativeWalk = Callable[[list[bytes], int, bytes, str, int, int], tuple[int, bytes]]
CanonicalLineV2 = Callable[[bytes, bytes, bytes, bytes], tuple[int, bytes, int, str, str] | None]
NativeWalkV2 = Callable[
    [list[bytes], int, bytes, str, int, int, bytes, bytes, bytes], tuple[int, bytes]
]

# The column order the C code reads its fields in (it cannot read STEP_COLUMNS itself).
_C_COLUMNS = tuple(
    "step_index tenant_id run_id skill_id skill_name params status outcome_category"
    " outcome_code outcome_data cost_cents duration_ms retry_count timestamp prev_hash"
    " step_hash".split()
)
_C_COLUMNS_V2 = tuple(
    "step_index skill_id skill_name params status outcome_category outcome_code outcome_data"
    " cost_cents duration_ms retry_count timestamp input_hash output_hash rng_state_before"
    " idempotency_key replay_behavior source level is_synthetic synthetic_scenario_id"
    " chain_position prev_hash step_hash".split()
)


def _load() -> tuple[CanonicalLine | None, NativeWalk | None, str]:
    if STEP_COLUMNS != _C_COLUMNS:
        return None, None, "pure (the compiled path reads another column order)"
    try:
        import run_proof_pipeline.store._native_line as _native_line
    except ImportError as exc:
        return None, None, f"pure (the compiled path is not built: {exc})"
    return _native_line.canonical_line, _native_line.walk, "native"


def _load_v2() -> tuple[CanonicalLineV2 | None, NativeWalkV2 | None, str]:
    if STEP_V2_COLUMNS != _C_COLUMNS_V2:
        return None, None, "pure (the compiled path reads another v2 column order)"
    try:
        import run_proof_pipeline.store._native_line as _native_line
    except ImportError as exc:
        return None, None, f"pure (the compiled path is not built: {exc})"
    return _native_line.canonical_line_v2, _native_line.walk_v2, "native"


# The compiled functions, None where the extension is not built.
canonical_line, walk, _BUILT = _load()
canonical_line_v2, walk_v2, _BUILT_V2 = _load_v2()


def id_texts(tenant_id: Any, run_id: Any, trace_id: Any) -> tuple[bytes, bytes, bytes] | None:
    """The trace's ids as the C2 text a v2 step record holds them in, or None when one is
    not a plain str (a UUID, a lone surrogate): the pure path then writes (or refuses) it,
    as integrity/records_v2.step_canonical_v2 does."""
    texts = []
    for value in (tenant_id, run_id, trace_id):
        if value is None:
            texts.append(b"null")
            continue
        if type(value) is not str:
            return None
        try:
            texts.append(orjson.dumps(value))
        except orjson.JSONEncodeError:
            return None
    return texts[0], texts[1], texts[2]


def native_status(chain_format: int | None = 1) -> str:
    """ "native" when a decoder made now for a trace of `chain_format` uses the compiled
    path, or "pure (...)" saying why not.  RUN_PROOF_NATIVE is read at each call (a decoder
    reads it once, when it is made), so a test can prove the same run both ways in one
    process."""
    if os.environ.get("RUN_PROOF_NATIVE", "1") == "0":
        return "pure (RUN_PROOF_NATIVE=0)"
    return _BUILT_V2 if chain_format == 2 else _BUILT


def native_enabled(chain_format: int | None = 1) -> bool:
    return native_status(chain_format) == "native"
