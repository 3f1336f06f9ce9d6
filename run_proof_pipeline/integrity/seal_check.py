"""Rules 4 and 5, once every step has been fed: the seal (docs/hash-chain-v1.md rule 4,
docs/hash-chain-v2.md "Verification") and the anchor recorded outside the trace tables (rule
5, docs/ledger-v1.md "Verification").

ChainVerifier.finish() calls these with what its walk ended on (the head hash, the number of
steps, the head at the sealed length); they hash nothing per step. A rule-5 failure follows
the convention of every other one (docs/aos-compat.md): `expected` is the recomputed root or
length, `found` what the ledger holds, and the reason names which is which.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from run_proof_pipeline.integrity.canonical import CanonicalizationError, canonicalize
from run_proof_pipeline.integrity.failure import IntegrityFailure
from run_proof_pipeline.integrity.mismatch import Mismatch, as_text, stored_hash_text
from run_proof_pipeline.integrity.records import seal_record
from run_proof_pipeline.integrity.records_v2 import seal_canonical_v2
from run_proof_pipeline.integrity.stored import StoredTrace
from run_proof_pipeline.integrity.timestamps import InvalidTimestamp

__all__ = ["Anchor", "check_anchor", "check_seal", "seal_root"]

_sha256 = hashlib.sha256


@dataclass(frozen=True)
class Anchor:
    """A root recorded outside the trace tables earlier (rule 5), e.g. in the ledger."""

    root_hash: str
    chain_length: int
    source: str = "ledger"


def seal_root(trace: StoredTrace, v2: bool, head: bytes, chain_length: int) -> str:
    """H(head || C(seal)) of the trace's stored seal columns with `chain_length` (C2 for
    format v2).  Raises CanonicalizationError / InvalidTimestamp for a stored value outside
    the spec."""
    if v2:
        canonical = seal_canonical_v2(
            tenant_id=trace.tenant_id,
            run_id=trace.run_id,
            trace_id=trace.trace_id,
            status=trace.status,
            completed_at=trace.completed_at,
            chain_length=chain_length,
            metadata=trace.metadata,
        )
        return _sha256(head + canonical).hexdigest()
    seal = seal_record(
        tenant_id=trace.tenant_id,
        run_id=trace.run_id,
        status=trace.status,
        completed_at=trace.completed_at,
        chain_length=chain_length,
    )
    return _sha256(head + canonicalize(seal, strict=False)).hexdigest()


def _seal_failure(
    field: str | None, expected: str | None, found: object, why: str
) -> IntegrityFailure:
    return IntegrityFailure(
        location="seal",
        step_index=None,
        rule=4,
        expected=expected,
        found=as_text(found),
        reason=f"seal: {why}",
        field=field,
    )


def check_seal(
    trace: StoredTrace,
    v2: bool,
    head: bytes,
    steps: int,
    head_at_sealed_length: bytes | None,
) -> tuple[str | None, IntegrityFailure | None]:
    """Rule 4 after `steps` verified steps ending in `head`: (the recomputed root, or None
    for an unsealed trace or a seal that cannot be recomputed; the failure, if any).  A
    stored chain_length shorter than the steps whose seal holds for that prefix, or longer
    with a seal that does not hold, is a step failure (extra or missing steps, rule 2)."""
    stored_root, stored_length = trace.root_hash, trace.chain_length
    column = "seal_hash" if v2 else "root_hash"
    if not v2 and trace.root_hash_column is not None and (trace.root_hash_column != stored_root):
        # Format v1 keeps its seal in both columns after migration 0006.
        return None, _seal_failure(
            "root_hash",
            as_text(stored_root),
            trace.root_hash_column,
            f"root_hash mismatch (seal_hash holds {stored_hash_text(stored_root)}, root_hash "
            f"holds {stored_hash_text(trace.root_hash_column)}; a format-v1 seal is in both)",
        )
    if stored_root is None and stored_length is None:
        return None, None
    if stored_length is None:
        return None, _seal_failure(
            "chain_length", None, None, f"{column} is set but chain_length is not"
        )
    if stored_root is None:
        return None, _seal_failure(
            column, None, None, f"chain_length is set ({stored_length}) but {column} is not"
        )
    n = steps
    if type(stored_length) is not int or stored_length < 0:
        return None, _seal_failure(
            "chain_length",
            str(n),
            stored_length,
            f"chain_length mismatch (expected {n}, found {stored_length!r})",
        )
    try:
        root = seal_root(trace, v2, head, n)
        if stored_length == n:
            if stored_root != root:
                mismatch = Mismatch(column, stored=as_text(stored_root), recomputed=root)
                return root, IntegrityFailure.of("seal", None, 4, mismatch)
            return root, None
        if stored_length < n and head_at_sealed_length is not None:
            sealed_prefix_root = seal_root(trace, v2, head_at_sealed_length, stored_length)
            if sealed_prefix_root == stored_root:
                # The seal is intact for its first chain_length steps: the rest were added.
                return root, IntegrityFailure(
                    location="step",
                    step_index=stored_length,
                    rule=2,
                    expected=f"chain_length {stored_length}",
                    found=f"step_index {stored_length}",
                    reason=(
                        f"step {stored_length}: extra step beyond the sealed chain "
                        f"(expected {stored_length} steps, found {n})"
                    ),
                    field="step_index",
                )
        if stored_length > n and stored_root != root:
            # A seal that does not match the shorter chain: steps are missing at the end.
            return root, IntegrityFailure(
                location="step",
                step_index=n,
                rule=2,
                expected=f"step_index {n}",
                found="end of steps",
                reason=(
                    f"step {n}: missing (the seal has chain_length {stored_length}, "
                    f"found {n} steps)"
                ),
                field="step_index",
            )
    except (CanonicalizationError, InvalidTimestamp) as exc:
        return None, IntegrityFailure.unhashable("seal", None, 4, exc)
    return root, _seal_failure(
        "chain_length",
        str(n),
        stored_length,
        f"chain_length mismatch (expected {n}, found {stored_length})",
    )


def check_anchor(anchor: Anchor, root: str | None, steps: int) -> IntegrityFailure | None:
    """Rule 5: the recomputed root (None: the trace is unsealed) and number of steps against
    the anchor's. expected = recomputed, found = the anchor's (docs/aos-compat.md)."""
    where = f"ledger ({anchor.source})" if anchor.source != "ledger" else "ledger"
    holder = f"the {anchor.source}"
    if root is None:
        unsealed = Mismatch("root_hash", stored=anchor.root_hash, recomputed=None)
        return IntegrityFailure.of(
            "ledger",
            None,
            5,
            unsealed,
            reason=(
                f"{where}: root_hash mismatch (the trace is unsealed, {holder} holds "
                f"{anchor.root_hash})"
            ),
        )
    if anchor.root_hash != root:
        mismatch = Mismatch("root_hash", stored=anchor.root_hash, recomputed=root)
        return IntegrityFailure.of("ledger", None, 5, mismatch, f"{where}: {mismatch.text(holder)}")
    if anchor.chain_length != steps:
        mismatch = Mismatch("chain_length", stored=str(anchor.chain_length), recomputed=str(steps))
        return IntegrityFailure.of("ledger", None, 5, mismatch, f"{where}: {mismatch.text(holder)}")
    return None
