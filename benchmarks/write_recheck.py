"""An independent recheck of the step chain the database wrote during the write-path
benchmark: every step's hashes recomputed in Python from the row (integrity/records_v2.py,
docs/hash-chain-v2.md "Chain"), beside the coordinator's proof (benchmarks/write_path.py).

It covers the steps only (rule 2): the header and the seal are the coordinator's part."""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg

from run_proof_pipeline.integrity.canonical_v2 import parse_stored_json_v2
from run_proof_pipeline.integrity.records_v2 import step_canonical_v2

# The step record's fields that are step-row columns (tenant_id and run_id are the trace's).
_ROW_FIELDS = (
    "trace_id step_index skill_id skill_name params status outcome_category outcome_code"
    " outcome_data cost_cents duration_ms retry_count timestamp input_hash output_hash"
    " rng_state_before idempotency_key replay_behavior source level is_synthetic"
    " synthetic_scenario_id"
).split()
_JSON = {"params", "outcome_data"}


def _select() -> str:
    # JSON columns as text, parsed exactly (numbers kept as stored): the verifier's way.
    columns = ", ".join(f'"{c}"::text' if c in _JSON else f'"{c}"' for c in _ROW_FIELDS)
    return (
        f"SELECT {columns}, chain_position, prev_hash, step_hash"  # noqa: S608
        " FROM aos_trace_steps WHERE trace_id = %s ORDER BY step_index"
    )


def recheck_steps(dsn: str, trace_id: str) -> dict[str, Any]:
    """Recompute each step's hash: positions 0..n-1 in step_index order, prev = the previous
    step's hash (the genesis for the first), step_hash = H(prev || C2(step))."""
    with psycopg.connect(dsn) as conn:
        has_positions = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'aos_trace_steps'::regclass"
            " AND attname = 'chain_position' AND NOT attisdropped)"
        ).fetchone()[0]  # type: ignore[index]
        if not has_positions:
            return {"checked": 0, "ok": False, "problem": "no chain_position column (before 0006)"}
        trace = conn.execute(
            "SELECT tenant_id, run_id, genesis_hash FROM aos_traces WHERE trace_id = %s",
            (trace_id,),
        ).fetchone()
        assert trace is not None
        tenant_id, run_id, prev = trace
        checked = 0
        for row in conn.execute(_select(), (trace_id,)):
            fields = dict(zip(_ROW_FIELDS, row[: len(_ROW_FIELDS)], strict=True))
            position, stored_prev, stored_hash = row[len(_ROW_FIELDS) :]
            for name in _JSON:
                if fields[name] is not None:
                    fields[name] = parse_stored_json_v2(fields[name])
            if prev is None or position != checked or stored_prev != prev:
                return {
                    "checked": checked,
                    "ok": False,
                    "problem": f"step {fields['step_index']}: position {position}, prev "
                    f"{stored_prev} where {checked} and {prev} were expected",
                }
            canonical = step_canonical_v2(tenant_id=tenant_id, run_id=run_id, **fields)
            expected = hashlib.sha256(bytes.fromhex(prev) + canonical).hexdigest()
            if stored_hash != expected:
                return {
                    "checked": checked,
                    "ok": False,
                    "problem": f"step {fields['step_index']}: stored {stored_hash}, "
                    f"recomputed {expected}",
                }
            prev = stored_hash
            checked += 1
    return {"checked": checked, "ok": True, "problem": None}
