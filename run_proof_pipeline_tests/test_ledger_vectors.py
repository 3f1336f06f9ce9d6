"""docs/ledger-v1-vectors.json: entry canonical forms, leaf hashes, RFC 9162 roots and proofs,
and a signed checkpoint note, recomputed here in Python and (leaves) in SQL by the migration's
run_proof_ledger_leaf(), an independent implementation of the same canonical form.

The file is written by scripts/make_ledger_vectors.py, which computes every value from
docs/ledger-v1.md with code of its own (rfc8785, hashlib, cryptography; none of the
project's): the first test checks the committed file is what it writes. Its `invalid` section
holds what a verifier must reject; the project's verifiers must reject each case naming the
failure, with the expected and calculated values the generator computed."""

from __future__ import annotations

import base64
import importlib.util
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from run_proof_pipeline.integrity.merkle import (
    EmptyTreeConsistencyError,
    HashSizeError,
    IndexOutOfRangeError,
    ProofError,
    ProofSizeError,
    RootMismatchError,
    TreeSizeError,
    consistency_proof,
    inclusion_proof,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)
from run_proof_pipeline.ledger.checkpoint import (
    Checkpoint,
    CheckpointProblem,
    SignedCheckpoint,
    sign_checkpoint,
)
from run_proof_pipeline.ledger.entry import LedgerEntry
from run_proof_pipeline.ledger.keys import SigningKey, VerifierKey
from run_proof_pipeline.ledger.tree import LedgerTree
from run_proof_pipeline.settings import DatabaseUrl

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "docs" / "ledger-v1-vectors.json"
GENERATOR = ROOT / "scripts" / "make_ledger_vectors.py"


def _load() -> dict[str, Any]:
    return json.loads(VECTORS.read_text(encoding="utf-8"))


def _entries(data: dict[str, Any]) -> list[LedgerEntry]:
    return [LedgerEntry(seq=i + 1, **e["entry"]) for i, e in enumerate(data["entries"])]


def test_the_vectors_are_what_the_independent_generator_writes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = importlib.util.spec_from_file_location("make_ledger_vectors", GENERATOR)
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert generator.main(["--check"]) == 0, capsys.readouterr().err
    # The generator does not lean on the code it checks.
    assert "run_proof_pipeline" not in GENERATOR.read_text(encoding="utf-8").split('"""')[2]


def test_entry_canonical_forms_and_leaf_hashes() -> None:
    data = _load()
    for case, entry in zip(data["entries"], _entries(data), strict=True):
        assert entry.canonical().decode() == case["canonical"], case["name"]
        assert entry.leaf().hex() == case["leaf_hash"], case["name"]


def test_tree_roots_and_proofs() -> None:
    data = _load()
    leaves = [e.leaf() for e in _entries(data)]
    for size, root in enumerate(data["tree"]["roots"]):
        assert root_from_leaves(leaves[:size]).hex() == root, f"root of size {size}"
    for case in data["tree"]["inclusion"]:
        index, size = case["index"], case["size"]
        proof = inclusion_proof(leaves[:size], index)
        assert [p.hex() for p in proof] == case["proof"], case
        verify_inclusion(
            index, size, leaves[index], proof, bytes.fromhex(data["tree"]["roots"][size])
        )
    for case in data["tree"]["consistency"]:
        old, new = case["old_size"], case["new_size"]
        proof = consistency_proof(leaves[:new], old)
        assert [p.hex() for p in proof] == case["proof"], case
        roots = data["tree"]["roots"]
        if old == 0:
            # As in transparency-dev/merkle: no consistency proof from the empty tree.
            with pytest.raises(EmptyTreeConsistencyError):
                verify_consistency(
                    old, new, bytes.fromhex(roots[0]), bytes.fromhex(roots[new]), proof
                )
            continue
        verify_consistency(old, new, bytes.fromhex(roots[old]), bytes.fromhex(roots[new]), proof)


def test_signed_checkpoint_note_is_reproduced_byte_for_byte() -> None:
    data = _load()["checkpoint"]
    key = SigningKey.parse(data["signing_key"])
    assert key.verifier().text() == data["verifier_key"]
    checkpoint = Checkpoint(data["origin"], data["size"], base64.b64decode(data["root_base64"]))
    assert checkpoint.body() == data["body"]
    signed = sign_checkpoint(checkpoint, key)
    assert signed.note() == data["note"]
    parsed = SignedCheckpoint.parse(data["note"])
    parsed.verify(VerifierKey.parse(data["verifier_key"]))
    assert parsed.signatures[0][1].hex() == data["key_id"]


def test_the_database_computes_the_same_leaf_hashes(store: DatabaseUrl) -> None:
    data = _load()
    with psycopg.connect(store.libpq()) as conn:
        for case in data["entries"]:
            e = case["entry"]
            found = conn.execute(
                "SELECT run_proof_ledger_leaf(%s, %s, %s, %s, %s, %s, %s::timestamptz)",
                (
                    e["kind"],
                    e["tenant_id"],
                    e["run_id"],
                    e["trace_id"],
                    e["chain_length"],
                    e["root_hash"],
                    e["recorded_at"],
                ),
            ).fetchone()[0]
            assert found == case["leaf_hash"], case["name"]


# --- the invalid section: each case rejected, naming expected and calculated ----------------


def _raised_as_stated(raised: ProofError, want: dict[str, Any]) -> None:
    kinds: dict[str, type[ProofError]] = {
        "root_mismatch": RootMismatchError,
        "proof_size": ProofSizeError,
        "hash_size": HashSizeError,
        "index_out_of_range": IndexOutOfRangeError,
        "tree_size": TreeSizeError,
    }
    assert type(raised) is kinds[want["kind"]], (raised, want)
    message = str(raised)
    if isinstance(raised, RootMismatchError):
        assert (raised.expected.hex(), raised.calculated.hex()) == (
            want["expected"],
            want["calculated"],
        )
        assert message == (
            f"{want['what']} mismatch: expected {want['expected']}, calculated {want['calculated']}"
        )
    elif isinstance(raised, ProofSizeError | HashSizeError):
        assert (raised.expected, raised.got) == (want["expected"], want["got"])
        assert f"expected {want['expected']}" in message and f"got {want['got']}" in message
    elif isinstance(raised, IndexOutOfRangeError):
        assert (raised.index, raised.size) == (want["index"], want["size"])
    else:
        assert (raised.old_size, raised.new_size) == (want["old_size"], want["new_size"])


def _cases(section: str) -> list[dict[str, Any]]:
    return _load()["invalid"][section]


@pytest.mark.parametrize("case", _cases("inclusion"), ids=lambda c: c["name"])
def test_an_invalid_inclusion_proof_is_rejected_as_stated(case: dict[str, Any]) -> None:
    with pytest.raises(ProofError) as raised:
        verify_inclusion(
            case["index"],
            case["size"],
            bytes.fromhex(case["leaf_hash"]),
            [bytes.fromhex(p) for p in case["proof"]],
            bytes.fromhex(case["root"]),
        )
    _raised_as_stated(raised.value, case["want_err"])


@pytest.mark.parametrize("case", _cases("consistency"), ids=lambda c: c["name"])
def test_an_invalid_consistency_proof_is_rejected_as_stated(case: dict[str, Any]) -> None:
    with pytest.raises(ProofError) as raised:
        verify_consistency(
            case["old_size"],
            case["new_size"],
            bytes.fromhex(case["old_root"]),
            bytes.fromhex(case["new_root"]),
            [bytes.fromhex(p) for p in case["proof"]],
        )
    _raised_as_stated(raised.value, case["want_err"])


@pytest.mark.parametrize("case", _cases("entries"), ids=lambda c: c["name"])
def test_an_entry_edited_under_its_stored_leaf_is_named(case: dict[str, Any]) -> None:
    entry = LedgerEntry(seq=1, **case["entry"], leaf_hash=case["stored_leaf_hash"])
    want = case["want_err"]
    assert want["kind"] == "leaf_hash_mismatch"

    problems = LedgerTree([entry]).problems

    assert len(problems) == 1
    assert f"leaf_hash mismatch (expected {want['expected']}, found {want['found']})" in problems[0]


@pytest.mark.parametrize("case", _cases("checkpoint"), ids=lambda c: c["name"])
def test_an_altered_checkpoint_is_rejected(case: dict[str, Any]) -> None:
    key = VerifierKey.parse(_load()["checkpoint"]["verifier_key"])
    assert case["want_err"] == {"kind": "signature"}
    with pytest.raises(CheckpointProblem, match="does not verify"):
        SignedCheckpoint.parse(case["note"]).verify(key)
