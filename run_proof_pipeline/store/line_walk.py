"""COPY lines fed to a chain (ChainVerifier or ChainSegment): the compiled walk
(store/native_line.py) over each run of rows that are fast and verify, the decoder one row
at a time for every other row, which finds and words a failure exactly as before.  The
decoder is format v1's (store/step_line_decoder.py) or a trace's format-v2 one
(store/step_rows_v2.py, whose walk also checks each row's chain position).  The chain's
rules stay in the integrity core: the walk only advances it over rows it checked the same
way (ChainVerifier.walk_state / advance).

The first `pure_first` rows are always decoded one by one and handed to `on_step` (the
summaries a caller keeps); after them, `on_step` sees only the rows the walk left, and
`on_walked(n)` is told of each run of n rows the walk took, in row order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from run_proof_pipeline.integrity import ChainSegment, ChainVerifier
from run_proof_pipeline.store.decoded_step import DecodedStep
from run_proof_pipeline.store.native_line import NativeWalk

__all__ = ["LINE_BATCH", "LineDecoder", "LineWalk"]


class LineDecoder(Protocol):
    """What LineWalk needs of a decoder (StepLineDecoder, StepV2Decoder)."""

    @property
    def line_walk(self) -> NativeWalk | None:
        """The compiled walk over this decoder's lines, None where it decodes them only."""
        ...

    @property
    def checks_positions(self) -> bool:
        """Whether its walk checks chain positions (format v2: ChainVerifier.walk_state)."""
        ...

    def decode(self, line: bytes) -> DecodedStep: ...


# Lines a caller gathers before feeding them (one C call walks them all).
LINE_BATCH = 1024


class LineWalk:
    """Feeds lists of lines to `chain`; `read` counts the rows taken (the stopping one too)."""

    __slots__ = (
        "_chain",
        "_decode",
        "_native",
        "_on_step",
        "_on_walked",
        "_positions",
        "_pure_left",
        "read",
        "stopped",
    )

    def __init__(
        self,
        chain: ChainVerifier | ChainSegment,
        decoder: LineDecoder,
        *,
        pure_first: int = 0,
        on_step: Callable[[DecodedStep], None] | None = None,
        on_walked: Callable[[int], None] | None = None,
    ) -> None:
        self._chain = chain
        self._decode = decoder.decode
        self._native = decoder.line_walk
        self._positions = decoder.checks_positions
        self._on_step = on_step
        self._on_walked = on_walked
        self._pure_left = pure_first
        self.read = 0
        self.stopped = False

    def feed(self, lines: list[bytes]) -> bool:
        """Take the lines in order; True once reading on cannot change the finding."""
        if self.stopped:
            return True
        chain, decode, native, on_step = self._chain, self._decode, self._native, self._on_step
        i, n = 0, len(lines)
        while i < n:
            if native is not None and self._pure_left <= 0:
                state = chain.walk_state(self._positions)
                if state is not None:
                    consumed, prev = native(lines, i, *state)
                    if consumed:
                        chain.advance(consumed, prev)
                        self.read += consumed
                        if self._on_walked is not None:
                            self._on_walked(consumed)
                        i += consumed
                        if i == n:
                            break
            step = decode(lines[i])
            i += 1
            self.read += 1
            self._pure_left -= 1
            if on_step is not None:
                on_step(step)
            if step.feed_to(chain):
                self.stopped = True
                return True
        return False
