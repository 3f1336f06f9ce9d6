"""docs/ledger-v1-vectors.json: entry canonical forms, leaf hashes, RFC 9162 roots and proofs,
and a signed checkpoint note, recomputed here in Python and (leaves) in SQL by the migration's
run_proof_ledger_leaf(), an independent implementation of the same canonical form."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from run_proof_pipeline.integrity.merkle import (
    EmptyTreeConsistencyError,
    consistency_proof,
    inclusion_proof,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)
from run_proof_pipeline.ledger.checkpoint import Checkpoint, SignedCheckpoint, sign_checkpoint
from run_proof_pipeline.ledger.entry import LedgerEntry
from run_proof_pipeline.ledger.keys import SigningKey, VerifierKey
from run_proof_pipeline.settings import DatabaseUrl

VECTORS = Path(__file__).resolve().parents[1] / "docs" / "ledger-v1-vectors.json"


def _load() -> dict[str, Any]:
    return json.loads(VECTORS.read_text(encoding="utf-8"))


def _entries(data: dict[str, Any]) -> list[LedgerEntry]:
    return [LedgerEntry(seq=i + 1, **e["entry"]) for i, e in enumerate(data["entries"])]


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
