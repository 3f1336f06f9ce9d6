"""Streaming verification of stored hash-chain rows, constant memory: format v1 (spec rules
1-5) and format v2 (docs/hash-chain-v2.md, "Verification"), chosen by StoredTrace.chain_format.

Usage: ChainVerifier(trace), then feed() each stored step in step_index order, then
finish(anchor).  The first failure is final: feed() keeps returning it without doing any
more work, so the caller can stop reading rows.

ChainVerifier orchestrates; each rule lives with its concern: rule 1 (format and genesis) in
genesis_check.py, rules 2-3 (the per-step walk, the hot path) here in _ChainWalk, rules 4-5
(seal and anchor) in seal_check.py. A failure is an IntegrityFailure (failure.py), built from
a Mismatch (mismatch.py) wherever a stored value differs from the recomputed one.

A long trace can also be cut into contiguous ranges of steps, each checked on its own by a
ChainSegment (in another process, say), then merged in order with feed_segment(): the
verdict, first failure and step count are those of feeding every step here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

from run_proof_pipeline.integrity.canonical import CanonicalizationError, canonicalize
from run_proof_pipeline.integrity.chain import is_hex_hash
from run_proof_pipeline.integrity.failure import IntegrityFailure
from run_proof_pipeline.integrity.fields import (
    HEADER_V1_FIELDS,
    HEADER_V2_ONLY_FIELDS,
    STEP_V2_ONLY_FIELDS,
)
from run_proof_pipeline.integrity.genesis_check import check_genesis, unknown_format
from run_proof_pipeline.integrity.mismatch import Mismatch, as_text
from run_proof_pipeline.integrity.records import header_record
from run_proof_pipeline.integrity.records_v2 import header_canonical_v2
from run_proof_pipeline.integrity.seal_check import Anchor, check_anchor, check_seal
from run_proof_pipeline.integrity.stored import (
    StoredStep,
    StoredTrace,
    stored_step_canonical,
    stored_step_canonical_v2,
)
from run_proof_pipeline.integrity.stored import missing_fields as _missing
from run_proof_pipeline.integrity.timestamps import InvalidTimestamp

__all__ = [
    "LEGACY_TRACE_REASON",
    "Anchor",
    "ChainSegment",
    "ChainVerifier",
    "IntegrityFailure",
    "IntegrityModel",
    "SegmentResult",
    "SegmentStart",
    "StoredStep",
    "StoredTrace",
    "Verdict",
    "HEADER_V2_ONLY_FIELDS",
    "STEP_V2_ONLY_FIELDS",
    "VerificationStatus",
    "stored_step_canonical",
    "stored_step_canonical_v2",
]

LEGACY_TRACE_REASON = "legacy trace without a format-v1 genesis hash"

_sha256 = hashlib.sha256


class VerificationStatus(StrEnum):
    VERIFIED = "VERIFIED"
    UNSEALED = "UNSEALED"
    FAILED = "FAILED"
    UNSUPPORTED = "UNSUPPORTED"


class IntegrityModel(StrEnum):
    HASH_CHAIN = "HASH_CHAIN"
    MERKLE_TREE = "MERKLE_TREE"
    NONE = "NONE"


@dataclass(frozen=True)
class Verdict:
    status: VerificationStatus
    model: IntegrityModel
    chain_length: int
    genesis_hash: str | None
    head_hash: str | None
    root_hash: str | None
    sealed: bool
    failure: IntegrityFailure | None = None
    unsupported_reason: str | None = None

    @property
    def failure_reason(self) -> str | None:
        if self.failure is not None:
            return self.failure.reason
        return self.unsupported_reason


def _step_mismatch(index: int, field: str, stored: object, recomputed: str) -> IntegrityFailure:
    """Rule 3 at step `index`: its stored `field` is not the recomputed hash."""
    return IntegrityFailure.of("step", index, 3, Mismatch(field, as_text(stored), recomputed))


class _ChainWalk:
    """Rules 2-3 over stored steps in step_index order, from a known starting state: the
    link arithmetic that a whole trace (ChainVerifier) and a segment (ChainSegment) share.

    The two feed methods here return the first failure so far; ChainVerifier exposes them as
    they are (feed_canonical / feed_unverifiable), ChainSegment under the same names returns
    whether to stop reading instead (its first row may stop it without a failure of its own),
    so neither overrides the other's contract.
    """

    __slots__ = (
        "_legacy",
        "_check_positions",
        "_failure",
        "_prev",
        "_prev_hex",
        "_next_index",
        "_seen",
        "_sealed_length",
        "_head_at_sealed_length",
    )

    def __init__(self, sealed_length: int | None, check_positions: bool = False) -> None:
        self._legacy = False
        # Format v2 (rule 2): step i must sit at chain position i.
        self._check_positions = check_positions
        self._failure: IntegrityFailure | None = None
        self._prev = b""
        self._prev_hex = ""
        self._next_index = 0
        self._seen = 0
        self._sealed_length = sealed_length
        self._head_at_sealed_length: bytes | None = None

    @property
    def failure(self) -> IntegrityFailure | None:
        return self._failure

    @property
    def steps_seen(self) -> int:
        """Rows fed so far (a stream that stops at the first failure reads this many)."""
        return self._seen

    @property
    def sealed_length(self) -> int | None:
        return self._sealed_length

    @property
    def checks_positions(self) -> bool:
        return self._check_positions

    def walk_state(self, positions: bool = False) -> tuple[bytes, str, int, int] | None:
        """Where the walk stands, for a caller that checks rules 2-3 over a run of rows
        itself (store/native_line.py) and then advance()s over them: the previous digest,
        the hex text the next prev_hash must equal, the next step_index and the sealed
        length (-1: none).  `positions`: the caller also checks that step i sits at chain
        position i (format v2), which a chain that checks positions requires and one that
        does not forbids.  None when rows must be fed one by one: after a failure, for a
        legacy trace, when `positions` is not this chain's, before a segment's first row."""
        if self._failure is not None or self._legacy or positions != self._check_positions:
            return None
        if len(self._prev) != 32:
            return None
        length = self._sealed_length
        return self._prev, self._prev_hex, self._next_index, -1 if length is None else length

    def advance(self, steps: int, prev: bytes) -> None:
        """Take `steps` rows that verified from walk_state() on, the last one's digest being
        `prev`: the state feed_canonical() of each would have left (a caller stops its run
        at the sealed length, so the head there is this `prev`)."""
        if steps <= 0:
            return
        self._seen += steps
        self._next_index += steps
        self._prev = prev
        self._prev_hex = prev.hex()
        if self._next_index == self._sealed_length:
            self._head_at_sealed_length = prev

    def _walk_unverifiable(
        self, step_index: int | None, error: str, chain_position: int | None = None
    ) -> IntegrityFailure | None:
        """Record a step whose stored values cannot be canonicalized (e.g. a number that is
        not a finite double, or a NULL step_index): FAILED, naming the step."""
        self._seen += 1
        if self._failure is None and not self._legacy:
            self._failure = self._index_failure(step_index)
            if self._failure is None:
                index = self._next_index  # what step_index is, since it is in its place
                self._failure = self._position_failure(
                    index, chain_position
                ) or IntegrityFailure.unhashable("step", index, 3, error)
        return self._failure  # None only for a legacy trace, which is not verified at all

    def _walk_canonical(
        self,
        step_index: int,
        canonical: bytes,
        prev_hash: str | None,
        step_hash: str | None,
        chain_position: int | None = None,
    ) -> IntegrityFailure | None:
        """feed() for callers that already hold C(step) (from step_canonical_bytes or
        step_canonical_v2); `chain_position` is checked only in v2 mode."""
        self._seen += 1
        if self._failure is not None or self._legacy:
            return self._failure
        index = self._next_index
        if step_index != index:
            self._failure = self._index_failure(step_index)
            return self._failure
        if self._check_positions and (type(chain_position) is not int or chain_position != index):
            self._failure = self._position_failure(index, chain_position)
            return self._failure
        if prev_hash != self._prev_hex:
            self._failure = _step_mismatch(index, "prev_hash", prev_hash, self._prev_hex)
            return self._failure
        digest = _sha256(self._prev + canonical).digest()
        digest_hex = digest.hex()
        if step_hash != digest_hex:
            self._failure = _step_mismatch(index, "step_hash", step_hash, digest_hex)
            return self._failure
        self._prev = digest
        self._prev_hex = digest_hex
        self._next_index = index + 1
        if index + 1 == self._sealed_length:
            self._head_at_sealed_length = digest
        return None

    def _index_failure(self, step_index: object) -> IntegrityFailure | None:
        expected = self._next_index
        if step_index == expected and type(step_index) is int:
            return None
        if type(step_index) is int and step_index > expected:
            what = "step_index gap"
        elif type(step_index) is int:
            what = "duplicate or out-of-order step_index"
        else:
            what = "step_index is not an integer"
        return IntegrityFailure.of(
            "step",
            expected,
            2,
            Mismatch("step_index", stored=str(step_index), recomputed=str(expected)),
            reason=f"step {expected}: {what} (expected {expected}, found {step_index})",
        )

    def _position_failure(self, step_index: int, chain_position: object) -> IntegrityFailure | None:
        """Rule 2 of format v2: the database chained step i at position i."""
        if not self._check_positions or (
            type(chain_position) is int and chain_position == step_index
        ):
            return None
        if chain_position is None:
            why = "no chain position (the row was not chained by the database)"
        else:
            why = (
                f"inserted out of order (chained at position {chain_position}, "
                f"expected {step_index})"
            )
        stored = None if chain_position is None else str(chain_position)
        return IntegrityFailure.of(
            "step",
            step_index,
            2,
            Mismatch("chain_position", stored=stored, recomputed=str(step_index)),
            reason=f"step {step_index}: {why}",
        )


def sealed_length_of(trace: StoredTrace) -> int | None:
    """The stored chain_length when it is plausible enough to spot extra steps with; a bad
    one fails at the seal instead."""
    length = trace.chain_length
    if type(length) is int and length >= 0 and trace.root_hash is not None:
        return length
    return None


@dataclass(frozen=True)
class SegmentStart:
    """The first stored row of a segment, exactly as read: the merging ChainVerifier checks
    it against the chain so far (its index and prev_hash are the segment's border)."""

    step_index: int | None  # None: a stored row without one (it cannot start a chain)
    canonical: bytes | None
    prev_hash: str | None
    step_hash: str | None
    error: str | None = None
    chain_position: int | None = None  # format v2


@dataclass(frozen=True)
class SegmentResult:
    """What ChainSegment found in a contiguous run of stored steps.

    Everything after `first` was checked assuming that `first` verifies, i.e. starting from
    its index + 1 and its stored step_hash; ChainVerifier.feed_segment() checks `first` and
    only then takes the rest, so the merged verdict is the sequential one.
    """

    first: SegmentStart | None  # None: the segment holds no rows
    steps: int  # rows read, up to and including the first failure
    failure: IntegrityFailure | None  # the first failure after `first`
    next_index: int
    head: bytes | None  # digest of the segment's last row, when nothing failed
    head_at_sealed_length: bytes | None
    # Whether the rows were checked for their chain positions (format v2): a merger checks
    # positions exactly when its segments did (feed_segment refuses a mix).
    checks_positions: bool = False


class ChainSegment(_ChainWalk):
    """Rules 2-3 over one contiguous range of a trace's stored steps, read independently of
    the rows before it (every row stores its prev_hash): segments of one long run can be
    verified in parallel and merged in order with ChainVerifier.feed_segment().

    feed_canonical / feed_unverifiable return True once reading on cannot change the
    result: a failure inside the segment, or a first row that cannot verify.
    """

    __slots__ = ("_first", "_start_fails")

    def __init__(self, sealed_length: int | None, check_positions: bool = False) -> None:
        super().__init__(sealed_length, check_positions)
        self._first: SegmentStart | None = None
        self._start_fails = False

    def feed_canonical(
        self,
        step_index: int,
        canonical: bytes,
        prev_hash: str | None,
        step_hash: str | None,
        chain_position: int | None = None,
    ) -> bool:
        """Take the segment's next row, holding C(step); True: stop reading."""
        if self._first is None:
            return self._start(
                SegmentStart(step_index, canonical, prev_hash, step_hash, None, chain_position)
            )
        failure = self._walk_canonical(step_index, canonical, prev_hash, step_hash, chain_position)
        return failure is not None

    def feed_unverifiable(
        self, step_index: int | None, error: str, chain_position: int | None = None
    ) -> bool:
        """Take the segment's next row, which cannot be canonicalized; True: stop reading."""
        if self._first is None:
            return self._start(SegmentStart(step_index, None, None, None, error, chain_position))
        return self._walk_unverifiable(step_index, error, chain_position) is not None

    def _start(self, first: SegmentStart) -> bool:
        self._first = first
        self._seen = 1
        index, step_hash = first.step_index, first.step_hash
        if (
            first.error is not None
            or first.canonical is None
            or index is None
            or not is_hex_hash(step_hash)
        ):
            # The merger fails this row whatever follows (a stored hash that is not 64 hex
            # characters never equals a computed one): the rest need not be read.
            self._start_fails = True
            return True
        self._next_index = index + 1
        self._prev_hex = step_hash
        self._prev = bytes.fromhex(step_hash)
        # (The merger notes the head at the sealed length if this very row is the last one.)
        return False

    def result(self) -> SegmentResult:
        failure = self._failure
        return SegmentResult(
            first=self._first,
            steps=self._seen,
            failure=failure,
            next_index=self._next_index,
            head=None if failure is not None or self._start_fails else self._prev,
            head_at_sealed_length=self._head_at_sealed_length,
            checks_positions=self._check_positions,
        )


def _format_of(trace: StoredTrace) -> int | None:
    """1, 2, None (legacy), or -1 for a stored value that names no format."""
    fmt = trace.chain_format
    if fmt is None:
        return None
    if type(fmt) is not int or fmt not in (1, 2):
        return -1
    if fmt == 1 and trace.genesis_hash is None:
        return None  # a v1 trace without its genesis: legacy, as before format v2
    return fmt


class ChainVerifier(_ChainWalk):
    __slots__ = ("_trace", "_genesis_hex", "_v2")

    # A whole trace: each feed returns the first failure so far (None: none yet).
    feed_canonical = _ChainWalk._walk_canonical
    feed_unverifiable = _ChainWalk._walk_unverifiable

    def __init__(self, trace: StoredTrace) -> None:
        fmt = _format_of(trace)
        super().__init__(sealed_length_of(trace), check_positions=fmt == 2)
        self._trace = trace
        self._v2 = fmt == 2
        self._legacy = fmt is None
        self._genesis_hex: str | None = None
        if self._legacy:
            return
        if fmt == -1:
            self._failure = unknown_format(trace.chain_format)
            return
        # Rule 1: the walk of rules 2-3 starts from the recomputed genesis, even when the
        # stored one differs (the verdict shows the recomputed one).
        genesis, self._failure = check_genesis(trace.genesis_hash, self._header_canonical)
        if genesis is None:
            return
        self._genesis_hex = genesis.hex()
        self._prev = genesis
        self._prev_hex = self._genesis_hex
        if self._sealed_length == 0:
            self._head_at_sealed_length = genesis

    def _header_canonical(self) -> bytes:
        # The header's hashed fields by their one definition (integrity/fields.py): a
        # StoredTrace carries HEADER_V1_FIELDS itself, format v2 the rest in header_v2.
        trace = self._trace
        own = {name: getattr(trace, name) for name in HEADER_V1_FIELDS}
        if not self._v2:
            return canonicalize(header_record(**own), strict=False)
        fields = trace.header_v2
        missing = _missing(fields, HEADER_V2_ONLY_FIELDS)
        if missing or fields is None:
            raise CanonicalizationError(f"the v2 header fields were not read: {', '.join(missing)}")
        return header_canonical_v2(**own, **{name: fields[name] for name in HEADER_V2_ONLY_FIELDS})

    def feed(self, step: StoredStep) -> IntegrityFailure | None:
        """Check one stored step (rules 2-3); returns the first failure so far, if any."""
        if self._failure is not None or self._legacy:
            self._seen += 1
            return self._failure
        position = step.chain_position
        try:
            canonical = (
                stored_step_canonical_v2(self._trace, step)
                if self._v2
                else stored_step_canonical(self._trace, step)
            )
        except (CanonicalizationError, InvalidTimestamp) as exc:
            return self._walk_unverifiable(step.step_index, str(exc), position)
        return self._walk_canonical(
            step.step_index, canonical, step.prev_hash, step.step_hash, position
        )

    def feed_segment(self, segment: SegmentResult) -> IntegrityFailure | None:
        """Take a ChainSegment's result for the rows that come next, as if each had been fed
        here: its first row is checked against the chain so far, and only when it verifies
        does the segment's own finding (a failure or its head) count.  Feed segments in
        step_index order; after the first failure they are not read (like a stopped stream)."""
        if self._legacy:
            self._seen += segment.steps
            return None
        if segment.checks_positions != self._check_positions:
            # A v2 trace's segment read without positions would skip rule 2 on its rows.
            raise ValueError(
                "segment checked chain positions "
                f"{'on' if segment.checks_positions else 'off'}, the trace needs them "
                f"{'on' if self._check_positions else 'off'} (ChainSegment(check_positions=))"
            )
        if self._failure is not None:
            return self._failure
        first = segment.first
        if first is None:
            return None
        index = first.step_index
        failure = (
            self._walk_unverifiable(
                index,
                # (A start without canonical form always carries the reason it has none.)
                first.error if first.error is not None else "its canonical form was not read",
                first.chain_position,
            )
            if first.error is not None or first.canonical is None or index is None
            else self._walk_canonical(
                index,
                first.canonical,
                first.prev_hash,
                first.step_hash,
                first.chain_position,
            )
        )
        if failure is not None:
            return failure
        # The first row verified, so the segment's starting assumption held.
        self._seen += segment.steps - 1
        if segment.failure is not None:
            self._failure = segment.failure
            return self._failure
        if segment.head is None:  # only when the first row could not verify, handled above
            raise ValueError("a segment without a head must fail at its first row")
        self._next_index = segment.next_index
        self._prev = segment.head
        self._prev_hex = segment.head.hex()
        if segment.head_at_sealed_length is not None:
            self._head_at_sealed_length = segment.head_at_sealed_length
        return None

    def _verdict(
        self,
        status: VerificationStatus,
        *,
        root: str | None = None,
        failure: IntegrityFailure | None = None,
    ) -> Verdict:
        sealed = self._trace.root_hash is not None
        return Verdict(
            status=status,
            model=IntegrityModel.HASH_CHAIN,
            chain_length=self._seen,
            genesis_hash=self._genesis_hex,
            head_hash=None if failure is not None else self._prev_hex,
            root_hash=root if sealed else None,
            sealed=sealed,
            failure=failure,
        )

    def finish(self, anchor: Anchor | None = None) -> Verdict:
        """Rules 4 (seal) and 5 (anchor) once every step has been fed."""
        trace = self._trace
        if self._legacy:
            return Verdict(
                status=VerificationStatus.UNSUPPORTED,
                model=IntegrityModel.NONE,
                chain_length=self._seen,
                genesis_hash=None,
                head_hash=None,
                root_hash=None,
                sealed=trace.root_hash is not None,
                unsupported_reason=LEGACY_TRACE_REASON,
            )
        if self._failure is not None:
            return self._verdict(VerificationStatus.FAILED, failure=self._failure)
        root, failure = check_seal(
            trace, self._v2, self._prev, self._next_index, self._head_at_sealed_length
        )
        if failure is None and anchor is not None:
            failure = check_anchor(anchor, root, self._next_index)
        if failure is not None:
            self._failure = failure
            return self._verdict(VerificationStatus.FAILED, root=root, failure=failure)
        if root is None:
            return self._verdict(VerificationStatus.UNSEALED)
        return self._verdict(VerificationStatus.VERIFIED, root=root)
