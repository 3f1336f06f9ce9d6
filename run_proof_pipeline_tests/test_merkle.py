"""RFC 9162 Merkle tree: known answers, every proof for small trees, and mutated proofs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest

from run_proof_pipeline.integrity.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    EmptyTreeConsistencyError,
    HashSizeError,
    IndexOutOfRangeError,
    MerkleAccumulator,
    ProofError,
    ProofSizeError,
    RootMismatchError,
    TreeSizeError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)

# The 8-leaf tree of the RFC 6962 reference test data (also transparency-dev/merkle's).
LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    bytes(range(0x60, 0x70)),
]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def reference_root(entries: list[bytes]) -> bytes:
    """MTH straight from RFC 9162 section 2.1.1, recursive, from raw entries."""
    if not entries:
        return hashlib.sha256(b"").digest()
    if len(entries) == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = 1
    while k * 2 < len(entries):
        k *= 2
    left, right = reference_root(entries[:k]), reference_root(entries[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


def entries(n: int) -> list[bytes]:
    return [b"run-root-%d" % i for i in range(n)]


def hashes(n: int) -> list[bytes]:
    return [leaf_hash(e) for e in entries(n)]


SIZES = range(1, 21)


# --- known answers ----------------------------------------------------------------------


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert (
        node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )
    assert EMPTY_ROOT == hashlib.sha256(b"").digest()


@pytest.mark.parametrize("size", range(len(ROOTS)))
def test_reference_tree_roots(size: int) -> None:
    leaf_hashes = [leaf_hash(e) for e in LEAVES[:size]]
    assert root_from_leaves(leaf_hashes).hex() == ROOTS[size]
    assert reference_root(LEAVES[:size]).hex() == ROOTS[size]
    acc = MerkleAccumulator()
    for h in leaf_hashes:
        acc.append(h)
    assert acc.size == size
    assert acc.root().hex() == ROOTS[size]


def test_accumulator_matches_reference_root_at_every_size() -> None:
    acc = MerkleAccumulator()
    data = entries(300)
    assert acc.root() == reference_root([])
    for i, entry in enumerate(data):
        acc.append(leaf_hash(entry))
        assert acc.root() == reference_root(data[: i + 1]), i + 1


def test_accumulator_memory_is_logarithmic() -> None:
    acc = MerkleAccumulator()
    for i in range(1023):
        acc.append(leaf_hash(b"%d" % i))
    assert len(acc._stack) == 10  # 1023 = 0b1111111111: one complete subtree per bit
    acc.append(leaf_hash(b"x"))
    assert len(acc._stack) == 1


# --- every proof for sizes 1..20 verifies ----------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_every_inclusion_proof_verifies(size: int) -> None:
    leaf_hashes = hashes(size)
    root = reference_root(entries(size))
    assert root_from_leaves(leaf_hashes) == root
    for index in range(size):
        verify_inclusion(index, size, leaf_hashes[index], inclusion_proof(leaf_hashes, index), root)


@pytest.mark.parametrize("new_size", SIZES)
def test_every_consistency_proof_verifies(new_size: int) -> None:
    leaf_hashes = hashes(new_size)
    new_root = reference_root(entries(new_size))
    for old_size in range(1, new_size + 1):
        old_root = reference_root(entries(old_size))
        proof = consistency_proof(leaf_hashes, old_size)
        verify_consistency(old_size, new_size, old_root, new_root, proof)


def test_inclusion_proof_of_a_single_leaf_tree_is_empty() -> None:
    assert inclusion_proof(hashes(1), 0) == []
    verify_inclusion(0, 1, hashes(1)[0], [], reference_root(entries(1)))


def test_consistency_proofs_of_equal_or_empty_trees_are_empty() -> None:
    assert consistency_proof(hashes(5), 5) == []
    assert consistency_proof(hashes(5), 0) == []


def test_inclusion_proof_of_a_missing_leaf_is_refused() -> None:
    with pytest.raises(IndexOutOfRangeError):
        inclusion_proof(hashes(4), 4)
    with pytest.raises(TreeSizeError):
        consistency_proof(hashes(4), 5)


# --- mutated inclusion proofs are rejected -------------------------------------------------------


def _flip(h: bytes, at: int = 0) -> bytes:
    return h[:at] + bytes([h[at] ^ 0x01]) + h[at + 1 :]


def _inclusion_cases() -> list[tuple[int, int]]:
    return [(index, size) for size in SIZES for index in range(size)]


@pytest.mark.parametrize(("index", "size"), _inclusion_cases())
def test_mutated_inclusion_proofs_are_rejected(index: int, size: int) -> None:
    leaf_hashes = hashes(size)
    root = root_from_leaves(leaf_hashes)
    leaf = leaf_hashes[index]
    proof = inclusion_proof(leaf_hashes, index)

    def rejected(check: Callable[[], None]) -> ProofError:
        with pytest.raises(ProofError) as info:
            check()
        return info.value

    # Wrong leaf, wrong root: the calculated root differs and both are reported.
    error = rejected(lambda: verify_inclusion(index, size, _flip(leaf), proof, root))
    assert isinstance(error, RootMismatchError)
    assert error.expected == root and error.calculated != root
    assert root.hex() in str(error) and error.calculated.hex() in str(error)
    error = rejected(lambda: verify_inclusion(index, size, leaf, proof, _flip(root, 31)))
    assert isinstance(error, RootMismatchError) and error.calculated == root
    # Wrong index and wrong size.
    for wrong_index in {index - 1, index + 1, index ^ 1} - {index}:
        if 0 <= wrong_index < size:
            rejected(lambda i=wrong_index: verify_inclusion(i, size, leaf, proof, root))
    rejected(lambda: verify_inclusion(size, size, leaf, proof, root))
    rejected(lambda: verify_inclusion(-1, size, leaf, proof, root))
    # A wrong size whose path has another length is caught by the size check.  (With a path
    # of the same shape the claim is simply about another tree; its root would differ.)
    for wrong_size in (size - 1, size + 1, 2 * size):
        if wrong_size > index and len(inclusion_proof(hashes(wrong_size), index)) != len(proof):
            error = rejected(lambda s=wrong_size: verify_inclusion(index, s, leaf, proof, root))
            assert isinstance(error, ProofSizeError)
    # Each element flipped, an element added or removed.
    for i in range(len(proof)):
        mutated = [*proof[:i], _flip(proof[i], 7), *proof[i + 1 :]]
        assert isinstance(
            rejected(lambda m=mutated: verify_inclusion(index, size, leaf, m, root)),
            RootMismatchError,
        )
    for extra in ([*proof, leaf], [leaf, *proof], [*proof, root]):
        error = rejected(lambda m=extra: verify_inclusion(index, size, leaf, m, root))
        assert isinstance(error, ProofSizeError) and error.expected == len(proof)
    if proof:
        for shorter in (proof[:-1], proof[1:]):
            error = rejected(lambda m=shorter: verify_inclusion(index, size, leaf, m, root))
            assert isinstance(error, ProofSizeError)


# --- mutated consistency proofs are rejected -----------------------------------------------------


def _consistency_cases() -> list[tuple[int, int]]:
    return [(old, new) for new in SIZES for old in range(1, new)]


@pytest.mark.parametrize(("old_size", "new_size"), _consistency_cases())
def test_mutated_consistency_proofs_are_rejected(old_size: int, new_size: int) -> None:
    leaf_hashes = hashes(new_size)
    old_root = root_from_leaves(leaf_hashes[:old_size])
    new_root = root_from_leaves(leaf_hashes)
    proof = consistency_proof(leaf_hashes, old_size)
    assert proof

    def rejected(check: Callable[[], None]) -> ProofError:
        with pytest.raises(ProofError) as info:
            check()
        return info.value

    error = rejected(
        lambda: verify_consistency(old_size, new_size, _flip(old_root), new_root, proof)
    )
    assert isinstance(error, (RootMismatchError, ProofSizeError))
    error = rejected(
        lambda: verify_consistency(old_size, new_size, old_root, _flip(new_root), proof)
    )
    assert isinstance(error, RootMismatchError)
    assert error.expected == _flip(new_root) and error.calculated == new_root
    for i in range(len(proof)):
        mutated = [*proof[:i], _flip(proof[i], 5), *proof[i + 1 :]]
        rejected(lambda m=mutated: verify_consistency(old_size, new_size, old_root, new_root, m))
    for extra in ([*proof, new_root], [old_root, *proof]):
        error = rejected(
            lambda m=extra: verify_consistency(old_size, new_size, old_root, new_root, m)
        )
        assert isinstance(error, ProofSizeError) and error.expected == len(proof)
    for shorter in (proof[:-1], proof[1:]):
        rejected(lambda m=shorter: verify_consistency(old_size, new_size, old_root, new_root, m))
    # Wrong sizes: a shrinking tree, or sizes that the proof was not made for.
    rejected(lambda: verify_consistency(new_size, old_size, new_root, old_root, proof))
    for wrong_old in (old_size - 1, old_size + 1):
        if 0 < wrong_old < new_size:
            wrong_old_root = root_from_leaves(leaf_hashes[:wrong_old])
            rejected(
                lambda w=wrong_old, r=wrong_old_root: verify_consistency(
                    w, new_size, r, new_root, proof
                )
            )
    bigger = hashes(new_size + 1)
    rejected(
        lambda: verify_consistency(
            old_size, new_size + 1, old_root, root_from_leaves(bigger), proof
        )
    )


def test_equal_sizes_need_equal_roots_and_an_empty_proof() -> None:
    root = root_from_leaves(hashes(5))
    verify_consistency(5, 5, root, root, [])
    with pytest.raises(RootMismatchError):
        verify_consistency(5, 5, root, _flip(root), [])
    with pytest.raises(ProofSizeError):
        verify_consistency(5, 5, root, root, [root])


# --- class 11 regressions: no more lenient than transparency-dev/merkle -------------------------


def test_inclusion_rejects_a_leaf_hash_of_the_wrong_length() -> None:
    # Was accepted: at size 1 the (empty) proof makes the root the leaf hash itself, so a
    # 0-byte leaf "verified" under a 0-byte root.  The reference checks the leaf hash size.
    with pytest.raises(HashSizeError) as info:
        verify_inclusion(0, 1, b"", [], b"")
    assert (info.value.expected, info.value.got) == (HASH_SIZE, 0)
    short = hashes(1)[0][:31]
    with pytest.raises(HashSizeError):
        verify_inclusion(0, 1, short, [], short)
    with pytest.raises(HashSizeError):
        verify_inclusion(0, 1, hashes(1)[0] + b"\x00", [], hashes(1)[0] + b"\x00")
    leaf_hashes = hashes(3)
    with pytest.raises(HashSizeError):
        verify_inclusion(2, 3, b"", inclusion_proof(leaf_hashes, 2), root_from_leaves(leaf_hashes))
    # Roots are compared byte for byte: a truncated root never matches.
    with pytest.raises(RootMismatchError):
        verify_inclusion(0, 1, hashes(1)[0], [], hashes(1)[0][:31])


@pytest.mark.parametrize(
    ("new_size", "old_root", "new_root"),
    [
        (1, b"garbage12byt", b"garbage12byt"),
        (0, b"garbage12byt", b"garbage12byt"),
        (1, EMPTY_ROOT, reference_root(entries(1))),
        (0, EMPTY_ROOT, EMPTY_ROOT),
        (5, EMPTY_ROOT, reference_root(entries(5))),
    ],
)
def test_consistency_from_the_empty_tree_is_rejected(
    new_size: int, old_root: bytes, new_root: bytes
) -> None:
    # Was accepted whatever the old root (12 garbage bytes for 0 -> 1 and 0 -> 0); the
    # reference rejects every proof from size 0 as meaningless, even with the true roots.
    with pytest.raises(EmptyTreeConsistencyError) as info:
        verify_consistency(0, new_size, old_root, new_root, [])
    assert isinstance(info.value, TreeSizeError)
    assert (info.value.old_size, info.value.new_size) == (0, new_size)
    with pytest.raises(EmptyTreeConsistencyError):
        verify_consistency(0, new_size, old_root, new_root, [new_root])


def test_equal_sizes_compare_roots_exactly_as_the_reference_does() -> None:
    # The reference returns root1 for size1 == size2 and compares it with root2: equal bytes
    # of any length pass, different ones fail.
    verify_consistency(1, 1, b"garbage12byt", b"garbage12byt", [])
    with pytest.raises(RootMismatchError):
        verify_consistency(1, 1, b"garbage12byt", b"garbage12byu", [])


def test_proof_errors_are_value_errors() -> None:
    for cls in (
        EmptyTreeConsistencyError,
        HashSizeError,
        IndexOutOfRangeError,
        ProofSizeError,
        RootMismatchError,
        TreeSizeError,
    ):
        assert issubclass(cls, ProofError) and issubclass(cls, ValueError)
