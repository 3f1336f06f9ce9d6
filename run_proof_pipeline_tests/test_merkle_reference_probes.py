"""transparency-dev/merkle's own test probes, run against integrity.merkle.

The probes (the reference's testdata/inclusion, testdata/consistency and
testdata/subtreeinclusion cases, its RFC 6962 tree vectors and the rolling subtree vectors)
are extracted to JSON next to the checkout, under shared/reference; they are read in place,
never copied into the repository.  Each verification probe is one test asserting exactly the
reference's verdict: accepted when `wantErr` is false, a ProofError when it is true.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from run_proof_pipeline.integrity.merkle import (
    EMPTY_ROOT,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)

PROBES_PATH = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "reference"
    / "transparency-dev-merkle-probes.json"
)

if not PROBES_PATH.exists():
    pytest.skip(
        f"transparency-dev/merkle reference probes not found at {PROBES_PATH}; "
        "these tests run only where the shared reference data is present",
        allow_module_level=True,
    )

PROBES: dict[str, Any] = json.loads(PROBES_PATH.read_text())


def _hex(value: str | None) -> bytes:
    return bytes.fromhex(value or "")


def _proof(hashes: list[str] | None) -> list[bytes]:
    return [bytes.fromhex(h) for h in hashes or []]


def _params(group: str) -> list[Any]:
    return [pytest.param(probe, id=f"{group}:{probe['file']}") for probe in PROBES[group]]


def _verdict(check: Any) -> bool:
    """True when the check accepts, False when it raises a ProofError (anything else fails)."""
    try:
        check()
    except ProofError:
        return False
    return True


def test_probe_file_is_the_pinned_reference() -> None:
    assert PROBES["source"]["repo"] == "github.com/transparency-dev/merkle"
    assert len(PROBES["source"]["commit"]) == 40
    assert PROBES["inclusion_probes"] and PROBES["consistency_probes"]
    ids = [
        p["file"]
        for group in ("inclusion_probes", "consistency_probes", "subtree_inclusion_probes_start0")
        for p in PROBES[group]
    ]
    assert len(ids) == len(set(ids)), "probe ids must be unique"


def _inclusion_accepted(probe: dict[str, Any], size: int) -> bool:
    return _verdict(
        lambda: verify_inclusion(
            probe["leafIdx"],
            size,
            _hex(probe["leafHash"]),
            _proof(probe["proof"]),
            _hex(probe["root"]),
        )
    )


@pytest.mark.parametrize("probe", _params("inclusion_probes"))
def test_inclusion_probe(probe: dict[str, Any]) -> None:
    assert _inclusion_accepted(probe, probe["treeSize"]) is not probe["wantErr"], probe["desc"]


@pytest.mark.parametrize("probe", _params("subtree_inclusion_probes_start0"))
def test_subtree_inclusion_probe_from_start_zero(probe: dict[str, Any]) -> None:
    # VerifySubtreeInclusion(index, 0, end, ...) is VerifyInclusion(index, end, ...).
    assert probe["start"] == 0
    assert _inclusion_accepted(probe, probe["end"]) is not probe["wantErr"], probe["desc"]


@pytest.mark.parametrize("probe", _params("consistency_probes"))
def test_consistency_probe(probe: dict[str, Any]) -> None:
    accepted = _verdict(
        lambda: verify_consistency(
            probe["size1"],
            probe["size2"],
            _hex(probe["root1"]),
            _hex(probe["root2"]),
            _proof(probe["proof"]),
        )
    )
    assert accepted is not probe["wantErr"], probe["desc"]


# --- the reference tree: hashes and generated proofs ------------------------------------------


def _reference_leaves() -> list[bytes]:
    return [leaf_hash(bytes.fromhex(d)) for d in PROBES["leaf_inputs"]]


def test_hasher_known_answers() -> None:
    kat = PROBES["hasher_kat"]
    assert EMPTY_ROOT.hex() == kat["empty_root"]
    assert leaf_hash(b"").hex() == kat["leaf_of_empty"]
    assert leaf_hash(b"L123456").hex() == kat["leaf_of_L123456"]
    assert node_hash(b"N123", b"N456").hex() == kat["node_of_N123_N456"]


def test_tree_node_and_root_hashes() -> None:
    leaves = _reference_leaves()
    for level, row in enumerate(PROBES["node_hashes"]):
        width = 1 << level
        for i, expected in enumerate(row):
            got = root_from_leaves(leaves[i * width : (i + 1) * width])
            assert got.hex() == expected, (level, i)
    for size, expected in enumerate(PROBES["root_hashes"]):
        assert root_from_leaves(leaves[:size]).hex() == expected, size


def test_generated_proofs_match_the_reference() -> None:
    leaves = _reference_leaves()
    roots = [bytes.fromhex(r) for r in PROBES["root_hashes"]]
    for case in PROBES["ref_inclusion"]:
        index, size = case["index"], case["size"]
        proof = inclusion_proof(leaves[:size], index)
        assert [p.hex() for p in proof] == case["proof"], case
        verify_inclusion(index, size, leaves[index], proof, roots[size])
    for case in PROBES["ref_consistency"]:
        old, new = case["size1"], case["size2"]
        proof = consistency_proof(leaves[:new], old)
        assert [p.hex() for p in proof] == case["proof"], case
        verify_consistency(old, new, roots[old], roots[new], proof)


# --- rolling subtree vectors (every valid [start, end) up to 130 leaves) -----------------------


def _valid_subtrees(limit: int) -> list[tuple[int, int]]:
    def valid(start: int, end: int) -> bool:
        if start == 0 or start == end:
            return True
        ceil = 1 << (end - start - 1).bit_length()  # smallest power of two >= end - start
        return start % ceil == 0

    return [
        (start, end) for end in range(limit + 1) for start in range(end + 1) if valid(start, end)
    ]


def test_rolling_subtree_hashes() -> None:
    rolling = PROBES["rolling"]
    leaves = [leaf_hash(bytes([i])) for i in range(rolling["max"])]
    digest = hashlib.sha256()
    for start, end in _valid_subtrees(rolling["max"]):
        digest.update(
            b"[%d, %d) %s\n" % (start, end, root_from_leaves(leaves[start:end]).hex().encode())
        )
    assert digest.hexdigest() == rolling["subtree_hash"]


def test_rolling_subtree_inclusion_proofs() -> None:
    rolling = PROBES["rolling"]
    leaves = [leaf_hash(bytes([i])) for i in range(rolling["max"])]
    digest = hashlib.sha256()
    for start, end in _valid_subtrees(rolling["max"]):
        subtree = leaves[start:end]
        for index in range(start, end):
            line = f"{index} [{start}, {end})"
            line += "".join(" " + h.hex() for h in inclusion_proof(subtree, index - start))
            digest.update(line.encode() + b"\n")
    assert digest.hexdigest() == rolling["subtree_inclusion_proof"]
