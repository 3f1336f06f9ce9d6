"""Write run_proof_pipeline/integrity/data/hash-chain-v2-vectors.json from the hand-written
inputs below (docs/hash-chain-v2.md, "Vectors").  Deterministic: running it again writes the
same bytes, and `--check` exits 1 when the file differs from what it would write.

    .venv/bin/python scripts/make_v2_vectors.py [--check]

Inputs are written as the rows hold them: jsonb values with exact numbers (int / Decimal),
double precision columns as floats, timestamps as canonical text, SQL NULL as None.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from run_proof_pipeline.integrity.vectors import (
    BUNDLED_VECTORS_V2,
    case_records_v2,
    compute_chain_v2,
    json_text_exact,
)

D = Decimal
AOS_ROOT_HASH = "5f3c1e0b8a4d2f6e9c7b1a0d3e5f7a9b2c4d6e8f0a1b3c5d7e9f1a2b3c4d5e6f"
T0 = "2026-02-09T10:00:00.000000Z"


def header(**changes: Any) -> dict[str, Any]:
    """A start_trace-style header (AOS's writer): trace_id 'trace_' || run_id, root_hash
    'pending', trace '{"steps": []}', schema_version '1.0', is_synthetic false."""
    base: dict[str, Any] = {
        "tenant_id": "tenant-demo",
        "run_id": "run-0001",
        "trace_id": "trace_run-0001",
        "agent_id": "agent-7",
        "plan_id": None,
        "plan": {"goal": "fetch and summarize", "steps": ["http_call", "llm_invoke"]},
        "started_at": T0,
        "created_at": "2026-02-09T10:00:00.000123Z",
        "correlation_id": "corr-0001",
        "seed": 42,
        "frozen_timestamp": None,
        "plan_hash": None,
        "schema_version": "1.0",
        "trace": {"steps": []},
        "stored_by": None,
        "checksum": None,
        "incident_id": None,
        "is_synthetic": False,
        "synthetic_scenario_id": None,
        "aos_root_hash": "pending",
    }
    base.update(changes)
    return base


def step(index: int, trace_id: str = "trace_run-0001", **changes: Any) -> dict[str, Any]:
    """A record_step-style step: skill_id = skill_name, source/level defaults."""
    base: dict[str, Any] = {
        "trace_id": trace_id,
        "step_index": index,
        "skill_id": "http_call",
        "skill_name": "http_call",
        "params": {"url": "https://example.invalid/api", "method": "GET"},
        "status": "succeeded",
        "outcome_category": "success",
        "outcome_code": "200",
        "outcome_data": {"bytes": 1234, "ok": True},
        "cost_cents": 0.5,
        "duration_ms": 227.6,
        "retry_count": 0,
        "timestamp": f"2026-02-09T10:00:0{index}.123456Z",
        "input_hash": None,
        "output_hash": None,
        "rng_state_before": None,
        "idempotency_key": None,
        "replay_behavior": "execute",
        "source": "engine",
        "level": "INFO",
        "is_synthetic": False,
        "synthetic_scenario_id": None,
    }
    base.update(changes)
    return base


def seal(status: str, completed_at: str | None, metadata: Any = None) -> dict[str, Any]:
    return {"status": status, "completed_at": completed_at, "metadata": metadata}


STORE_TRACE_ID = "trace_0b5e8f1c-3d7a-4e21-9c6b-5a4f2e1d0c9b"
STORED_STEPS = [
    step(
        0,
        STORE_TRACE_ID,
        skill_id="llm_invoke",
        skill_name="llm_invoke",
        params={"model": "m", "max_tokens": 256},
        outcome_data={"tokens": 211},
        cost_cents=1.25,
        duration_ms=1500.0,
        input_hash="a" * 64,
        output_hash="b" * 64,
        rng_state_before="rng:0001",
        idempotency_key="idem-0001",
        replay_behavior="skip",
    ),
    step(1, STORE_TRACE_ID, outcome_data=None, outcome_code=None, retry_count=1),
]

NUMBERS = {
    "above_2_53": 9007199254740993,
    "two_64": 2**64,
    "huge": D("1e400"),
    "tenth_17_digits": D("0.10000000000000001"),
    "trailing_zero": D("1.50"),
    "negative_zero": D("-0.0"),
    "e21": D("1e21"),
    "e_minus_7": D("1e-7"),
    "min_subnormal": D("5e-324"),
    "e22_integer": 10**22,
    "tiny": D("1e-400"),
    "list": [D("-2.50"), 2**53, -(2**63), D("123456789012345678901234567890.0001")],
}

UNICODE_KEYS = {
    "a": 1,
    "é": 2,
    "\uff61": 3,  # U+FF61: after the surrogates in UTF-16
    "\U0001f600": 4,  # U+1F600: a surrogate pair, before U+FF61 in UTF-16 order
    "\u20ac": 5,
    "\x7f": 6,
    "Z": 7,
}

CASES: list[dict[str, Any]] = [
    {
        "name": "aos_start_trace_three_steps_completed",
        "description": (
            "AOS's writer: start_trace (root_hash 'pending', trace {\"steps\": []}), three"
            " record_step rows, complete_trace (status completed, metadata kept NULL)"
        ),
        "header": header(),
        "steps": [
            step(0),
            step(
                1,
                skill_id="llm_invoke",
                skill_name="llm_invoke",
                params={"model": "m", "max_tokens": 256},
                outcome_data={"tokens": 211},
                cost_cents=1.25,
                duration_ms=1500.0,
            ),
            step(
                2,
                status="failed",
                outcome_category="error",
                outcome_code="TIMEOUT",
                outcome_data=None,
                retry_count=2,
                level="ERROR",
            ),
        ],
        "seal": seal("completed", "2026-02-09T10:00:09.999999Z"),
    },
    {
        "name": "aos_store_trace_listing_its_steps",
        "description": (
            "AOS's store_trace: a finished trace row (its own root_hash, trace listing its"
            " steps, completed_at NULL) then its steps; sealed once both are chained"
        ),
        "header": header(
            run_id="run-0002",
            trace_id=STORE_TRACE_ID,
            correlation_id="corr-0002",
            plan_id="plan-42",
            seed=7,
            frozen_timestamp="2026-02-09T10:00:00Z",
            plan_hash="c" * 64,
            trace={
                "steps": [
                    {"step_index": 0, "skill_name": "llm_invoke", "cost_cents": 1.25},
                    {"step_index": 1, "skill_name": "http_call", "cost_cents": 0.5},
                ],
                "version": "1.0",
            },
            stored_by="aos-worker-3",
            checksum="d" * 64,
            aos_root_hash=AOS_ROOT_HASH,
        ),
        "steps": STORED_STEPS,
        "seal": seal("completed", None),
    },
    {
        "name": "exact_numbers",
        "description": (
            "numbers a double cannot hold kept exact (9007199254740993, 2^64, 1e400,"
            " 0.10000000000000001, seed 2^63-1), others written as RFC 8785 does (1.50,"
            " -0.0, 1e21, 1e-7, 5e-324, 10^22); double columns as ES6"
        ),
        "header": header(
            run_id="run-0003",
            trace_id="trace_run-0003",
            seed=9223372036854775807,
            plan={"budget": D("0.10000000000000001"), "limit": 9007199254740993},
        ),
        "steps": [
            step(
                0,
                "trace_run-0003",
                params=NUMBERS,
                outcome_data={"value": D("1e400"), "ratio": D("1.50")},
                cost_cents=0.30000000000000004,
                duration_ms=1e21,
                retry_count=2147483647,
            ),
            step(
                1,
                "trace_run-0003",
                params={"n": -0.0, "x": 5e-324},
                outcome_data=[D("1e-7"), D("-0.0"), 18446744073709551616],
                cost_cents=-0.0,
                duration_ms=1e-7,
            ),
        ],
        "seal": seal("completed", "2026-02-09T10:00:09.999999Z", {"total": D("1.50")}),
    },
    {
        "name": "unicode_keys_utf16_order",
        "description": (
            "keys sorted by UTF-16 code units (U+1F600 before U+FF61), escapes and"
            " non-ASCII text as RFC 8785 writes them"
        ),
        "header": header(
            run_id="run-0004",
            trace_id="trace_run-0004",
            agent_id="agent-\u00e9\U0001f600",
            plan=UNICODE_KEYS,
        ),
        "steps": [
            step(
                0,
                "trace_run-0004",
                skill_name='quote " backslash \\ tab \t nl \n',
                params={"nested": UNICODE_KEYS, "text": "\u2028\u2029\x01\U0001f600"},
            )
        ],
        "seal": seal("completed", "2026-02-09T10:00:09.999999Z", UNICODE_KEYS),
    },
    {
        "name": "empty_chain_sealed",
        "description": "store_trace of a finished trace listing no steps: sealed at insert",
        "header": header(
            run_id="run-0005",
            trace_id="trace_run-0005",
            trace={"steps": []},
            aos_root_hash=AOS_ROOT_HASH,
        ),
        "steps": [],
        "seal": seal("completed", "2026-02-09T10:00:00.500000Z"),
    },
    {
        "name": "aborted_with_metadata",
        "description": "mark_trace_aborted: status aborted, metadata with an abort_reason",
        "header": header(run_id="run-0006", trace_id="trace_run-0006"),
        "steps": [step(0, "trace_run-0006")],
        "seal": seal(
            "aborted",
            "2026-02-09T10:00:05.000000Z",
            {"abort_reason": "worker shutdown", "signal": "SIGTERM"},
        ),
    },
    {
        "name": "nulls_everywhere_allowed",
        "description": "every nullable column NULL (header, steps and seal)",
        "header": header(
            run_id="run-0007",
            trace_id="trace_run-0007",
            agent_id=None,
            plan_id=None,
            seed=None,
            frozen_timestamp=None,
            plan_hash=None,
            stored_by=None,
            checksum=None,
            incident_id=None,
            synthetic_scenario_id=None,
        ),
        "steps": [
            step(
                0,
                "trace_run-0007",
                outcome_code=None,
                outcome_data=None,
                input_hash=None,
                output_hash=None,
                rng_state_before=None,
                idempotency_key=None,
                synthetic_scenario_id=None,
            )
        ],
        "seal": seal("completed", None, None),
    },
    {
        "name": "synthetic_running_unsealed",
        "description": (
            "a synthetic (SDSR) run still running: two steps chained, no seal; every"
            " optional column set"
        ),
        "header": header(
            run_id="run-0008",
            trace_id="trace_run-0008",
            incident_id="inc-0008",
            is_synthetic=True,
            synthetic_scenario_id="scenario-3",
        ),
        "steps": [
            step(
                i,
                "trace_run-0008",
                is_synthetic=True,
                synthetic_scenario_id="scenario-3",
                source="sdsr",
                level="DEBUG",
                input_hash="e" * 64,
                output_hash="f" * 64,
                rng_state_before=f"rng:{i}",
                idempotency_key=f"idem-{i}",
            )
            for i in range(2)
        ],
        "seal": None,
    },
]


def build() -> str:
    cases = []
    for case in CASES:
        header_rec, step_recs, seal_rec = case_records_v2(case)
        chain = compute_chain_v2(header_rec, step_recs, seal_rec)
        cases.append(
            {
                **case,
                "expected": {
                    "canonical_header": chain.canonical_header,
                    "genesis_hash": chain.genesis_hash,
                    "canonical_steps": list(chain.canonical_steps),
                    "step_hashes": list(chain.step_hashes),
                    "head_hash": chain.head_hash,
                    "canonical_seal": chain.canonical_seal,
                    "seal_hash": chain.root_hash,
                },
            }
        )
    document = {"format": "run-proof hash chain v2", "cases": cases}
    return json_text_exact(document, indent=1) + "\n"


def main(argv: list[str]) -> int:
    text = build()
    path = Path(BUNDLED_VECTORS_V2)
    if "--check" in argv:
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            print(f"{path} is not what scripts/make_v2_vectors.py writes", file=sys.stderr)
            return 1
        return 0
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path} ({len(CASES)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
