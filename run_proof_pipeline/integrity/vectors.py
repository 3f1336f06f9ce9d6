"""Recompute a hash-chain v1 vectors file (the format of hash-chain-v1-vectors.json).

Each case is recomputed three ways: the write path (records + strict canonicalize), the read
path's fast step encoder, and the streaming verifier fed the case's hashes as stored values.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from run_proof_pipeline.integrity.canonical import MAX_JSON_DEPTH, json_text_depth
from run_proof_pipeline.integrity.chain import compute_chain
from run_proof_pipeline.integrity.records import (
    header_record,
    seal_record,
    step_canonical_bytes,
    step_record,
)
from run_proof_pipeline.integrity.verdicts import (
    ChainVerifier,
    StoredStep,
    StoredTrace,
    VerificationStatus,
)

__all__ = [
    "BUNDLED_VECTORS",
    "MAX_VECTORS_FILE_DEPTH",
    "InvalidVectorsFile",
    "VectorMismatch",
    "VectorReport",
    "check_cases",
    "check_vectors",
]

BUNDLED_VECTORS = Path(__file__).resolve().parent / "data" / "hash-chain-v1-vectors.json"
# A file nests its values inside 5 levels of its own ({"cases": [{"steps": [{"params": ...
# (docs/json-nesting.md): deeper than that, it cannot hold a valid case, and the standard
# library's parser would hit Python's recursion limit on it.
MAX_VECTORS_FILE_DEPTH = MAX_JSON_DEPTH + 5


class InvalidVectorsFile(ValueError):
    """The file is not a v1 vectors file (the message says why)."""


# (case name, field, expected, computed)
VectorMismatch = tuple[str, str, Any, Any]


@dataclass(frozen=True)
class VectorReport:
    ok: bool
    cases_checked: int
    first_mismatch: VectorMismatch | None


def check_vectors(path: str | Path = BUNDLED_VECTORS) -> VectorReport:
    """Recompute the file's cases; InvalidVectorsFile (a ValueError) if it nests too deep."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    depth = json_text_depth(text)
    if depth > MAX_VECTORS_FILE_DEPTH:
        raise InvalidVectorsFile(
            f"JSON nested deeper than {MAX_VECTORS_FILE_DEPTH} levels ({depth}; a case's values"
            f" nest at most {MAX_JSON_DEPTH}, docs/json-nesting.md)"
        )
    data = json.loads(text)
    return check_cases(data["cases"])


def check_cases(cases: list[dict[str, Any]]) -> VectorReport:
    first: VectorMismatch | None = None
    checked = 0
    for case in cases:
        checked += 1
        for field, expected, computed in _compare(case):
            if expected != computed:
                first = (case["name"], field, expected, computed)
                break
        if first is not None:
            break
    return VectorReport(ok=first is None, cases_checked=checked, first_mismatch=first)


def _compare(case: dict[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    """(field, expected, computed) pairs of one case, in the order a reader would check them."""
    header, steps, seal, expected = case["header"], case["steps"], case["seal"], case["expected"]
    ids = {"tenant_id": header["tenant_id"], "run_id": header["run_id"]}
    seal_rec = None if seal is None else seal_record(**ids, chain_length=len(steps), **seal)
    chain = compute_chain(
        header_record(**header), [step_record(**ids, **s) for s in steps], seal_rec
    )
    yield "canonical_header", expected["canonical_header"], chain.canonical_header
    yield "genesis_hash", expected["genesis_hash"], chain.genesis_hash
    yield "len(canonical_steps)", len(expected["canonical_steps"]), len(chain.canonical_steps)
    yield "len(step_hashes)", len(expected["step_hashes"]), len(chain.step_hashes)
    pairs = zip(expected["canonical_steps"], chain.canonical_steps, strict=False)
    for i, (want, got) in enumerate(pairs):
        yield f"canonical_steps[{i}]", want, got
        fast = step_canonical_bytes(**ids, **steps[i]).decode()
        yield f"canonical_steps[{i}] (step_canonical_bytes)", want, fast
    for i, (want, got) in enumerate(zip(expected["step_hashes"], chain.step_hashes, strict=False)):
        yield f"step_hashes[{i}]", want, got
    yield "head_hash", expected["head_hash"], chain.head_hash
    yield "canonical_seal", expected.get("canonical_seal"), chain.canonical_seal
    yield "root_hash", expected["root_hash"], chain.root_hash
    want_status = VerificationStatus.UNSEALED if seal is None else VerificationStatus.VERIFIED
    yield "verdict", want_status.value, _verify_as_stored(case).value


def _verify_as_stored(case: dict[str, Any]) -> VerificationStatus:
    """Feed the case to the verifier as if its expected hashes had been read from the store."""
    header, seal, expected = case["header"], case["seal"], case["expected"]
    trace = StoredTrace(
        **header,
        status=None if seal is None else seal["status"],
        completed_at=None if seal is None else seal["completed_at"],
        genesis_hash=expected["genesis_hash"],
        root_hash=expected["root_hash"],
        chain_length=None if seal is None else len(case["steps"]),
    )
    verifier = ChainVerifier(trace)
    prev = expected["genesis_hash"]
    for step, stored_hash in zip(case["steps"], expected["step_hashes"], strict=False):
        verifier.feed(StoredStep(**step, prev_hash=prev, step_hash=stored_hash))
        prev = stored_hash
    return verifier.finish().status
