"""The compiled fast path of a format-v1 proof (store/_native_line.c), or why it is absent.

The extension is built when the package is installed (hatch_build.py) with the machine's C
compiler; without one the install still succeeds and every line takes the pure path
(store/step_line_decoder.py), which stays the reference the compiled path is tested against
(run_proof_pipeline_tests/test_native_line.py).  RUN_PROOF_NATIVE=0 forces the pure path.

- `canonical_line(line)`: (step_index, C(step), prev_hash, step_hash) of a raw COPY line, or
  None when the line needs the pure path;
- `walk(lines, start, prev, prev_hex, next_index, stop)`: rules 2-3 over a list of lines
  while each is fast and verifies, stopping after the step whose index + 1 is `stop`;
  (how many it consumed, the new prev digest).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from run_proof_pipeline.store.step_columns import STEP_COLUMNS

__all__ = ["NativeWalk", "canonical_line", "native_enabled", "native_status", "walk"]

CanonicalLine = Callable[[bytes], tuple[int, bytes, str, str] | None]
NativeWalk = Callable[[list[bytes], int, bytes, str, int, int], tuple[int, bytes]]

# The column order the C code reads its fields in (it cannot read STEP_COLUMNS itself).
_C_COLUMNS = tuple(
    "step_index tenant_id run_id skill_id skill_name params status outcome_category"
    " outcome_code outcome_data cost_cents duration_ms retry_count timestamp prev_hash"
    " step_hash".split()
)


def _load() -> tuple[CanonicalLine | None, NativeWalk | None, str]:
    if STEP_COLUMNS != _C_COLUMNS:
        return None, None, "pure (the compiled path reads another column order)"
    try:
        import run_proof_pipeline.store._native_line as _native_line
    except ImportError as exc:
        return None, None, f"pure (the compiled path is not built: {exc})"
    return _native_line.canonical_line, _native_line.walk, "native"


# The compiled functions, None where the extension is not built.
canonical_line, walk, _BUILT = _load()


def native_status() -> str:
    """ "native" when a decoder made now uses the compiled path, or "pure (...)" saying why
    not.  RUN_PROOF_NATIVE is read at each call (a decoder reads it once, when it is made),
    so a test can prove the same run both ways in one process."""
    if os.environ.get("RUN_PROOF_NATIVE", "1") == "0":
        return "pure (RUN_PROOF_NATIVE=0)"
    return _BUILT


def native_enabled() -> bool:
    return native_status() == "native"
