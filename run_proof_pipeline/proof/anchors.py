"""Rule 5 of the spec: the root recorded outside the trace tables, in the ledger.

A run's ledger entry is its anchor. A sealed trace with no entry, a trace whose seal was
cleared while its entry remains, a run sealed twice, or an entry whose fields no longer match
its leaf hash is FAILED at "ledger". When a signed checkpoint covers the entry, the entry must
also be the leaf at its index in the checkpoint's signed tree (rebuilt from the ledger and
checked against the signed head once per checkpoint, see ledger/signed_tree.py).

Every lookup says which anchor applied (`AnchorLookup.description`): none, the ledger only
(and why no signed checkpoint), or the signed checkpoint of size N and origin O.

A failure that compares two values is built from a Mismatch (integrity/mismatch.py), as rule 5
in the integrity core is: `expected` is what the trace or the ledger's entries recompute now,
`found` what the ledger or the signed checkpoint holds (docs/aos-compat.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.integrity import Anchor, IntegrityFailure, Mismatch
from run_proof_pipeline.ledger.checkpoint import CheckpointProblem
from run_proof_pipeline.ledger.entry import EntryKind, LedgerEntry
from run_proof_pipeline.ledger.queries import entries_for_runs, ledger_context, read_entries
from run_proof_pipeline.ledger.retirement import reuse_after_retirement
from run_proof_pipeline.ledger.settings import load_ledger_settings
from run_proof_pipeline.ledger.signed_head import SignedHead, load_signed_head
from run_proof_pipeline.ledger.signed_tree import remember_signed_leaves, signed_leaves
from run_proof_pipeline.ledger.tree import LedgerTree
from run_proof_pipeline.store.snapshot import TraceRow

_ANCHORING_KINDS = {EntryKind.SEAL.value, EntryKind.ADOPTION.value}

NO_ANCHOR = "none"
LEDGER_ONLY = "ledger only"


def signed_anchor(head: SignedHead) -> str:
    return f"signed checkpoint of size {head.size} and origin {head.checkpoint.origin}"


@dataclass(frozen=True)
class AnchorLookup:
    anchor: Anchor | None = None
    # A ledger-level failure found before any hashing (e.g. a sealed trace with no entry).
    failure: IntegrityFailure | None = None
    # Which anchor applied: "none", "ledger only[: why]", or "signed checkpoint of size N and
    # origin O" (see signed_anchor); shown with every verdict.
    description: str = NO_ANCHOR


def _ledger_failure(
    reason: str,
    *,
    mismatch: Mismatch | None = None,
    expected: str | None = None,
    found: str | None = None,
    field: str | None = None,
    description: str = NO_ANCHOR,
) -> AnchorLookup:
    """A rule-5 failure: from `mismatch` when two values differ, else with what was expected
    and found described in words (e.g. "a ledger entry" against none)."""
    failure = (
        IntegrityFailure(
            location="ledger",
            step_index=None,
            rule=5,
            expected=expected,
            found=found,
            reason=f"ledger: {reason}",
            field=field,
        )
        if mismatch is None
        else IntegrityFailure.of("ledger", None, 5, mismatch, reason=f"ledger: {reason}")
    )
    return AnchorLookup(description=description, failure=failure)


async def lookup_anchor(conn: AsyncConnection, trace: TraceRow) -> AnchorLookup:
    return (await lookup_anchors(conn, [trace]))[trace.trace_id]


async def lookup_anchors(
    conn: AsyncConnection, traces: Sequence[TraceRow]
) -> dict[str, AnchorLookup]:
    """lookup_anchor() for a batch of traces (by trace id): one round trip for the ledger's
    context, one for the entries, and the checkpoint read once, however many traces."""
    results = {t.trace_id: AnchorLookup() for t in traces if t.legacy}
    proven = [t for t in traces if not t.legacy]  # legacy: UNSUPPORTED anyway
    if not proven:
        return results
    present, database = await ledger_context(conn)
    if not present:
        missing = _ledger_failure(
            "the ledger table run_proof_ledger is missing (run `run-proof db upgrade`)"
        )
        return results | {t.trace_id: missing for t in proven}
    by_run = await entries_for_runs(conn, [(t.tenant_id, t.run_id) for t in proven])
    heads = _SignedHeads(database)
    for trace in proven:
        entries = by_run[(trace.tenant_id, trace.run_id)]
        results[trace.trace_id] = await _anchor_from(conn, trace, entries, heads)
    return results


async def _anchor_from(
    conn: AsyncConnection, trace: TraceRow, run_entries: list[LedgerEntry], heads: _SignedHeads
) -> AnchorLookup:
    entries = [e for e in run_entries if e.kind in _ANCHORING_KINDS]
    # The format's seal is seal_hash, v1 and v2 alike (docs/hash-chain-v2.md): the ledger
    # entry names it (its `root_hash` field, docs/ledger-v1.md, unchanged).
    if not entries:
        if trace.seal_hash is None and trace.chain_length is None:
            return AnchorLookup()  # still being written: nothing recorded yet
        return _ledger_failure(
            f"the trace is sealed (root {trace.seal_hash}) but has no ledger entry: its seal "
            "was written with the ledger trigger off, or its entry was removed",
            expected="a ledger entry",
            found=None,
        )
    entry = entries[0]
    if len(entries) > 1:
        seqs = ", ".join(str(e.seq) for e in entries)
        # A second seal after the run's tombstone is a reused id (docs/ledger-v1.md, "Ids are
        # recorded once"), not a seal cleared and rewritten: say which it is.
        reused = reuse_after_retirement(run_entries)
        return _ledger_failure(
            reused
            or f"the run was sealed more than once (ledger entries {seqs}): its seal was "
            "cleared and rewritten",
            expected=f"one entry ({entry.root_hash})",
            found=entries[1].root_hash,
            field="root_hash",
        )
    problem = _entry_problem(entry, trace)
    if problem is not None:
        return replace(problem, description=LEDGER_ONLY)
    signed, description = await _signed_head_problem(conn, entry, heads)
    if signed is not None:
        return signed
    return AnchorLookup(anchor=Anchor(entry.root_hash, entry.chain_length), description=description)


def _entry_problem(entry: LedgerEntry, trace: TraceRow) -> AnchorLookup | None:
    leaf = entry.leaf().hex()
    if entry.leaf_hash != leaf:
        edited = Mismatch("leaf_hash", stored=entry.leaf_hash, recomputed=leaf)
        return _ledger_failure(
            f"entry {entry.seq}: {edited.text()}: the entry was edited", mismatch=edited
        )
    if entry.trace_id != trace.trace_id:
        # The trace's own id is the side the proof holds, the entry's the ledger's.
        other = Mismatch("trace_id", stored=entry.trace_id, recomputed=trace.trace_id)
        return _ledger_failure(
            f"entry {entry.seq}: trace_id mismatch (the trace is {trace.trace_id}, "
            f"the ledger holds {entry.trace_id})",
            mismatch=other,
        )
    if trace.seal_hash is None:
        cleared = Mismatch("root_hash", stored=entry.root_hash, recomputed=None)
        return _ledger_failure(
            f"entry {entry.seq} recorded the seal (root {entry.root_hash}, length "
            f"{entry.chain_length}) but the trace's seal columns are cleared",
            mismatch=cleared,
        )
    return None


class _SignedHeads:
    """The latest signed checkpoint, read once per batch of lookups (settings and files)."""

    def __init__(self, database: str) -> None:
        self._database = database
        self._loaded = False
        self._configured = False
        self._head: SignedHead | None = None
        self._problem: AnchorLookup | None = None

    def get(self) -> tuple[SignedHead | None, AnchorLookup | None]:
        if not self._loaded:
            self._loaded = True
            settings = load_ledger_settings()
            # ConfigError (a configured directory that does not exist, a directory holding
            # only another origin's checkpoints) goes up: a configuration error, not a verdict.
            self._configured = settings.checkpoint_dir() is not None
            try:
                self._head = load_signed_head(settings, self._database)
            except CheckpointProblem as exc:
                self._problem = _ledger_failure(
                    f"{exc} (a damaged checkpoint fails closed: no older one stands in for it)",
                    description="signed checkpoint unreadable",
                )
        return self._head, self._problem

    def ledger_only_reason(self) -> str:
        if not self._configured:
            return f"{LEDGER_ONLY}: no checkpoint directory configured"
        return f"{LEDGER_ONLY}: no signed checkpoint of this log yet"


async def _signed_head_problem(
    conn: AsyncConnection, entry: LedgerEntry, heads: _SignedHeads
) -> tuple[AnchorLookup | None, str]:
    """The failure (or None) of `entry` against the latest signed checkpoint, and which
    anchor applied."""
    head, problem = heads.get()
    if problem is not None:
        return problem, problem.description
    if head is None:
        return None, heads.ledger_only_reason()
    if entry.index >= head.size:
        # Sealed after the latest checkpoint: the entry itself is the anchor.
        return None, (
            f"{LEDGER_ONLY}: sealed after the latest signed checkpoint (size {head.size}, "
            f"origin {head.checkpoint.origin})"
        )
    described = signed_anchor(head)
    return _against_head(await _leaves_problem(conn, entry, head), described), described


def _against_head(failure: AnchorLookup | None, described: str) -> AnchorLookup | None:
    return None if failure is None else replace(failure, description=described)


async def _leaves_problem(
    conn: AsyncConnection, entry: LedgerEntry, head: SignedHead
) -> AnchorLookup | None:
    leaves = signed_leaves(head.path, head.size, head.root)
    if leaves is None:
        tree = LedgerTree(await read_entries(conn, upto=head.size))
        if tree.size < head.size:
            return _ledger_failure(
                f"the ledger has {tree.size} entries but checkpoint {head.path} signed "
                f"{head.size}: it was rolled back",
                mismatch=Mismatch("tree size", stored=str(head.size), recomputed=str(tree.size)),
            )
        leaves = remember_signed_leaves(head.path, head.size, head.root, tree.leaves)
        if leaves is None:
            rewritten = Mismatch(
                "root", stored=head.root.hex(), recomputed=tree.root(head.size).hex()
            )
            return _ledger_failure(
                f"the ledger's first {head.size} entries no longer hash to the head signed in "
                f"checkpoint {head.path}: {rewritten.text('the checkpoint')}: the ledger was "
                "rewritten since it was signed (run `run-proof checkpoint verify`)",
                mismatch=rewritten,
            )
    if leaves[entry.index] != entry.leaf():
        signed = Mismatch(
            "leaf_hash", stored=leaves[entry.index].hex(), recomputed=entry.leaf().hex()
        )
        return _ledger_failure(
            f"entry {entry.seq} is not the entry signed at index {entry.index} in checkpoint "
            f"{head.path} (size {head.size}): {signed.text('the signed tree')}: it was "
            "rewritten since it was signed",
            mismatch=signed,
        )
    return None
