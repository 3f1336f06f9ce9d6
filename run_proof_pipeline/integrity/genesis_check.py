"""Rule 1, before any step: the trace's stored format names one, and its genesis hash is the
hash of its header (docs/hash-chain-v1.md rule 1, docs/hash-chain-v2.md "Verification").

ChainVerifier hands in how to canonicalize the header (format v1 or v2, from its stored
columns); this module hashes it and compares. A failure here is at "header", rule 1, with
the recomputed genesis as `expected` and the stored one as `found` (docs/aos-compat.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from run_proof_pipeline.integrity.canonical import CanonicalizationError
from run_proof_pipeline.integrity.failure import IntegrityFailure
from run_proof_pipeline.integrity.mismatch import Mismatch, as_text
from run_proof_pipeline.integrity.timestamps import InvalidTimestamp

__all__ = ["check_genesis", "unknown_format"]


def unknown_format(chain_format: object) -> IntegrityFailure:
    """A stored chain_format that names no format: nothing of the trace can be checked."""
    return IntegrityFailure(
        location="header",
        step_index=None,
        rule=1,
        expected="1 or 2",
        found=as_text(chain_format),
        reason=f"header: unknown chain_format {chain_format!r} (formats: 1, 2)",
        field="chain_format",
    )


def check_genesis(
    stored_genesis: str | None, header_canonical: Callable[[], bytes]
) -> tuple[bytes | None, IntegrityFailure | None]:
    """(the recomputed genesis hash, the failure if any): None as the hash when the stored
    header cannot be hashed (`header_canonical` raised CanonicalizationError or
    InvalidTimestamp); a genesis that differs from the stored one still comes back, so the
    verdict can show it."""
    try:
        canonical = header_canonical()
    except (CanonicalizationError, InvalidTimestamp) as exc:
        return None, IntegrityFailure.unhashable("header", None, 1, exc)
    genesis = hashlib.sha256(canonical).digest()
    genesis_hex = genesis.hex()
    if stored_genesis != genesis_hex:
        mismatch = Mismatch("genesis_hash", stored=as_text(stored_genesis), recomputed=genesis_hex)
        return genesis, IntegrityFailure.of("header", None, 1, mismatch)
    return genesis, None
