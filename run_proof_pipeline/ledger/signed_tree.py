"""The leaves of a signed checkpoint's tree, rebuilt once per checkpoint and process.

Leaves that hash to a signed head *are* that tree's leaves (SHA-256 collision resistance),
whatever the database says later. So once the ledger's first `size` entries were shown to
hash to the signed root, each run's check is a lookup: is its current entry's leaf the one at
its index? That keeps per-run proofs O(1) after one O(n) rebuild, instead of O(n) each.
"""

from __future__ import annotations

import threading
from pathlib import Path

from run_proof_pipeline.integrity.merkle import root_from_leaves

__all__ = ["remember_signed_leaves", "signed_leaves"]

_Key = tuple[Path, int, bytes]
_cache: dict[_Key, tuple[bytes, ...]] = {}
_lock = threading.Lock()
_KEEP = 4  # checkpoints remembered; older ones are rebuilt if asked for again


def signed_leaves(path: Path, size: int, root: bytes) -> tuple[bytes, ...] | None:
    with _lock:
        return _cache.get((path, size, root))


def remember_signed_leaves(
    path: Path, size: int, root: bytes, leaves: list[bytes]
) -> tuple[bytes, ...] | None:
    """Keep `leaves` if they are exactly the signed tree (size and root); else None."""
    if len(leaves) != size or root_from_leaves(leaves) != root:
        return None
    kept = tuple(leaves)
    with _lock:
        if len(_cache) >= _KEEP:
            _cache.pop(next(iter(_cache)))
        _cache[(path, size, root)] = kept
    return kept
