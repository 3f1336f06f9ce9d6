"""Turn a streamed step row of a format-v2 trace into what the proof needs.

Format v2 (docs/hash-chain-v2.md) hashes every content column AOS writes, numbers exactly,
and chains steps in the order the database inserted them (`chain_position`).  Where the
hashes live depends on how the trace became v2 ("Where every value is stored"):
- native (chained at insert by migration 0006's triggers): the step row's own
  `chain_position`, `prev_hash`, `step_hash`;
- adopted (a legacy trace, `adopted_at` set): `run_proof_adopted_steps`, joined on
  (trace_id, step_index), never the step row (AOS's trigger forbids writing our columns
  into a legacy step row, so whatever they hold there is not the proof's).

Rows arrive in `step_index` order as COPY text (store/snapshot.py).  StepV2Decoder decodes
either a raw line (UTF-8 connection) or a row of text values; both give a DecodedStepV2.
The trace's `tenant_id` and `run_id` go into every record (the spec: a step row does not
carry them when AOS writes it), so a row moved in from another run hashes differently.

Imports stay light (psycopg-free, the integrity core): segment workers import this module.
"""

from __future__ import annotations

from typing import Any

import orjson

from run_proof_pipeline.integrity import CanonicalizationError, ChainSegment, ChainVerifier
from run_proof_pipeline.integrity.canonical_v2 import (
    needs_exact_parse,
    parse_stored_json_v2,
    stored_nesting_problem_v2,
)
from run_proof_pipeline.integrity.records_v2 import step_canonical_v2
from run_proof_pipeline.integrity.timestamps import InvalidTimestamp
from run_proof_pipeline.store.step_rows import (
    DecodedStep,
    StoredValueError,
    strict_float,
    strict_int,
    unescape_copy_field,
)

__all__ = [
    "STEP_V2_COLUMNS",
    "DecodedStepV2",
    "StepV2Decoder",
    "step_v2_from",
    "step_v2_select",
]

# Column order of a streamed v2 step row: the step record's columns (docs/hash-chain-v2.md
# "Records"), then where it was chained.  Everything travels as text, parsed exactly here.
_CONTENT = (
    "step_index",
    "skill_id",
    "skill_name",
    "params",
    "status",
    "outcome_category",
    "outcome_code",
    "outcome_data",
    "cost_cents",
    "duration_ms",
    "retry_count",
    "timestamp",
    "input_hash",
    "output_hash",
    "rng_state_before",
    "idempotency_key",
    "replay_behavior",
    "source",
    "level",
    "is_synthetic",
    "synthetic_scenario_id",
)
_CHAIN = ("chain_position", "prev_hash", "step_hash")
STEP_V2_COLUMNS = _CONTENT + _CHAIN
_FIELDS = len(STEP_V2_COLUMNS)
# Positions of the fields the decoder picks by hand.
_INDEX, _PARAMS, _OUTCOME_DATA = 0, 3, 7
_COST, _DURATION, _RETRY, _SYNTHETIC = 8, 9, 10, 19
_POSITION, _PREV, _HASH = 21, 22, 23


def step_v2_select(*, adopted: bool) -> str:
    """The SELECT list of a v2 step row, for FROM step_v2_from(adopted=...)."""
    chain_source = "a" if adopted else "s"
    content = ", ".join(f's."{c}"' for c in _CONTENT)
    chain = ", ".join(f'{chain_source}."{c}"' for c in _CHAIN)
    return f"{content}, {chain}"


def step_v2_from(*, adopted: bool) -> str:
    """`aos_trace_steps s` (native), or with the adopted hashes LEFT JOINed as `a`: a step
    row without an adoption row reads as not chained (NULL position and hashes: FAILED,
    named)."""
    if not adopted:
        return "aos_trace_steps s"
    return (
        "aos_trace_steps s LEFT JOIN run_proof_adopted_steps a"
        " ON a.trace_id = s.trace_id AND a.step_index = s.step_index"
    )


class DecodedStepV2(DecodedStep):
    """A v2 step: DecodedStep plus the chain position the database gave it."""

    __slots__ = ("chain_position",)
    chain_position: int | None  # None: the database did not chain the row (it FAILS)

    def summary_fields(self) -> list[Any]:
        raw = self._raw
        if raw is not None:  # the stored text, not decoded yet
            return list(raw)
        return super().summary_fields()

    def feed_to(self, chain: ChainVerifier | ChainSegment) -> bool:
        index = self.step_index
        if self.error is not None or self.canonical is None or index is None:
            return bool(chain.feed_unverifiable(index, self.error or "", self.chain_position))
        return bool(
            chain.feed_canonical(
                index,
                self.canonical,
                self.prev_hash,
                self.step_hash,
                chain_position=self.chain_position,
            )
        )


def _decoded_step(
    index: int | None,
    canonical: bytes | None,
    chain_position: int | None,
    prev_hash: str | None,
    step_hash: str | None,
    raw: tuple[str | None, ...],
    error: str | None,
) -> DecodedStepV2:
    step = DecodedStepV2.__new__(DecodedStepV2)
    step.step_index = index  # None: a NULL step_index, FAILED
    step.canonical = canonical
    step.prev_hash = prev_hash
    step.step_hash = step_hash
    step.error = error
    step.chain_position = chain_position
    # Summaries (skill_name, status, duration_ms, cost_cents, params, outcome_data) are
    # decoded from the stored bytes only when shown (DecodedStep's lazy fields).
    step._raw = raw
    return step


_loads = orjson.loads
_BOOLEANS = {"t": True, "f": False}


def _boolean(value: str | None) -> bool | None:
    """A boolean column as COPY text prints it (`t` / `f`)."""
    if value is None:
        return None
    try:
        return _BOOLEANS[value]
    except KeyError:
        raise StoredValueError(f"{value!r} is not a boolean value") from None


def _json(value: str | None) -> Any:
    """A jsonb column's value with every number exact (parse_stored_json_v2).  orjson's
    parse stands in when it is exact for this text: the same test that
    canonicalize_stored_json_v2 applies (no exponent, no 16+ significant digits, no long
    digit run, nesting within the limit), so a number is never rounded."""
    if value is None:
        return None
    source = value.encode()
    if stored_nesting_problem_v2(source) is None and not needs_exact_parse(source):
        try:
            return _loads(source)
        except orjson.JSONDecodeError:
            pass  # e.g. an escaped lone surrogate: the exact parser reads (and names) it
    return parse_stored_json_v2(value)


def _float(value: str | None) -> float | None:
    return None if value is None else strict_float(value)


def _int(value: str | None) -> int | None:
    return None if value is None else strict_int(value)


class StepV2Decoder:
    """Decodes v2 step rows (STEP_V2_COLUMNS order) of one trace."""

    def __init__(self, tenant_id: Any, run_id: Any, trace_id: Any) -> None:
        self._tenant_id = tenant_id
        self._run_id = run_id
        self._trace_id = trace_id

    def decode_line(self, line: bytes) -> DecodedStepV2:
        """One raw COPY text line (UTF-8: the caller checks the connection's encoding)."""
        fields = line.decode("utf-8").rstrip("\n").split("\t")
        return self.decode_row(
            tuple(None if f == "\\N" else (f if "\\" not in f else _unescaped(f)) for f in fields)
        )

    def decode_row(self, row: tuple[str | None, ...]) -> DecodedStepV2:
        """One row of text values (None for NULL)."""
        if len(row) != _FIELDS:
            raise ValueError(f"a v2 step row has {_FIELDS} columns, got {len(row)}")
        raw = (row[2], row[4], row[_DURATION], row[_COST], row[_PARAMS], row[_OUTCOME_DATA])
        prev_hash, step_hash = row[_PREV], row[_HASH]
        index_text = row[_INDEX]
        if index_text is None:
            return _decoded_step(None, None, None, prev_hash, step_hash, raw, "step_index is NULL")
        try:
            index = strict_int(index_text)
            position = _int(row[_POSITION])
        except StoredValueError as exc:
            return _decoded_step(None, None, None, prev_hash, step_hash, raw, str(exc))
        try:
            canonical = self._canonical(index, row)
        except (CanonicalizationError, InvalidTimestamp, StoredValueError) as exc:
            error = f"step {index}: stored value is not representable in format v2: {exc}"
            return _decoded_step(index, None, position, prev_hash, step_hash, raw, error)
        return _decoded_step(index, canonical, position, prev_hash, step_hash, raw, None)

    def _canonical(self, index: int, row: tuple[str | None, ...]) -> bytes:
        return step_canonical_v2(
            tenant_id=self._tenant_id,
            run_id=self._run_id,
            trace_id=self._trace_id,
            step_index=index,
            skill_id=row[1],
            skill_name=row[2],
            params=_json(row[_PARAMS]),
            status=row[4],
            outcome_category=row[5],
            outcome_code=row[6],
            outcome_data=_json(row[_OUTCOME_DATA]),
            cost_cents=_float(row[_COST]),
            duration_ms=_float(row[_DURATION]),
            retry_count=_int(row[_RETRY]),
            timestamp=row[11],
            input_hash=row[12],
            output_hash=row[13],
            rng_state_before=row[14],
            idempotency_key=row[15],
            replay_behavior=row[16],
            source=row[17],
            level=row[18],
            is_synthetic=_boolean(row[_SYNTHETIC]),
            synthetic_scenario_id=row[20],
        )


def _unescaped(field: str) -> str:
    """A COPY text field holding backslash escapes, unescaped (store/step_rows.py)."""
    return (unescape_copy_field(field.encode()) or b"").decode("utf-8")
