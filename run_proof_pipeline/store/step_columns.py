"""Which columns a streamed step row holds, in which order: the step records' fields
(integrity/fields.py) and the chain columns they are checked against.

Every value travels as text (COPY, store/snapshot.py), so that no value is converted twice:
the decoders parse each exactly as the spec says (store/column_text.py).

- Format v1 (STEP_COLUMNS): step_index, the row's own tenant_id and run_id (read, never
  hashed: a v1 record takes the trace's), the rest of the step's hashed columns, then
  prev_hash and step_hash.
- Format v2 (STEP_V2_COLUMNS, docs/hash-chain-v2.md "Records"): the step's hashed columns,
  then where it was chained (chain_position, prev_hash, step_hash). A native trace's chain
  columns are the step row's own; an adopted trace's are run_proof_adopted_steps', joined on
  (trace_id, step_index), never the step row's ("Where every value is stored": AOS's trigger
  forbids writing our columns into a legacy step row).
"""

from __future__ import annotations

from run_proof_pipeline.integrity.fields import (
    STEP_CHAIN_V1,
    STEP_CHAIN_V2,
    STEP_STORED_FIELDS,
    STEP_V2_ADDED_FIELDS,
    TRACE_IDS,
)

__all__ = [
    "STEP_COLUMNS",
    "STEP_SELECT",
    "STEP_V2_COLUMNS",
    "STEP_V2_CONTENT",
    "step_v2_from",
    "step_v2_select",
]

STEP_COLUMNS: tuple[str, ...] = (
    "step_index",
    *TRACE_IDS,
    *(name for name in STEP_STORED_FIELDS if name != "step_index"),
    *STEP_CHAIN_V1,
)
STEP_SELECT = ", ".join(f'"{c}"' for c in STEP_COLUMNS)

STEP_V2_CONTENT: tuple[str, ...] = (*STEP_STORED_FIELDS, *STEP_V2_ADDED_FIELDS)
STEP_V2_COLUMNS: tuple[str, ...] = (*STEP_V2_CONTENT, *STEP_CHAIN_V2)


def step_v2_select(*, adopted: bool) -> str:
    """The SELECT list of a v2 step row, for FROM step_v2_from(adopted=...)."""
    chain_source = "a" if adopted else "s"
    content = ", ".join(f's."{c}"' for c in STEP_V2_CONTENT)
    chain = ", ".join(f'{chain_source}."{c}"' for c in STEP_CHAIN_V2)
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
