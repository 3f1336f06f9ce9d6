"""Hash-chain v1 arithmetic: genesis, step, head and root hashes (spec section "Chain")."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from run_proof_pipeline.integrity.canonical import canonicalize

__all__ = [
    "ChainHashes",
    "compute_chain",
    "genesis_hash",
    "is_hex_hash",
    "root_hash",
    "sha256",
    "sha256_hex",
    "step_hash",
]

_sha256 = hashlib.sha256
_HEX_HASH = re.compile(r"[0-9a-f]{64}")


def sha256(data: bytes) -> bytes:
    return _sha256(data).digest()


def sha256_hex(data: bytes) -> str:
    return _sha256(data).hexdigest()


def is_hex_hash(value: object) -> TypeGuard[str]:
    """True for exactly 64 lowercase hex characters, the only stored form of a hash."""
    return type(value) is str and len(value) == 64 and _HEX_HASH.fullmatch(value) is not None


def genesis_hash(header: dict[str, Any], *, strict: bool = True) -> bytes:
    """H(C(header)) for a header record built by records.header_record()."""
    return _sha256(canonicalize(header, strict=strict)).digest()


def step_hash(prev: bytes, step_canonical: bytes) -> bytes:
    """H(prev || C(step)); `prev` is the raw 32-byte previous hash (or the genesis hash)."""
    return _sha256(prev + step_canonical).digest()


def root_hash(head: bytes, seal: dict[str, Any], *, strict: bool = True) -> bytes:
    """H(head || C(seal)) for a seal record built by records.seal_record()."""
    return _sha256(head + canonicalize(seal, strict=strict)).digest()


@dataclass(frozen=True)
class ChainHashes:
    """Every hash of one trace (hex) and the canonical strings they were computed from."""

    genesis_hash: str
    step_hashes: tuple[str, ...]
    head_hash: str
    root_hash: str | None
    canonical_header: str
    canonical_steps: tuple[str, ...]
    canonical_seal: str | None


def compute_chain(
    header: dict[str, Any],
    steps: Sequence[dict[str, Any]],
    seal: dict[str, Any] | None,
    *,
    strict: bool = True,
) -> ChainHashes:
    """The whole chain of a trace from its records (header, steps in order, optional seal)."""
    canonical_header = canonicalize(header, strict=strict)
    head = _sha256(canonical_header).digest()
    genesis_hex = head.hex()
    hashes: list[str] = []
    canonical_steps: list[str] = []
    for step in steps:
        canonical = canonicalize(step, strict=strict)
        head = step_hash(head, canonical)
        hashes.append(head.hex())
        canonical_steps.append(canonical.decode())
    canonical_seal: bytes | None = None
    root_hex: str | None = None
    if seal is not None:
        canonical_seal = canonicalize(seal, strict=strict)
        root_hex = _sha256(head + canonical_seal).hexdigest()
    return ChainHashes(
        genesis_hash=genesis_hex,
        step_hashes=tuple(hashes),
        head_hash=head.hex(),
        root_hash=root_hex,
        canonical_header=canonical_header.decode(),
        canonical_steps=tuple(canonical_steps),
        canonical_seal=None if canonical_seal is None else canonical_seal.decode(),
    )
