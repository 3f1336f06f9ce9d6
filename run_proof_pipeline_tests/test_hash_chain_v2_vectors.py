"""The hash-chain v2 test vectors (integrity/data/hash-chain-v2-vectors.json, docs/hash-chain-v2.md
"Vectors"): the Python core reproduces every one, three ways (records + C2, the fast encoders,
the verifier fed them as stored rows), also from the JSON text a database would return; the
file is what scripts/make_v2_vectors.py writes; RFC 8785 (`rfc8785`) agrees on every record
that holds only doubles.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from run_proof_pipeline.integrity import (
    STEP_V2_FIELDS,
    canonicalize_v2,
    check_vectors_v2,
    es6_number,
    number_v2,
    parse_stored_json_v2,
    step_canonical_v2,
)
from run_proof_pipeline.integrity.vectors import (
    BUNDLED_VECTORS_V2,
    InvalidVectorsFile,
    case_records_v2,
    check_cases_v2,
    json_text_exact,
    load_vectors_v2,
)

ROOT = Path(__file__).resolve().parents[1]
SAFE = 2**53 - 1


def _cases() -> list[dict[str, Any]]:
    return load_vectors_v2(BUNDLED_VECTORS_V2.read_text(encoding="utf-8"))["cases"]


CASES = _cases()
BY_NAME = {case["name"]: case for case in CASES}


def test_every_vector_is_reproduced() -> None:
    report = check_vectors_v2()
    assert report.ok, report.first_mismatch
    assert report.cases_checked == len(CASES) == 8


def test_the_file_is_what_the_generator_writes() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/make_v2_vectors.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_the_cases_the_spec_asks_for() -> None:
    assert set(BY_NAME) == {
        "aos_start_trace_three_steps_completed",
        "aos_store_trace_listing_its_steps",
        "exact_numbers",
        "unicode_keys_utf16_order",
        "empty_chain_sealed",
        "aborted_with_metadata",
        "nulls_everywhere_allowed",
        "synthetic_running_unsealed",
    }
    start = BY_NAME["aos_start_trace_three_steps_completed"]
    assert start["header"]["aos_root_hash"] == "pending"
    assert start["header"]["trace"] == {"steps": []}
    assert start["header"]["trace_id"] == "trace_" + start["header"]["run_id"]
    assert len(start["steps"]) == 3 and start["seal"]["status"] == "completed"
    stored = BY_NAME["aos_store_trace_listing_its_steps"]
    assert len(stored["header"]["trace"]["steps"]) == len(stored["steps"])
    assert BY_NAME["empty_chain_sealed"]["steps"] == []
    assert BY_NAME["empty_chain_sealed"]["expected"]["seal_hash"] is not None
    assert "abort_reason" in BY_NAME["aborted_with_metadata"]["seal"]["metadata"]
    assert BY_NAME["synthetic_running_unsealed"]["expected"]["seal_hash"] is None


def test_exact_numbers_in_the_canonical_text() -> None:
    case = BY_NAME["exact_numbers"]
    text = case["expected"]["canonical_steps"][0]
    for fragment in [
        '"above_2_53":9007199254740993,',
        '"two_64":18446744073709551616,',
        '"huge":1' + "0" * 400 + ",",
        '"tenth_17_digits":0.10000000000000001,',
        '"trailing_zero":1.5}',
        '"negative_zero":0,',
        '"e21":1e+21,',
        '"e_minus_7":1e-7,',
        '"min_subnormal":5e-324,',
        '"e22_integer":1e+22,',
        '"tiny":0.' + "0" * 399 + "1,",
        '"cost_cents":0.30000000000000004,',
        '"duration_ms":1e+21,',
    ]:
        bare = fragment.rstrip(",}")
        assert bare + "," in text or bare + "}" in text, fragment
    assert '"seed":9223372036854775807,' in case["expected"]["canonical_header"]
    assert '"budget":0.10000000000000001,' in case["expected"]["canonical_header"]


def _double_only(value: Any) -> Any:
    """`value` with every number as the double RFC 8785 would be given, or None when some
    number takes C2's exact branch (so RFC 8785 cannot say anything about it)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, (int, Decimal)):
        if isinstance(value, int) and -SAFE <= value <= SAFE:
            return value
        d = float(value)
        if d - d != 0.0 or number_v2(value) != es6_number(d):
            raise _ExactBranch
        return d
    if isinstance(value, dict):
        return {k: _double_only(v) for k, v in value.items()}
    return [_double_only(v) for v in value]


class _ExactBranch(Exception):
    pass


def test_double_only_records_are_rfc8785() -> None:
    checked = exact = 0
    for case in CASES:
        header, steps, seal = case_records_v2(case)
        expected = case["expected"]
        pairs = [(header, expected["canonical_header"])]
        pairs += list(zip(steps, expected["canonical_steps"], strict=True))
        if seal is not None:
            pairs.append((seal, expected["canonical_seal"]))
        for record, canonical in pairs:
            try:
                doubles = _double_only(record)
            except _ExactBranch:
                exact += 1
                continue
            assert rfc8785.dumps(doubles).decode() == canonical
            checked += 1
    assert checked >= 15 and exact >= 2  # both kinds are in the file


def _as_stored_text(step: dict[str, Any]) -> dict[str, Any]:
    """The step as a reader gets it: jsonb columns parsed back from their text."""
    out = dict(step)
    for field in ("params", "outcome_data"):
        if out[field] is not None:
            out[field] = parse_stored_json_v2(json_text_exact(out[field]))
    return out


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_vectors_from_stored_text(name: str) -> None:
    case = BY_NAME[name]
    ids = {"tenant_id": case["header"]["tenant_id"], "run_id": case["header"]["run_id"]}
    for i, step in enumerate(case["steps"]):
        got = step_canonical_v2(**ids, **_as_stored_text(step)).decode()
        assert got == case["expected"]["canonical_steps"][i]
        assert set(ids) | set(step) == set(STEP_V2_FIELDS)


def test_a_double_reader_would_not_reproduce_the_exact_case() -> None:
    """json.loads with floats turns 1e400 into inf and 9007199254740993 into ...992 (if
    floats): the file must be read with exact numbers (load_vectors_v2)."""
    plain = json.loads(BUNDLED_VECTORS_V2.read_text(encoding="utf-8"))
    params = next(c for c in plain["cases"] if c["name"] == "exact_numbers")["steps"][0]["params"]
    assert params["huge"] == float("inf")
    exact = BY_NAME["exact_numbers"]["steps"][0]["params"]
    assert canonicalize_v2(exact["huge"]) == b"1" + b"0" * 400


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("expected", "genesis_hash"), "0" * 64),
        (("expected", "step_hashes", 1), "0" * 64),
        (("expected", "seal_hash"), "0" * 64),
        (("steps", 0, "params", "above_2_53"), 9007199254740992),
        (("header", "seed"), 9223372036854775806),
        (("seal", "metadata", "total"), Decimal("1.5000001")),
    ],
)
def test_an_edited_vector_is_reported(path: tuple[Any, ...], value: Any) -> None:
    cases = copy.deepcopy(CASES)
    target: Any = next(c for c in cases if c["name"] == "exact_numbers")
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    report = check_cases_v2(cases)
    assert not report.ok
    assert report.first_mismatch is not None and report.first_mismatch.case == "exact_numbers"


def test_a_file_nested_too_deep_is_refused() -> None:
    with pytest.raises(InvalidVectorsFile):
        load_vectors_v2('{"cases": [' + "[" * 200 + "]" * 200 + "]}")
