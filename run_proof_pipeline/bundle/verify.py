"""`verify-bundle`: prove one run from an exported bundle, with no database.

Checks, in order, each reported by name: the bundle's shape; the origin (the bundle is of
the log the verifier expects: a key alone does not say which log it signed for); rules 1-4
of the hash chain; the ledger entry (its leaf hash, that it names this run, rule 5: its root
and length equal the trace's); the checkpoint's signature by the trusted public key; and the
RFC 9162 inclusion proof of the entry under the signed head.

A `run-proof-bundle/v1` is a format-v1 trace, a `run-proof-bundle/v2` a format-v2 one
(docs/hash-chain-v2.md "Verification": genesis, chain positions, step hashes, seal, ledger
entry); the v2 bundle's stored texts are read with the format's exact rules, never through
a double (bundle/model.py).

A check that compares a hash carries the Mismatch (integrity/mismatch.py) beside its text:
stored = what the bundle holds, recomputed = what the verifier computes from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from run_proof_pipeline.bundle.model import (
    BUNDLE_FORMAT,
    BUNDLE_FORMAT_V2,
    CARRIED_AS_TEXT,
    AnyProofBundle,
    BundleEntry,
    BundleStepV2,
    BundleTraceV2,
    ProofBundle,
    ProofBundleV2,
)
from run_proof_pipeline.integrity import (
    Anchor,
    ChainVerifier,
    Mismatch,
    StoredStep,
    StoredTrace,
    VerificationStatus,
)
from run_proof_pipeline.integrity.canonical import CanonicalizationError
from run_proof_pipeline.integrity.canonical_v2 import parse_stored_json_v2
from run_proof_pipeline.integrity.fields import (
    FIELD_TYPES,
    HEADER_V1_FIELDS,
    HEADER_V2_ONLY_FIELDS,
    STEP_STORED_FIELDS,
    STEP_V2_ADDED_FIELDS,
    FieldType,
    values_of,
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
    # For a failed hash comparison: what differed (stored = the bundle's, recomputed = ours).
    mismatch: Mismatch | None = None


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

    def add(self, name: str, ok: bool, detail: str, mismatch: Mismatch | None = None) -> bool:
        self.checks.append(BundleCheck(name, ok, detail, mismatch))
        return ok


_FORMATS = (BUNDLE_FORMAT, BUNDLE_FORMAT_V2)
# The `format` field says which model the rest must fit (a v1 bundle from before included).
_BUNDLE = TypeAdapter(Annotated[ProofBundle | ProofBundleV2, Field(discriminator="format")])


def _parse(text: str) -> ProofBundle | ProofBundleV2 | str:
    """The bundle, or why its text is not one."""
    try:
        return _BUNDLE.validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"]]
        if loc and loc[0] in _FORMATS:
            form = loc.pop(0)
        else:
            form = " or ".join(_FORMATS)
            if first["type"].startswith("union_tag"):
                loc = ["format"]
        return f"not a {form} bundle: {'.'.join(loc) or '(root)'}: {first['msg']}"


def verify_bundle_text(text: str, key: VerifierKey, *, origin: str) -> BundleReport:
    """Verify a bundle's text with the trusted `key`, as a bundle of the log `origin`."""
    report = BundleReport()
    bundle = _parse(text)
    if isinstance(bundle, str):
        report.add("bundle", False, bundle)
        return report
    report.add(
        "bundle",
        True,
        f"{len(bundle.steps)} steps of run {bundle.trace.run_id!r} ({bundle.format})",
    )
    _check_origin(report, bundle, origin)
    entry = bundle.ledger.entry
    # Rule 5 compares with the entry only once the entry itself is shown intact, so an edited
    # entry is reported as the entry, not as the chain.
    entry_intact = entry is not None and _leaf_matches(entry)
    anchor = entry if entry_intact else None
    if isinstance(bundle, ProofBundleV2):
        chain_ok = _check_chain_v2(report, bundle, anchor)
    else:
        chain_ok = _check_chain(report, bundle, anchor)
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
    return _chain_verdict(report, verifier, entry, "rules 1-5 hold, root")


# --- format v2 ------------------------------------------------------------------------------


class _Unreadable(ValueError):
    """A stored text the format cannot read, named as the proof names a stored value it
    cannot hash: `<record>: stored values cannot be hashed (<field>: <why>)`."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.field = field


# PostgreSQL's text output of the column types (docs/ledger-v1.md "Proof bundle"); anything
# else is not what export writes.
_BIGINT = re.compile(r"-?[0-9]{1,19}")
_FLOAT8 = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|NaN|-?Infinity")


def _json_v2(value: str | None, field: str) -> Any:
    if value is None:
        return None
    try:
        return parse_stored_json_v2(value)
    except CanonicalizationError as exc:
        raise _Unreadable(field, str(exc)) from None


def _bigint(value: str | None, field: str) -> int | None:
    if value is None:
        return None
    if not _BIGINT.fullmatch(value):
        raise _Unreadable(field, f"{value!r} is not the text of a bigint column")
    return int(value)


def _float8(value: str | None, field: str) -> float | None:
    if value is None:
        return None
    if not _FLOAT8.fullmatch(value):
        raise _Unreadable(field, f"{value!r} is not the text of a double precision column")
    # NaN and the infinities stay what they are: the record's encoder names them.
    return float(value)


def _parsed(name: str, value: Any) -> Any:
    """A bundle field's value as the record takes it: a stored text (CARRIED_AS_TEXT) read
    by its column's type with the format's exact rules, anything else as it is."""
    if name not in CARRIED_AS_TEXT:
        return value
    kind = FIELD_TYPES[name]
    if kind is FieldType.JSON:
        return _json_v2(value, name)
    if kind is FieldType.DOUBLE:
        return _float8(value, name)
    if kind is FieldType.INTEGER:
        return _bigint(value, name)
    return value  # a timestamp: its stored text is what the record writes


def _stored_trace_v2(trace: BundleTraceV2) -> StoredTrace:
    # Read by the names of integrity/fields.py, the v2-only fields first (which field a
    # bundle with two unreadable ones names is the one read first).
    header_v2 = {name: _parsed(name, getattr(trace, name)) for name in HEADER_V2_ONLY_FIELDS}
    header = {name: _parsed(name, getattr(trace, name)) for name in HEADER_V1_FIELDS}
    return StoredTrace(
        **header,
        status=trace.status,
        completed_at=trace.completed_at,
        genesis_hash=trace.genesis_hash,
        # The format's stored seal (docs/hash-chain-v2.md "Where every value is stored").
        root_hash=trace.seal_hash,
        chain_length=trace.chain_length,
        chain_format=2,
        header_v2=header_v2,
        metadata=_json_v2(trace.metadata, "metadata"),
    )


def _stored_step_v2(trace: BundleTraceV2, step: BundleStepV2) -> StoredStep:
    own = {name: _parsed(name, getattr(step, name)) for name in STEP_STORED_FIELDS}
    extra = values_of(step, STEP_V2_ADDED_FIELDS)
    return StoredStep(
        **own,
        prev_hash=step.prev_hash,
        step_hash=step.step_hash,
        chain_position=step.chain_position,
        # The bundle's steps are those of its trace (export selects them by trace_id).
        extra={"trace_id": trace.trace_id, **extra},
    )


def _check_chain_v2(report: BundleReport, bundle: ProofBundleV2, entry: BundleEntry | None) -> bool:
    try:
        trace = _stored_trace_v2(bundle.trace)
    except _Unreadable as exc:
        record = "seal" if exc.field == "metadata" else "header"
        return report.add("hash chain", False, f"{record}: stored values cannot be hashed ({exc})")
    verifier = ChainVerifier(trace)
    for step in bundle.steps:
        try:
            stored = _stored_step_v2(bundle.trace, step)
        except _Unreadable as exc:
            found = verifier.feed_unverifiable(step.step_index, str(exc), step.chain_position)
        else:
            found = verifier.feed(stored)
        if found is not None:
            break
    return _chain_verdict(report, verifier, entry, "format v2: rules 1-4 hold, seal")


def _chain_verdict(
    report: BundleReport, verifier: ChainVerifier, entry: BundleEntry | None, held: str
) -> bool:
    anchor = None if entry is None else Anchor(entry.root_hash, entry.chain_length)
    verdict = verifier.finish(anchor)
    if verdict.status is VerificationStatus.VERIFIED:
        return report.add("hash chain", True, f"{held} {verdict.root_hash}")
    if verdict.status is VerificationStatus.UNSEALED:
        return report.add("hash chain", False, "the trace is not sealed: only a prefix verifies")
    failure = verdict.failure
    return report.add(
        "hash chain",
        False,
        verdict.failure_reason or f"verdict {verdict.status.value}",
        None if failure is None else failure.mismatch,
    )


def _check_entry(report: BundleReport, bundle: AnyProofBundle, entry: BundleEntry) -> bool:
    recomputed = LedgerEntry(**entry.model_dump()).leaf().hex()
    if recomputed != entry.leaf_hash:
        edited = Mismatch("leaf_hash", stored=entry.leaf_hash, recomputed=recomputed)
        return report.add("ledger entry", False, f"entry {entry.seq}: {edited.text()}", edited)
    trace = bundle.trace
    names = (entry.tenant_id, entry.run_id, entry.trace_id)
    if names != (trace.tenant_id, trace.run_id, trace.trace_id):
        return report.add(
            "ledger entry", False, f"entry {entry.seq} records another run: {names!r}"
        )
    return report.add("ledger entry", True, f"entry {entry.seq}, leaf {recomputed}")


def _check_origin(report: BundleReport, bundle: AnyProofBundle, expected: str) -> bool:
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
    report: BundleReport, bundle: AnyProofBundle, key: VerifierKey
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
    report: BundleReport, bundle: AnyProofBundle, entry: BundleEntry, signed: SignedCheckpoint
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
            exc.mismatch,
        )
        return
    report.add("inclusion", True, f"entry {entry.seq} is in the signed tree of size {size}")
