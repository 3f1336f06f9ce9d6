"""The shared hash-chain v1 vectors, reproduced byte for byte (canonical strings and hashes)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from run_proof_pipeline.integrity import (
    canonicalize,
    compute_chain,
    header_record,
    seal_record,
    step_canonical_bytes,
    step_record,
)
from run_proof_pipeline.integrity.mismatch import Mismatch
from run_proof_pipeline.integrity.vectors import BUNDLED_VECTORS, VectorMismatch, check_vectors

SHARED_VECTORS = Path(__file__).resolve().parents[2] / "shared/spec/hash-chain-v1-vectors.json"


# The repository's own copy is what the tests use; ../shared's is only compared with it.
needs_shared = pytest.mark.skipif(
    not SHARED_VECTORS.exists(),
    reason=f"{SHARED_VECTORS} not present (a clone on its own): only the bundled vectors run",
)


def _cases() -> list[dict[str, Any]]:
    return json.loads(BUNDLED_VECTORS.read_text(encoding="utf-8"))["cases"]


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "vectors.json"
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def _loaded() -> dict[str, Any]:
    return json.loads(BUNDLED_VECTORS.read_text(encoding="utf-8"))


@needs_shared
def test_shared_vectors_pass() -> None:
    report = check_vectors(SHARED_VECTORS)
    assert report.ok, report.first_mismatch
    assert report.cases_checked == len(_cases()) >= 4
    assert report.first_mismatch is None


def test_bundled_vectors_pass() -> None:
    report = check_vectors(BUNDLED_VECTORS)
    assert report.ok and report.cases_checked == len(_cases()) >= 4


@needs_shared
def test_bundled_vectors_are_the_shared_file_verbatim() -> None:
    assert BUNDLED_VECTORS.read_bytes() == SHARED_VECTORS.read_bytes()


def test_vectors_with_a_mutated_step_hash_fail_naming_case_and_field(tmp_path: Path) -> None:
    data = _loaded()
    case = data["cases"][0]
    good = case["expected"]["step_hashes"][1]
    case["expected"]["step_hashes"][1] = "0" * 64
    report = check_vectors(_write(tmp_path, data))
    assert not report.ok
    assert report.first_mismatch == VectorMismatch(
        case["name"], Mismatch("step_hashes[1]", stored="0" * 64, recomputed=good)
    )


def test_vectors_with_a_mutated_root_hash_fail_naming_case_and_field(tmp_path: Path) -> None:
    data = _loaded()
    case = data["cases"][3]
    good = case["expected"]["root_hash"]
    case["expected"]["root_hash"] = good[:-1] + ("0" if good[-1] != "0" else "1")
    report = check_vectors(_write(tmp_path, data))
    assert report.first_mismatch == VectorMismatch(
        case["name"],
        Mismatch("root_hash", stored=case["expected"]["root_hash"], recomputed=good),
    )


def test_vectors_with_a_mutated_canonical_string_fail_naming_case_and_field(
    tmp_path: Path,
) -> None:
    data = _loaded()
    case = data["cases"][3]
    good = case["expected"]["canonical_steps"][0]
    bad = good.replace("1e+21", "1e21")
    assert bad != good
    case["expected"]["canonical_steps"][0] = bad
    report = check_vectors(_write(tmp_path, data))
    assert report.first_mismatch == VectorMismatch(
        case["name"], Mismatch("canonical_steps[0]", stored=bad, recomputed=good)
    )


def test_vectors_with_a_mutated_canonical_header_fail_naming_case_and_field(
    tmp_path: Path,
) -> None:
    data = _loaded()
    case = data["cases"][1]
    good = case["expected"]["canonical_header"]
    case["expected"]["canonical_header"] = good.replace('"v":1', '"v":2')
    report = check_vectors(_write(tmp_path, data))
    assert report.first_mismatch is not None
    assert (report.first_mismatch.case, report.first_mismatch.mismatch.field) == (
        case["name"],
        "canonical_header",
    )
    assert report.first_mismatch.mismatch.recomputed == good


def test_vectors_with_a_mutated_input_fail_at_the_first_affected_field(tmp_path: Path) -> None:
    data = _loaded()
    case = data["cases"][0]
    case["steps"][2]["retry_count"] = 3
    report = check_vectors(_write(tmp_path, data))
    assert report.first_mismatch is not None
    assert (report.first_mismatch.case, report.first_mismatch.mismatch.field) == (
        case["name"],
        "canonical_steps[2]",
    )


def test_report_counts_cases_up_to_the_first_mismatch(tmp_path: Path) -> None:
    data = _loaded()
    data["cases"][1]["expected"]["head_hash"] = "0" * 64
    report = check_vectors(_write(tmp_path, data))
    assert report.cases_checked == 2 and not report.ok


# --- one test per vector case and field ---------------------------------------------------------


def _fields(case: dict[str, Any]) -> list[str]:
    expected = case["expected"]
    names = ["canonical_header", "genesis_hash", "head_hash", "root_hash"]
    if "canonical_seal" in expected:
        names.append("canonical_seal")
    names += [f"canonical_steps[{i}]" for i in range(len(expected["canonical_steps"]))]
    names += [f"step_hashes[{i}]" for i in range(len(expected["step_hashes"]))]
    return names


_CASE_FIELDS = [
    pytest.param(case, field, id=f"{case['name']}-{field}")
    for case in _cases()
    for field in _fields(case)
]


def _computed(case: dict[str, Any], field: str) -> Any:
    header, steps, seal = case["header"], case["steps"], case["seal"]
    ids = {"tenant_id": header["tenant_id"], "run_id": header["run_id"]}
    chain = compute_chain(
        header_record(**header),
        [step_record(**ids, **s) for s in steps],
        None if seal is None else seal_record(**ids, **seal, chain_length=len(steps)),
    )
    if field.startswith("canonical_steps["):
        i = int(field[len("canonical_steps[") : -1])
        fast = step_canonical_bytes(**ids, **steps[i]).decode()
        assert fast == chain.canonical_steps[i]
        assert canonicalize(step_record(**ids, **steps[i]), strict=False).decode() == fast
        return chain.canonical_steps[i]
    if field.startswith("step_hashes["):
        return chain.step_hashes[int(field[len("step_hashes[") : -1])]
    return getattr(chain, field)


def _expected(case: dict[str, Any], field: str) -> Any:
    expected = case["expected"]
    if "[" in field:
        name, _, rest = field.partition("[")
        return expected[name][int(rest[:-1])]
    return expected[field]


@pytest.mark.parametrize(("case", "field"), _CASE_FIELDS)
def test_vector_field_is_reproduced_byte_for_byte(case: dict[str, Any], field: str) -> None:
    assert _computed(copy.deepcopy(case), field) == _expected(case, field)
