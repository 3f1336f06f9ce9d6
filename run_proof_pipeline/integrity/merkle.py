"""RFC 9162 (Certificate Transparency v2) Merkle tree over a ledger of run roots.

Tree hashing follows RFC 9162 section 2.1.1 (leaf and node hashes are domain-separated by
a 0x00 / 0x01 prefix); proofs are generated per sections 2.1.3.1 and 2.1.4.1 and verified
with the algorithms of sections 2.1.3.2 and 2.1.4.2.  Verification failures raise a
ProofError subclass that says what was expected and what was calculated (the names of
transparency-dev/merkle and of docs/ledger-v1-vectors.json: `expected` is the value the
verifier was given); `ProofError.mismatch` says the same as a Mismatch, stored = the value
given, recomputed = the value calculated, as the ledger reports it (integrity/mismatch.py).

The verifiers accept exactly what transparency-dev/merkle's proof.VerifyInclusion and
proof.VerifyConsistency accept (checked against its own test probes): a leaf hash must be
HASH_SIZE bytes and roots are compared byte for byte; a consistency proof from the empty
tree (old size 0) is rejected whatever the roots, since there is nothing it could prove.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from run_proof_pipeline.errors import RunProofError
from run_proof_pipeline.integrity.mismatch import Mismatch

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "EmptyTreeConsistencyError",
    "HashSizeError",
    "IndexOutOfRangeError",
    "MerkleAccumulator",
    "ProofError",
    "ProofSizeError",
    "RootMismatchError",
    "TreeSizeError",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_leaves",
    "verify_consistency",
    "verify_inclusion",
]

_sha256 = hashlib.sha256
EMPTY_ROOT = _sha256(b"").digest()
HASH_SIZE = 32


class ProofError(RunProofError, ValueError):
    """A Merkle proof did not verify."""

    # What differed, when the failure compares two values (a root, a size): stored = what the
    # verifier was given, recomputed = what it calculated or the proof needs.
    mismatch: Mismatch | None = None


class IndexOutOfRangeError(ProofError):
    def __init__(self, index: int, size: int) -> None:
        super().__init__(f"leaf index {index} is outside a tree of size {size}")
        self.index = index
        self.size = size


class TreeSizeError(ProofError):
    def __init__(self, old_size: int, new_size: int) -> None:
        super().__init__(f"tree size {new_size} cannot extend tree size {old_size}")
        self.old_size = old_size
        self.new_size = new_size


class EmptyTreeConsistencyError(TreeSizeError):
    """A consistency proof from the empty tree: meaningless, so never accepted."""

    def __init__(self, new_size: int) -> None:
        ProofError.__init__(
            self,
            f"a consistency proof from the empty tree (size 0) to tree size {new_size} "
            "proves nothing and is not accepted",
        )
        self.old_size = 0
        self.new_size = new_size


class HashSizeError(ProofError):
    def __init__(self, expected: int, got: int, what: str = "leaf hash") -> None:
        super().__init__(f"wrong {what} size: expected {expected} bytes, got {got}")
        self.expected = expected
        self.got = got
        self.mismatch = Mismatch(f"{what} size", stored=str(got), recomputed=str(expected))


class ProofSizeError(ProofError):
    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"wrong proof size: expected {expected} hashes, got {got}")
        self.expected = expected
        self.got = got
        self.mismatch = Mismatch("proof size", stored=str(got), recomputed=str(expected))


class RootMismatchError(ProofError):
    def __init__(self, expected: bytes, calculated: bytes, what: str = "root") -> None:
        super().__init__(
            f"{what} mismatch: expected {expected.hex()}, calculated {calculated.hex()}"
        )
        self.expected = expected
        self.calculated = calculated
        self.mismatch = Mismatch(what, stored=expected.hex(), recomputed=calculated.hex())


def leaf_hash(entry_canonical: bytes) -> bytes:
    return _sha256(b"\x00" + entry_canonical).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2): the size of the left subtree."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaves(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 section 2.1.1, from leaf hashes; SHA-256("") when empty."""
    acc = MerkleAccumulator()
    for h in leaf_hashes:
        acc.append(h)
    return acc.root()


def _subtree_root(leaf_hashes: Sequence[bytes], start: int, end: int) -> bytes:
    return root_from_leaves(leaf_hashes[start:end])


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]) of RFC 9162 section 2.1.3.1, leaf to root order."""
    n = len(leaf_hashes)
    if not 0 <= index < n:
        raise IndexOutOfRangeError(index, n)
    proof: list[bytes] = []
    start, end = 0, n
    # Walk down from the root, collecting the sibling of each subtree holding the leaf;
    # the RFC lists them bottom-up, hence the reversal.
    while end - start > 1:
        k = _split(end - start)
        if index - start < k:
            proof.append(_subtree_root(leaf_hashes, start + k, end))
            end = start + k
        else:
            proof.append(_subtree_root(leaf_hashes, start, start + k))
            start += k
    proof.reverse()
    return proof


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(old_size, D[n]) of RFC 9162 section 2.1.4.1; empty for old_size 0 or n."""
    n = len(leaf_hashes)
    if not 0 <= old_size <= n:
        raise TreeSizeError(old_size, n)
    if old_size in (0, n):
        return []
    return _subproof(leaf_hashes, 0, n, old_size, True)


def _subproof(
    leaf_hashes: Sequence[bytes], start: int, end: int, m: int, whole: bool
) -> list[bytes]:
    """SUBPROOF(m, D[start:end], whole) of RFC 9162 section 2.1.4.1."""
    n = end - start
    if m == n:
        return [] if whole else [_subtree_root(leaf_hashes, start, end)]
    k = _split(n)
    if m <= k:
        return [
            *_subproof(leaf_hashes, start, start + k, m, whole),
            _subtree_root(leaf_hashes, start + k, end),
        ]
    return [
        *_subproof(leaf_hashes, start + k, end, m - k, False),
        _subtree_root(leaf_hashes, start, start + k),
    ]


def _inclusion_proof_size(index: int, size: int) -> int:
    # Levels where the leaf's path and the last leaf's path differ need a sibling each
    # ("inner"); above them the path runs along the right border, where a left sibling
    # exists exactly for each set bit of the remaining index ("border").
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    return inner + border


def _consistency_proof_size(old_size: int, new_size: int) -> int:
    # The proof is the inclusion path of the old tree's last leaf, minus the levels inside
    # the largest complete subtree ending there (its root is one hash, implied when that
    # subtree is the whole old tree).
    inner = ((old_size - 1) ^ (new_size - 1)).bit_length()
    border = bin((old_size - 1) >> inner).count("1")
    shift = (old_size & -old_size).bit_length() - 1
    seed = 0 if old_size == 1 << shift else 1
    return seed + (inner - shift) + border


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 section 2.1.3.2: does `proof` put `leaf_hash` at `index` under `root`?"""
    if not 0 <= index < size:
        raise IndexOutOfRangeError(index, size)
    if len(leaf_hash) != HASH_SIZE:
        raise HashSizeError(HASH_SIZE, len(leaf_hash))
    expected_size = _inclusion_proof_size(index, size)
    if len(proof) != expected_size:
        raise ProofSizeError(expected_size, len(proof))
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofSizeError(expected_size, len(proof))
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofSizeError(expected_size, len(proof))
    if r != root:
        raise RootMismatchError(root, r)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 section 2.1.4.2: is the tree `new_root` an append-only extension of `old_root`?

    Requires 0 < old_size <= new_size.  Equal sizes need an empty proof and equal roots."""
    if not 0 <= old_size <= new_size:
        raise TreeSizeError(old_size, new_size)
    if old_size == 0:
        raise EmptyTreeConsistencyError(new_size)
    if old_size == new_size:
        if proof:
            raise ProofSizeError(0, len(proof))
        if old_root != new_root:
            raise RootMismatchError(old_root, new_root, "new root")
        return
    expected_size = _consistency_proof_size(old_size, new_size)
    if len(proof) != expected_size:
        raise ProofSizeError(expected_size, len(proof))
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)  # the old tree is a complete subtree: its root is implied
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofSizeError(expected_size, len(proof))
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofSizeError(expected_size, len(proof))
    if fr != old_root:
        raise RootMismatchError(old_root, fr, "old root")
    if sr != new_root:
        raise RootMismatchError(new_root, sr, "new root")


class MerkleAccumulator:
    """Append-only tree head in O(log n) memory: one root per complete subtree, as the binary
    digits of the size dictate (a "compact range" covering [0, size))."""

    __slots__ = ("_size", "_stack")

    def __init__(self) -> None:
        self._size = 0
        self._stack: list[bytes] = []

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf: bytes) -> None:
        """Add the next leaf hash (a leaf_hash() result, not raw entry data)."""
        h = leaf
        size = self._size
        # Each trailing one bit of the old size is a complete subtree to merge with.
        while size & 1:
            h = node_hash(self._stack.pop(), h)
            size >>= 1
        self._stack.append(h)
        self._size += 1

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        r = self._stack[-1]
        for h in reversed(self._stack[:-1]):
            r = node_hash(h, r)
        return r
