"""Recompute a hash-chain vectors file: v1 (hash-chain-v1-vectors.json) or v2
(hash-chain-v2-vectors.json, docs/hash-chain-v2.md "Vectors").

Each case is recomputed three ways: the write path (records + strict canonicalize), the read
path's fast step encoder, and the streaming verifier fed the case's hashes as stored values.
The first field that differs is a Mismatch (integrity/mismatch.py): stored = the file's value,
recomputed = ours.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from run_proof_pipeline.errors import ExitCode, RunProofError
from run_proof_pipeline.integrity.canonical import MAX_JSON_DEPTH, json_text_depth
from run_proof_pipeline.integrity.canonical_v2 import canonicalize_v2, exact_form
from run_proof_pipeline.integrity.chain import ChainHashes, compute_chain
from run_proof_pipeline.integrity.fields import HEADER_V1_FIELDS, STEP_STORED_FIELDS
from run_proof_pipeline.integrity.mismatch import Mismatch, as_text
from run_proof_pipeline.integrity.records import (
    header_record,
    seal_record,
    step_canonical_bytes,
    step_record,
)
from run_proof_pipeline.integrity.records_v2 import (
    header_canonical_v2,
    header_record_v2,
    seal_canonical_v2,
    seal_record_v2,
    step_canonical_v2,
    step_record_v2,
)
from run_proof_pipeline.integrity.verdicts import (
    ChainVerifier,
    StoredStep,
    StoredTrace,
    VerificationStatus,
)

__all__ = [
    "BUNDLED_VECTORS",
    "BUNDLED_VECTORS_V2",
    "MAX_VECTORS_FILE_DEPTH",
    "InvalidVectorsFile",
    "VectorMismatch",
    "VectorReport",
    "case_records_v2",
    "check_cases",
    "check_cases_v2",
    "check_vectors",
    "check_vectors_v2",
    "compute_chain_v2",
    "json_text_exact",
    "load_vectors_v2",
    "stored_steps_v2",
    "stored_trace_v2",
]

BUNDLED_VECTORS = Path(__file__).resolve().parent / "data" / "hash-chain-v1-vectors.json"
# A file nests its values inside 5 levels of its own ({"cases": [{"steps": [{"params": ...
# (docs/json-nesting.md): deeper than that, it cannot hold a valid case, and the standard
# library's parser would hit Python's recursion limit on it.
MAX_VECTORS_FILE_DEPTH = MAX_JSON_DEPTH + 5


class InvalidVectorsFile(RunProofError, ValueError):
    """The file is not a v1 vectors file (the message says why): bad input, exit 2."""

    exit_code = ExitCode.USAGE


@dataclass(frozen=True)
class VectorMismatch:
    """The first field of a case that this code recomputes otherwise than the file holds."""

    case: str
    mismatch: Mismatch  # stored = the vectors file's value, recomputed = ours

    def text(self) -> str:
        return f"case {self.case!r}: {self.mismatch.text('the file')}"


@dataclass(frozen=True)
class VectorReport:
    ok: bool
    cases_checked: int
    first_mismatch: VectorMismatch | None

    def text(self) -> str:
        """`all N cases match`, or the first mismatch's text."""
        if self.first_mismatch is None:
            return f"all {self.cases_checked} cases match"
        return self.first_mismatch.text()


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
    return _check(cases, _compare)


def _check(
    cases: list[dict[str, Any]], compare: Callable[[dict[str, Any]], Iterator[Mismatch]]
) -> VectorReport:
    """Recompute cases in order up to the first one with a mismatch."""
    checked = 0
    for case in cases:
        checked += 1
        mismatch = next(compare(case), None)
        if mismatch is not None:
            first = VectorMismatch(case["name"], mismatch)
            return VectorReport(ok=False, cases_checked=checked, first_mismatch=first)
    return VectorReport(ok=True, cases_checked=checked, first_mismatch=None)


def _mismatches(pairs: Iterable[tuple[str, Any, Any]]) -> Iterator[Mismatch]:
    """A Mismatch for each (field, the file's value, ours) that differ, lazily: a case's later
    fields are only recomputed while the earlier ones match."""
    for field, stored, recomputed in pairs:
        if stored != recomputed:
            yield Mismatch(field, stored=as_text(stored), recomputed=as_text(recomputed))


def _compare(case: dict[str, Any]) -> Iterator[Mismatch]:
    """What differs in one case, in the order a reader would check its fields."""
    return _mismatches(_pairs(case))


def _pairs(case: dict[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    """(field, the file's value, ours) of one case, in the order a reader would check them."""
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


# --- format v2 (docs/hash-chain-v2.md) --------------------------------------------------------

BUNDLED_VECTORS_V2 = Path(__file__).resolve().parent / "data" / "hash-chain-v2-vectors.json"


def compute_chain_v2(
    header: dict[str, Any],
    steps: Sequence[dict[str, Any]],
    seal: dict[str, Any] | None,
) -> ChainHashes:
    """The whole v2 chain of a trace from its records (header, steps in chain order,
    optional seal), with C2; `root_hash` of the result is the format's seal_hash."""
    canonical_header = canonicalize_v2(header)
    head = hashlib.sha256(canonical_header).digest()
    genesis_hex = head.hex()
    hashes: list[str] = []
    canonical_steps: list[str] = []
    for step in steps:
        canonical = canonicalize_v2(step)
        head = hashlib.sha256(head + canonical).digest()
        hashes.append(head.hex())
        canonical_steps.append(canonical.decode())
    canonical_seal = None if seal is None else canonicalize_v2(seal)
    return ChainHashes(
        genesis_hash=genesis_hex,
        step_hashes=tuple(hashes),
        head_hash=head.hex(),
        root_hash=None
        if canonical_seal is None
        else hashlib.sha256(head + canonical_seal).hexdigest(),
        canonical_header=canonical_header.decode(),
        canonical_steps=tuple(canonical_steps),
        canonical_seal=None if canonical_seal is None else canonical_seal.decode(),
    )


def load_vectors_v2(text: str) -> dict[str, Any]:
    """A v2 vectors file's content, numbers exact (integers int, others Decimal): the file
    holds numbers such as 1e400 and 0.10000000000000001 that a double cannot."""
    depth = json_text_depth(text)
    if depth > MAX_VECTORS_FILE_DEPTH:
        raise InvalidVectorsFile(
            f"JSON nested deeper than {MAX_VECTORS_FILE_DEPTH} levels ({depth}; a case's values"
            f" nest at most {MAX_JSON_DEPTH}, docs/json-nesting.md)"
        )
    try:
        data = json.loads(text, parse_float=Decimal, parse_int=int)
    except ValueError as exc:
        raise InvalidVectorsFile(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise InvalidVectorsFile("no list of cases")
    return data


def check_vectors_v2(path: str | Path = BUNDLED_VECTORS_V2) -> VectorReport:
    """Recompute the v2 file's cases (InvalidVectorsFile if it is not one)."""
    with open(path, encoding="utf-8") as f:
        return check_cases_v2(load_vectors_v2(f.read())["cases"])


def check_cases_v2(cases: list[dict[str, Any]]) -> VectorReport:
    return _check(cases, _compare_v2)


def case_records_v2(
    case: dict[str, Any],
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]:
    """The header, step and seal records of one v2 case (steps take the trace's tenant_id and
    run_id; the seal takes its trace_id and chain_length = the number of steps)."""
    header, steps, seal = case["header"], case["steps"], case["seal"]
    ids = {"tenant_id": header["tenant_id"], "run_id": header["run_id"]}
    seal_rec = (
        None
        if seal is None
        else seal_record_v2(**ids, trace_id=header["trace_id"], chain_length=len(steps), **seal)
    )
    return header_record_v2(**header), [step_record_v2(**ids, **s) for s in steps], seal_rec


def _compare_v2(case: dict[str, Any]) -> Iterator[Mismatch]:
    """What differs in one v2 case, in the order a reader would check its fields."""
    return _mismatches(_pairs_v2(case))


def _pairs_v2(case: dict[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    header, steps, seal, expected = case["header"], case["steps"], case["seal"], case["expected"]
    ids = {"tenant_id": header["tenant_id"], "run_id": header["run_id"]}
    header_rec, step_recs, seal_rec = case_records_v2(case)
    chain = compute_chain_v2(header_rec, step_recs, seal_rec)
    yield "canonical_header", expected["canonical_header"], chain.canonical_header
    yield (
        "canonical_header (header_canonical_v2)",
        expected["canonical_header"],
        header_canonical_v2(**header).decode(),
    )
    yield "genesis_hash", expected["genesis_hash"], chain.genesis_hash
    yield "len(canonical_steps)", len(expected["canonical_steps"]), len(chain.canonical_steps)
    yield "len(step_hashes)", len(expected["step_hashes"]), len(chain.step_hashes)
    pairs = zip(expected["canonical_steps"], chain.canonical_steps, strict=False)
    for i, (want, got) in enumerate(pairs):
        yield f"canonical_steps[{i}]", want, got
        fast = step_canonical_v2(**ids, **steps[i]).decode()
        yield f"canonical_steps[{i}] (step_canonical_v2)", want, fast
    for i, (want, got) in enumerate(zip(expected["step_hashes"], chain.step_hashes, strict=False)):
        yield f"step_hashes[{i}]", want, got
    yield "head_hash", expected["head_hash"], chain.head_hash
    yield "canonical_seal", expected.get("canonical_seal"), chain.canonical_seal
    if seal is not None:
        fast_seal = seal_canonical_v2(
            **ids, trace_id=header["trace_id"], chain_length=len(steps), **seal
        ).decode()
        yield "canonical_seal (seal_canonical_v2)", expected.get("canonical_seal"), fast_seal
    yield "seal_hash", expected["seal_hash"], chain.root_hash
    want_status = VerificationStatus.UNSEALED if seal is None else VerificationStatus.VERIFIED
    yield "verdict", want_status.value, _verify_as_stored_v2(case).value


def stored_trace_v2(case: dict[str, Any], **changes: Any) -> StoredTrace:
    """The StoredTrace a reader would build from a v2 case's rows (hashes as expected)."""
    header, seal, expected = case["header"], case["seal"], case["expected"]
    trace_fields = {k: header[k] for k in _V1_HEADER_FIELDS}
    v2_fields = {k: v for k, v in header.items() if k not in _V1_HEADER_FIELDS}
    trace = StoredTrace(
        **trace_fields,
        status=None if seal is None else seal["status"],
        completed_at=None if seal is None else seal["completed_at"],
        genesis_hash=expected["genesis_hash"],
        root_hash=expected["seal_hash"],
        chain_length=None if seal is None else len(case["steps"]),
        chain_format=2,
        header_v2=v2_fields,
        metadata=None if seal is None else seal["metadata"],
        root_hash_column=header["aos_root_hash"],
    )
    return replace(trace, **changes) if changes else trace


def stored_steps_v2(case: dict[str, Any]) -> list[StoredStep]:
    """The StoredSteps a reader would build from a v2 case's step rows, in chain order."""
    expected = case["expected"]
    prevs = [expected["genesis_hash"], *expected["step_hashes"]]
    rows = []
    for position, step in enumerate(case["steps"]):
        own = {k: step[k] for k in _V1_STEP_FIELDS}
        extra = {k: v for k, v in step.items() if k not in _V1_STEP_FIELDS}
        rows.append(
            StoredStep(
                **own,
                prev_hash=prevs[position],
                step_hash=expected["step_hashes"][position],
                chain_position=position,
                extra=extra,
            )
        )
    return rows


def _verify_as_stored_v2(case: dict[str, Any]) -> VerificationStatus:
    verifier = ChainVerifier(stored_trace_v2(case))
    for step in stored_steps_v2(case):
        verifier.feed(step)
    return verifier.finish().status


# What a v1 StoredTrace / StoredStep carries itself (integrity/fields.py); a case's other
# fields go to header_v2 / extra.
_V1_HEADER_FIELDS = HEADER_V1_FIELDS
_V1_STEP_FIELDS = STEP_STORED_FIELDS


def json_text_exact(value: Any, indent: int | None = None) -> str:
    """JSON text of a value whose numbers may be int/Decimal, every number written with its
    exact value (json.dumps cannot write a Decimal).  Not canonical: for files and fixtures;
    canonicalize_v2(value) gives the canonical text of the same values."""
    parts: list[str] = []
    _write(value, parts, indent, 0)
    return "".join(parts)


def _write(value: Any, parts: list[str], indent: int | None, level: int) -> None:
    if value is None or isinstance(value, (bool, str)):
        parts.append(json.dumps(value))
    elif isinstance(value, int):
        parts.append(exact_form(value))
    elif isinstance(value, Decimal):
        parts.append(str(value))  # Decimal's own text is valid JSON for a finite value
    elif isinstance(value, float):
        parts.append(repr(value))
    elif isinstance(value, (dict, list, tuple)):
        items = list(value.items()) if isinstance(value, dict) else list(value)
        opening, closing = ("{", "}") if isinstance(value, dict) else ("[", "]")
        if not items:
            parts.append(opening + closing)
            return
        pad = "" if indent is None else "\n" + " " * (indent * (level + 1))
        parts.append(opening)
        for i, item in enumerate(items):
            if i:
                parts.append(",")
            parts.append(pad)
            if isinstance(value, dict):
                parts.append(json.dumps(item[0]) + (": " if indent is not None else ":"))
                item = item[1]
            _write(item, parts, indent, level + 1)
        parts.append("" if indent is None else "\n" + " " * (indent * level))
        parts.append(closing)
    else:
        raise TypeError(f"not a JSON value: {type(value).__name__}")
