"""Write docs/ledger-v1-vectors.json from the inputs below, from first principles.

    .venv/bin/python scripts/make_ledger_vectors.py [--check]

Deterministic: running it again writes the same bytes, and `--check` exits 1 when the file
differs from what it would write.

Independent of the project's ledger code on purpose (docs/ledger-v1.md is the specification;
nothing here imports run_proof_pipeline): entries are canonicalized with the `rfc8785`
package, hashed with hashlib, the RFC 9162 tree, its proofs and their verification are
written out below from sections 2.1.1-2.1.4, and the checkpoint is signed with
`cryptography`'s Ed25519 directly. run_proof_pipeline_tests/test_ledger_vectors.py checks
that the project's code (and the database's run_proof_ledger_leaf()) reproduce every value,
and that it rejects every case of the `invalid` section as stated there.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

VECTORS = Path(__file__).resolve().parents[1] / "docs" / "ledger-v1-vectors.json"

ENTRIES: list[tuple[str, dict[str, Any]]] = [
    (
        "plain seal",
        {
            "kind": "seal",
            "tenant_id": "tenant-a",
            "run_id": "run-1",
            "trace_id": "trace-run-1",
            "chain_length": 3,
            "root_hash": "a" * 64,
            "recorded_at": "2026-02-09T10:00:00.000001Z",
        },
    ),
    (
        "zero steps",
        {
            "kind": "seal",
            "tenant_id": "tenant-a",
            "run_id": "run-empty",
            "trace_id": "trace-run-empty",
            "chain_length": 0,
            "root_hash": "b" * 64,
            "recorded_at": "2026-02-09T10:00:01.500000Z",
        },
    ),
    (
        "quotes, backslash and controls",
        {
            "kind": "seal",
            "tenant_id": "t'\";%",
            "run_id": 'r"\\\n\t\x01\x1f\x7f',
            "trace_id": "trace-q",
            "chain_length": 1,
            "root_hash": "c" * 64,
            "recorded_at": "2026-02-09T11:00:00.000000Z",
        },
    ),
    (
        "unicode and astral",
        {
            "kind": "seal",
            "tenant_id": "tenant-é",
            "run_id": "run-✓-\U0001f600-\ue000",
            "trace_id": "trace-ü",
            "chain_length": 12,
            "root_hash": "d" * 64,
            "recorded_at": "2026-02-09T12:30:00.123456Z",
        },
    ),
    (
        "adoption kind",
        {
            "kind": "adoption",
            "tenant_id": "tenant-b",
            "run_id": "legacy-7",
            "trace_id": "trace-legacy-7",
            "chain_length": 5,
            "root_hash": "e" * 64,
            "recorded_at": "2026-02-10T00:00:00.000000Z",
        },
    ),
    (
        "tombstone kind",
        {
            "kind": "tombstone",
            "tenant_id": "tenant-b",
            "run_id": "legacy-7",
            "trace_id": "trace-legacy-7",
            "chain_length": 5,
            "root_hash": "e" * 64,
            "recorded_at": "2026-02-11T00:00:00.000000Z",
        },
    ),
    (
        "large chain length",
        {
            "kind": "seal",
            "tenant_id": "tenant-c",
            "run_id": "run-big",
            "trace_id": "trace-big",
            "chain_length": 1000000,
            "root_hash": "f" * 64,
            "recorded_at": "2026-02-12T23:59:59.999999Z",
        },
    ),
]
INCLUSION_SIZES = (1, 4, 5, 7)  # every index of each
CONSISTENCY_NEW_SIZES = (4, 7)  # every old size 0..new of each
SIGNING_SEED = bytes(range(32))  # TEST KEY ONLY
ORIGIN = "run-proof.local/vectors"


# --- entry and leaf (docs/ledger-v1.md "Entry") ----------------------------------------------


def H(data: bytes) -> bytes:  # the specification's name
    return hashlib.sha256(data).digest()


def canonical(entry: dict[str, Any]) -> bytes:
    return rfc8785.dumps({"v": 1, **entry})


def leaf_of(entry: dict[str, Any]) -> bytes:
    return H(b"\x00" + canonical(entry))


def node(left: bytes, right: bytes) -> bytes:
    return H(b"\x01" + left + right)


# --- RFC 9162 section 2.1: tree, proofs, verification ----------------------------------------


def split(n: int) -> int:
    """k: the largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return H(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = split(len(leaves))
    return node(mth(leaves[:k]), mth(leaves[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]), section 2.1.3.1."""
    n = len(leaves)
    if n == 1:
        return []
    k = split(n)
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b), section 2.1.4.1."""
    n = len(leaves)
    if m == n:
        return [] if whole else [mth(leaves)]
    k = split(n)
    if m <= k:
        return [*subproof(m, leaves[:k], whole), mth(leaves[k:])]
    return [*subproof(m - k, leaves[k:], False), mth(leaves[:k])]


def consistency(m: int, leaves: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) for 0 < m <= n; nothing proves consistency with the empty tree."""
    return [] if m == 0 else subproof(m, leaves, True)


def inclusion_root(index: int, size: int, leaf: bytes, proof: list[bytes]) -> bytes | None:
    """The root section 2.1.3.2 calculates, or None where it fails before comparing."""
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


def consistency_roots(
    first: int, second: int, first_hash: bytes, proof: list[bytes]
) -> tuple[bytes, bytes] | None:
    """(old root, new root) that section 2.1.4.2 calculates, or None where it fails first."""
    if first & (first - 1) == 0:
        proof = [first_hash, *proof]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return (fr, sr) if sn == 0 else None


# --- checkpoint (docs/ledger-v1.md "Checkpoint") ---------------------------------------------


def checkpoint(leaves: list[bytes]) -> dict[str, Any]:
    private = Ed25519PrivateKey.from_private_bytes(SIGNING_SEED)
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_id = H(ORIGIN.encode() + b"\n" + b"\x01" + public)[:4]
    root = base64.b64encode(mth(leaves)).decode()
    body = f"{ORIGIN}\n{len(leaves)}\n{root}\n"
    signature = base64.b64encode(key_id + private.sign(body.encode())).decode()
    return {
        "comment": "TEST KEY ONLY: the private key is published here so the signature is "
        "reproducible",
        "signing_key": f"PRIVATE+KEY+{ORIGIN}+{key_id.hex()}+"
        + base64.b64encode(b"\x01" + SIGNING_SEED).decode(),
        "verifier_key": f"{ORIGIN}+{key_id.hex()}+" + base64.b64encode(b"\x01" + public).decode(),
        "key_id": key_id.hex(),
        "origin": ORIGIN,
        "size": len(leaves),
        "root_base64": root,
        "body": body,
        "note": f"{body}\n— {ORIGIN} {signature}\n",
    }


# --- the invalid cases: what a verifier must reject, and what it calculates ------------------


def flip(data: bytes, at: int = 0) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def _inclusion_case(
    name: str, index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes
) -> dict[str, Any]:
    case: dict[str, Any] = {
        "name": name,
        "index": index,
        "size": size,
        "leaf_hash": leaf.hex(),
        "proof": [p.hex() for p in proof],
        "root": root.hex(),
    }
    if not 0 <= index < size:
        case["want_err"] = {"kind": "index_out_of_range", "index": index, "size": size}
    elif len(leaf) != 32:
        case["want_err"] = {"kind": "hash_size", "expected": 32, "got": len(leaf)}
    elif len(proof) != len(path(index, [b""] * size)):
        expected = len(path(index, [b""] * size))
        case["want_err"] = {"kind": "proof_size", "expected": expected, "got": len(proof)}
    else:
        calculated = inclusion_root(index, size, leaf, proof)
        assert calculated is not None and calculated != root, name
        case["want_err"] = {
            "kind": "root_mismatch",
            "what": "root",
            "expected": root.hex(),
            "calculated": calculated.hex(),
        }
    return case


def _consistency_case(
    name: str, old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> dict[str, Any]:
    case: dict[str, Any] = {
        "name": name,
        "old_size": old,
        "new_size": new,
        "old_root": old_root.hex(),
        "new_root": new_root.hex(),
        "proof": [p.hex() for p in proof],
    }
    expected_size = len(consistency(old, [b""] * new)) if 0 < old <= new else None
    if old > new:
        case["want_err"] = {"kind": "tree_size", "old_size": old, "new_size": new}
    elif len(proof) != expected_size:
        case["want_err"] = {"kind": "proof_size", "expected": expected_size, "got": len(proof)}
    else:
        roots = consistency_roots(old, new, old_root, proof)
        assert roots is not None, name
        # Old root first, then the new one (the first that differs is the one reported).
        for what, given, calculated in (
            ("old root", old_root, roots[0]),
            ("new root", new_root, roots[1]),
        ):
            if given != calculated:
                case["want_err"] = {
                    "kind": "root_mismatch",
                    "what": what,
                    "expected": given.hex(),
                    "calculated": calculated.hex(),
                }
                break
        assert "want_err" in case, name
    return case


def invalid(leaves: list[bytes], note: str) -> dict[str, Any]:
    roots = {n: mth(leaves[:n]) for n in range(len(leaves) + 1)}
    good = path(2, leaves)
    edited = {**ENTRIES[0][1], "chain_length": 4}
    body, signature_line = note.split("\n\n")
    name, b64 = signature_line.rstrip("\n").split(" ")[1:]
    blob = base64.b64decode(b64)
    bad_signature = f"{body}\n\n— {name} {base64.b64encode(flip(blob, 10)).decode()}\n"
    bad_size = note.replace(f"\n{len(leaves)}\n", f"\n{len(leaves) - 1}\n", 1)
    c37 = consistency(3, leaves)
    return {
        "comment": "Each case must be rejected; want_err names the failure and, for a root, "
        "the root the verifier was given (expected) and the one it calculated.",
        "entries": [
            {
                "name": "a field edited after the leaf was stored (chain_length 3 -> 4)",
                "entry": edited,
                "stored_leaf_hash": leaf_of(ENTRIES[0][1]).hex(),
                "want_err": {
                    "kind": "leaf_hash_mismatch",
                    "expected": leaf_of(edited).hex(),
                    "found": leaf_of(ENTRIES[0][1]).hex(),
                },
            }
        ],
        "inclusion": [
            _inclusion_case(
                "a proof hash with a flipped byte",
                2,
                7,
                leaves[2],
                [flip(good[0]), *good[1:]],
                roots[7],
            ),
            _inclusion_case(
                "a leaf with a flipped byte", 2, 7, flip(leaves[2], 31), good, roots[7]
            ),
            _inclusion_case("another index's proof", 2, 7, leaves[2], path(3, leaves), roots[7]),
            _inclusion_case("the root of another size", 2, 7, leaves[2], good, roots[6]),
            _inclusion_case("a proof one hash short", 2, 7, leaves[2], good[:-1], roots[7]),
            _inclusion_case("a proof one hash long", 2, 7, leaves[2], [*good, good[0]], roots[7]),
            _inclusion_case("a leaf hash of 31 bytes", 2, 7, leaves[2][:31], good, roots[7]),
            _inclusion_case("an index outside the tree", 7, 7, leaves[2], good, roots[7]),
        ],  # fmt: skip
        "consistency": [
            _consistency_case(
                "a proof hash with a flipped byte",
                3,
                7,
                roots[3],
                roots[7],
                [flip(c37[0]), *c37[1:]],
            ),
            _consistency_case(
                "an old root with a flipped byte", 3, 7, flip(roots[3]), roots[7], c37
            ),
            _consistency_case(
                "a new root with a flipped byte", 3, 7, roots[3], flip(roots[7]), c37
            ),
            _consistency_case("a proof one hash short", 3, 7, roots[3], roots[7], c37[:-1]),
            _consistency_case("a shrunk tree", 7, 3, roots[7], roots[3], []),
        ],  # fmt: skip
        "checkpoint": [
            {
                "name": "a signature with a flipped byte",
                "note": bad_signature,
                "want_err": {"kind": "signature"},
            },
            {
                "name": "the tree size changed under the signature",
                "note": bad_size,
                "want_err": {"kind": "signature"},
            },
        ],  # fmt: skip
    }


# --- the document ----------------------------------------------------------------------------


def build() -> str:
    leaves = [leaf_of(entry) for _, entry in ENTRIES]
    signed = checkpoint(leaves)
    document = {
        "format": "run-proof ledger v1 vectors (docs/ledger-v1.md)",
        "entries": [
            {
                "name": name,
                "entry": entry,
                "canonical": canonical(entry).decode(),
                "leaf_hash": leaf.hex(),
            }
            for (name, entry), leaf in zip(ENTRIES, leaves, strict=True)
        ],
        "tree": {
            "roots": [mth(leaves[:n]).hex() for n in range(len(leaves) + 1)],
            "inclusion": [
                {"index": m, "size": n, "proof": [p.hex() for p in path(m, leaves[:n])]}
                for n in INCLUSION_SIZES
                for m in range(n)
            ],
            "consistency": [
                {
                    "old_size": m,
                    "new_size": n,
                    "proof": [p.hex() for p in consistency(m, leaves[:n])],
                }
                for n in CONSISTENCY_NEW_SIZES
                for m in range(n + 1)
            ],  # fmt: skip
        },
        "checkpoint": signed,
        "invalid": invalid(leaves, signed["note"]),
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = build()
    if "--check" in argv:
        current = VECTORS.read_text(encoding="utf-8") if VECTORS.exists() else None
        if current != text:
            print(f"{VECTORS} is not what scripts/make_ledger_vectors.py writes", file=sys.stderr)
            return 1
        return 0
    VECTORS.write_text(text, encoding="utf-8")
    print(f"wrote {VECTORS} ({len(ENTRIES)} entries)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
