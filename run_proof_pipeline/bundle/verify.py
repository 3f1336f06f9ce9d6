"""`verify-bundle`: prove one run from an exported bundle, with no database.

Checks, in order, each reported by name: the bundle's shape; the origin (the bundle is of
the log the verifier expects: a key alone does not say which log it signed for); rules 1-4
of the hash chain; the ledger entry (its leaf hash, that it names this run, rule 5: its root
and length equal the trace's); the checkpoint's signature by the trusted public key; and the
RFC 9162 inclusion proof of the entry under the signed head.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ValidationError

from run_proof_pipeline.bundle.model import BundleEntry, ProofBundle
from run_proof_pipeline.integrity import (
    Anchor,
    ChainVerifier,
    StoredStep,
    StoredTrace,
    VerificationStatus,
)
from run_proof_pipeline.integrity.merkle import ProofError, verify_inclusion
from run_proof_pipeline.ledger.checkpoint import CheckpointProblem, SignedCheckpoint
from run_proof_pipeline.ledger.entry import LedgerEntry
from run_proof_pipeline.ledger.keys import VerifierKey

__all__ = ["BundleCheck", "BundleReport", "verify_bundle_text"]


@dataclass(frozen=True)
class BundleCheck:
    name: str
    ok: bool
    detail: str


@dataclass
class BundleReport:
    checks: list[BundleCheck] = field(default_factory=list)
    status: str = "FAILED"

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[BundleCheck]:
        return [c for c in self.checks if not c.ok]

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(BundleCheck(name, ok, detail))
        return ok


def verify_bundle_text(text: str, key: VerifierKey, *, origin: str) -> BundleReport:
    """Verify a bundle's text with the trusted `key`, as a bundle of the log `origin`."""
    report = BundleReport()
    try:
        bundle = ProofBundle.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        report.add(
            "bundle",
            False,
            f"not a {ProofBundle.model_fields['format'].default} bundle: {where}: {first['msg']}",
        )
        return report
    report.add("bundle", True, f"{len(bundle.steps)} steps of run {bundle.trace.run_id!r}")
    _check_origin(report, bundle, origin)
    entry = bundle.ledger.entry
    # Rule 5 compares with the entry only once the entry itself is shown intact, so an edited
    # entry is reported as the entry, not as the chain.
    entry_intact = entry is not None and _leaf_matches(entry)
    chain_ok = _check_chain(report, bundle, entry if entry_intact else None)
    if entry is None:
        report.add("ledger entry", False, "the bundle carries no ledger entry for the run")
        return report
    entry_ok = _check_entry(report, bundle, entry)
    head = _check_checkpoint(report, bundle, key)
    if head is not None and entry_ok:
        _check_inclusion(report, bundle, entry, head)
    if chain_ok and report.ok:
        report.status = "VERIFIED"
    return report


def _leaf_matches(entry: BundleEntry) -> bool:
    return LedgerEntry(**entry.model_dump()).leaf().hex() == entry.leaf_hash


def _check_chain(report: BundleReport, bundle: ProofBundle, entry: BundleEntry | None) -> bool:
    verifier = ChainVerifier(StoredTrace(**bundle.trace.model_dump()))
    for step in bundle.steps:
        if verifier.feed(StoredStep(**step.model_dump())) is not None:
            break
    anchor = None if entry is None else Anchor(entry.root_hash, entry.chain_length)
    verdict = verifier.finish(anchor)
    if verdict.status is VerificationStatus.VERIFIED:
        return report.add("hash chain", True, f"rules 1-5 hold, root {verdict.root_hash}")
    if verdict.status is VerificationStatus.UNSEALED:
        return report.add("hash chain", False, "the trace is not sealed: only a prefix verifies")
    return report.add(
        "hash chain", False, verdict.failure_reason or f"verdict {verdict.status.value}"
    )


def _check_entry(report: BundleReport, bundle: ProofBundle, entry: BundleEntry) -> bool:
    recomputed = LedgerEntry(**entry.model_dump()).leaf().hex()
    if recomputed != entry.leaf_hash:
        return report.add(
            "ledger entry",
            False,
            f"entry {entry.seq}: leaf_hash mismatch (expected {recomputed}, "
            f"found {entry.leaf_hash})",
        )
    trace = bundle.trace
    names = (entry.tenant_id, entry.run_id, entry.trace_id)
    if names != (trace.tenant_id, trace.run_id, trace.trace_id):
        return report.add(
            "ledger entry", False, f"entry {entry.seq} records another run: {names!r}"
        )
    return report.add("ledger entry", True, f"entry {entry.seq}, leaf {recomputed}")


def _check_origin(report: BundleReport, bundle: ProofBundle, expected: str) -> bool:
    claimed = {bundle.ledger.origin}
    note = bundle.ledger.checkpoint
    if note is not None:
        try:
            claimed.add(SignedCheckpoint.parse(note).checkpoint.origin)
        except CheckpointProblem:
            pass  # the checkpoint check names it
    others = sorted(claimed - {expected})
    if others:
        found = " and ".join(repr(o) for o in others)
        return report.add(
            "origin", False, f"the bundle is of log {found}, expected origin {expected!r}"
        )
    return report.add("origin", True, f"log {expected!r}, as expected")


def _check_checkpoint(
    report: BundleReport, bundle: ProofBundle, key: VerifierKey
) -> SignedCheckpoint | None:
    note = bundle.ledger.checkpoint
    if note is None:
        report.add("checkpoint", False, "no signed checkpoint covers the run's ledger entry")
        return None
    try:
        signed = SignedCheckpoint.parse(note)
        signed.verify(key)
    except CheckpointProblem as exc:
        report.add("checkpoint", False, str(exc))
        return None
    checkpoint = signed.checkpoint
    if checkpoint.origin != bundle.ledger.origin:
        report.add(
            "checkpoint",
            False,
            f"signed for origin {checkpoint.origin!r}, the bundle says {bundle.ledger.origin!r}",
        )
        return None
    report.add(
        "checkpoint", True, f"signed by key id {key.id.hex()} at tree size {checkpoint.size}"
    )
    return signed


def _check_inclusion(
    report: BundleReport, bundle: ProofBundle, entry: BundleEntry, signed: SignedCheckpoint
) -> None:
    size = signed.checkpoint.size
    if bundle.ledger.tree_size != size:
        report.add(
            "inclusion",
            False,
            f"the proof is for tree size {bundle.ledger.tree_size}, the checkpoint has {size}",
        )
        return
    try:
        proof = [bytes.fromhex(h) for h in bundle.ledger.inclusion_proof]
    except ValueError:
        report.add("inclusion", False, "the inclusion proof is not hex")
        return
    leaf = bytes.fromhex(entry.leaf_hash)
    try:
        verify_inclusion(entry.seq - 1, size, leaf, proof, signed.checkpoint.root)
    except ProofError as exc:
        report.add(
            "inclusion",
            False,
            f"entry {entry.seq} is not included under the signed head (tree size {size}): {exc}",
        )
        return
    report.add("inclusion", True, f"entry {entry.seq} is in the signed tree of size {size}")
