"""Turn a streamed step row of a format-v2 trace into what the proof needs.

Format v2 (docs/hash-chain-v2.md) hashes every content column AOS writes, numbers exactly,
and chains steps in the order the database inserted them (`chain_position`); which columns a
row holds, and where its hashes come from (the step row's own for a native trace,
run_proof_adopted_steps' for an adopted one), is store/step_columns.py's.

Rows arrive in `step_index` order as COPY text (store/snapshot.py).  StepV2Decoder decodes
either a raw line (UTF-8 connection) or a row of text values; both give a DecodedStepV2.
The trace's `tenant_id` and `run_id` go into every record (the spec: a step row does not
carry them when AOS writes it), so a row moved in from another run hashes differently.

Where the compiled path is built (store/native_line.py; RUN_PROOF_NATIVE=0 forces the pure
one), a raw line it takes whole gets its C2(step) from there, byte for byte this module's
(run_proof_pipeline_tests/test_native_line_v2.py), and `line_walk` walks runs of lines in C
(store/line_walk.py).  Every line it refuses (an escape, a number written in its exact form,
an odd value) is decoded here, which words every failure.

Imports stay light (psycopg-free, the integrity core): segment workers import this module.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from run_proof_pipeline.integrity import CanonicalizationError
from run_proof_pipeline.integrity.records_v2 import step_canonical_v2
from run_proof_pipeline.integrity.timestamps import InvalidTimestamp
from run_proof_pipeline.store.column_text import (
    StoredValueError,
    boolean_or_none,
    exact_json_or_none,
    float_or_none,
    int_or_none,
    strict_int,
)
from run_proof_pipeline.store.copy_text import unescape_copy_text
from run_proof_pipeline.store.decoded_step import DecodedStepV2
from run_proof_pipeline.store.native_line import (
    NativeWalk,
    canonical_line_v2,
    id_texts,
    native_enabled,
    walk_v2,
)
from run_proof_pipeline.store.step_columns import STEP_V2_COLUMNS, step_v2_from, step_v2_select
from run_proof_pipeline.store.step_summary import SUMMARY_FIELDS

__all__ = [
    "STEP_V2_COLUMNS",
    "DecodedStepV2",
    "StepV2Decoder",
    "step_v2_from",
    "step_v2_select",
]

_FIELDS = len(STEP_V2_COLUMNS)
_INDEX, _POSITION, _PREV, _HASH = (
    STEP_V2_COLUMNS.index(c) for c in ("step_index", "chain_position", "prev_hash", "step_hash")
)
# The summary fields' stored text, taken off a row in one call.
_summary_of = itemgetter(*(STEP_V2_COLUMNS.index(name) for name in SUMMARY_FIELDS))


class StepV2Decoder:
    """Decodes v2 step rows (STEP_V2_COLUMNS order) of one trace."""

    def __init__(
        self, tenant_id: Any, run_id: Any, trace_id: Any, *, native: bool | None = None
    ) -> None:
        self._tenant_id = tenant_id
        self._run_id = run_id
        self._trace_id = trace_id
        # native=False: the pure path only (the compiled one's reference, in the tests);
        # None: the compiled path where it is built, unless RUN_PROOF_NATIVE=0.  Ids that
        # are not plain text (id_texts) leave every line to the pure path.
        use = native_enabled(2) if native is None else native
        ids = id_texts(tenant_id, run_id, trace_id) if use else None
        self._ids = ids if canonical_line_v2 is not None else None

    @property
    def native(self) -> bool:
        """Whether lines the compiled path takes get their C2(step) from it."""
        return self._ids is not None

    @property
    def line_walk(self) -> NativeWalk | None:
        """The compiled v2 walk over this trace's lines (store/line_walk.py), or None."""
        ids, native_walk = self._ids, walk_v2
        if ids is None or native_walk is None:
            return None
        tenant, run, trace = ids

        def run_walk(
            lines: list[bytes], start: int, prev: bytes, prev_hex: str, index: int, stop: int
        ) -> tuple[int, bytes]:
            return native_walk(lines, start, prev, prev_hex, index, stop, tenant, run, trace)

        return run_walk

    # The v2 walk checks chain positions (ChainVerifier.walk_state).
    checks_positions = True

    def decode_line(self, line: bytes) -> DecodedStepV2:
        """One raw COPY text line (UTF-8: the caller checks the connection's encoding)."""
        ids = self._ids
        if ids is not None and canonical_line_v2 is not None:
            fast = canonical_line_v2(line, ids[0], ids[1], ids[2])
            if fast is not None:
                # The line holds no escape but whole-field NULLs: its fields are the text.
                summary = _summary_of(line.rstrip(b"\n").split(b"\t"))
                return DecodedStepV2.from_row(
                    fast[0],
                    fast[1],
                    fast[2],
                    fast[3],
                    fast[4],
                    tuple(None if f == b"\\N" else f for f in summary),
                    None,
                )
        fields = line.decode("utf-8").rstrip("\n").split("\t")
        return self.decode_row(
            tuple(
                None if f == "\\N" else (f if "\\" not in f else unescape_copy_text(f))
                for f in fields
            )
        )

    decode = decode_line  # the name store/line_walk.py calls

    def decode_row(self, row: tuple[str | None, ...]) -> DecodedStepV2:
        """One row of text values (None for NULL)."""
        if len(row) != _FIELDS:
            raise ValueError(f"a v2 step row has {_FIELDS} columns, got {len(row)}")
        raw = _summary_of(row)
        prev_hash, step_hash = row[_PREV], row[_HASH]
        index_text = row[_INDEX]
        if index_text is None:
            return DecodedStepV2.from_row(
                None, None, None, prev_hash, step_hash, raw, "step_index is NULL"
            )
        try:
            index = strict_int(index_text)
            position = int_or_none(row[_POSITION])
        except StoredValueError as exc:
            return DecodedStepV2.from_row(None, None, None, prev_hash, step_hash, raw, str(exc))
        try:
            canonical = self._canonical(index, row)
        except (CanonicalizationError, InvalidTimestamp, StoredValueError) as exc:
            error = f"step {index}: stored value is not representable in format v2: {exc}"
            return DecodedStepV2.from_row(index, None, position, prev_hash, step_hash, raw, error)
        return DecodedStepV2.from_row(index, canonical, position, prev_hash, step_hash, raw, None)

    def _canonical(self, index: int, row: tuple[str | None, ...]) -> bytes:
        # Unpacked by position, in STEP_V2_COLUMNS order (pinned by test_fields.py); each
        # value decoded by its column's type (integrity/fields.py FIELD_TYPES).
        (
            _,
            skill_id,
            skill_name,
            params,
            status,
            outcome_category,
            outcome_code,
            outcome_data,
            cost_cents,
            duration_ms,
            retry_count,
            timestamp,
            input_hash,
            output_hash,
            rng_state_before,
            idempotency_key,
            replay_behavior,
            source,
            level,
            is_synthetic,
            synthetic_scenario_id,
            _,
            _,
            _,
        ) = row
        return step_canonical_v2(
            tenant_id=self._tenant_id,
            run_id=self._run_id,
            trace_id=self._trace_id,
            step_index=index,
            skill_id=skill_id,
            skill_name=skill_name,
            params=exact_json_or_none(params),
            status=status,
            outcome_category=outcome_category,
            outcome_code=outcome_code,
            outcome_data=exact_json_or_none(outcome_data),
            cost_cents=float_or_none(cost_cents),
            duration_ms=float_or_none(duration_ms),
            retry_count=int_or_none(retry_count),
            timestamp=timestamp,
            input_hash=input_hash,
            output_hash=output_hash,
            rng_state_before=rng_state_before,
            idempotency_key=idempotency_key,
            replay_behavior=replay_behavior,
            source=source,
            level=level,
            is_synthetic=boolean_or_none(is_synthetic),
            synthetic_scenario_id=synthetic_scenario_id,
        )
