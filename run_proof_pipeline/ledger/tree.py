"""The ledger as a Merkle tree, recomputed from entry fields (never from stored hashes).

Pure: given the entries in seq order, it finds what makes them unusable as a log (a gap in
the numbering, a stored leaf hash that does not match its fields) and answers roots and
RFC 9162 proofs. Whether it extends an earlier tree (a signed checkpoint's) comes with what
differs when it does not (`consistency_mismatch`, a Mismatch: integrity/mismatch.py), so a
refused checkpoint or a failed audit names the stored and the recomputed root.
"""

from __future__ import annotations

from collections.abc import Sequence

from run_proof_pipeline.integrity.merkle import (
    EMPTY_ROOT,
    ProofError,
    consistency_proof,
    inclusion_proof,
    root_from_leaves,
    verify_consistency,
)
from run_proof_pipeline.integrity.mismatch import Mismatch
from run_proof_pipeline.ledger.entry import LedgerEntry

__all__ = ["LedgerTree"]


class LedgerTree:
    def __init__(self, entries: Sequence[LedgerEntry]) -> None:
        self.entries = list(entries)
        self.leaves = [e.leaf() for e in self.entries]
        self.problems: list[str] = []
        for position, entry in enumerate(self.entries):
            if entry.seq != position + 1:
                self.problems.append(
                    f"ledger entry {position + 1}: numbering departs from 1..n "
                    f"(found seq {entry.seq}): an entry was removed or inserted"
                )
                break
        for entry, leaf in zip(self.entries, self.leaves, strict=True):
            if entry.leaf_hash is not None and entry.leaf_hash != leaf.hex():
                edited = Mismatch("leaf_hash", stored=entry.leaf_hash, recomputed=leaf.hex())
                self.problems.append(
                    f"{entry.names_run()}: {edited.text()}: its fields were edited"
                )

    @property
    def size(self) -> int:
        return len(self.leaves)

    def root(self, size: int | None = None) -> bytes:
        return root_from_leaves(self.leaves if size is None else self.leaves[:size])

    def inclusion(self, index: int, size: int) -> list[bytes]:
        return inclusion_proof(self.leaves[:size], index)

    def consistency(self, old_size: int) -> list[bytes]:
        return consistency_proof(self.leaves, old_size)

    def extends(self, old_size: int, old_root: bytes) -> bool:
        """True when this ledger is a consistent extension of the tree (old_size, old_root)."""
        return self.consistency_mismatch(old_size, old_root) is None

    def consistency_mismatch(self, old_size: int, old_root: bytes) -> Mismatch | None:
        """None when this ledger is a consistent extension of the tree (old_size, old_root),
        shown by an RFC 9162 consistency proof computed from the current entries; else what
        differs, stored = the old tree's (e.g. the root a checkpoint signed), recomputed =
        this ledger's (hashes in hex)."""
        if old_size > self.size:
            return Mismatch("tree size", stored=str(old_size), recomputed=str(self.size))
        if old_size == 0:
            # No proof exists from the empty tree (the reference rejects one); every tree
            # extends it, provided the old root really is the empty tree's.
            if old_root == EMPTY_ROOT:
                return None
            return Mismatch("old root", stored=old_root.hex(), recomputed=EMPTY_ROOT.hex())
        try:
            verify_consistency(
                old_size, self.size, old_root, self.root(), self.consistency(old_size)
            )
        except ProofError as exc:
            # The proof is this ledger's own, so it is the old root that differs (merkle
            # names it "old root"); any other refusal fails closed naming the roots too.
            recomputed = self.root(old_size).hex()
            return exc.mismatch or Mismatch("old root", old_root.hex(), recomputed)
        return None
