"""Turn a streamed step row (text columns, as COPY sends them) into what the proof needs.

The read path of a proof, by concern (docs/architecture.md, "A proof": decode):
- store/step_columns.py: which columns a step row streams, in which order (v1 and v2);
- store/copy_text.py: a COPY text field's bytes (escapes, NULL);
- store/column_text.py: one column's value from its text, strictly by its type;
- store/decoded_step.py: the decoded step (index, C(step), stored hashes, or the reason it
  has none), and its summary fields (store/step_summary.py), decoded when read;
- store/step_row_decoder.py: StepRowDecoder, a row of text values (None for NULL) in;
- store/step_line_decoder.py: StepLineDecoder, one raw COPY line in, the hot path, with the
  column encoders of store/canonical_text.py; it equals StepRowDecoder byte for byte;
- store/step_rows_v2.py: StepV2Decoder, format v2's rows.

This module keeps the names the rest of the project imports from it.
"""

from __future__ import annotations

from run_proof_pipeline.store.column_text import StoredValueError, strict_float, strict_int
from run_proof_pipeline.store.copy_text import unescape_copy_field
from run_proof_pipeline.store.decoded_step import DecodedStep
from run_proof_pipeline.store.step_columns import STEP_COLUMNS, STEP_SELECT
from run_proof_pipeline.store.step_line_decoder import StepLineDecoder
from run_proof_pipeline.store.step_row_decoder import StepRowDecoder

__all__ = [
    "STEP_COLUMNS",
    "STEP_SELECT",
    "DecodedStep",
    "StepLineDecoder",
    "StepRowDecoder",
    "StoredValueError",
    "strict_float",
    "strict_int",
    "unescape_copy_field",
]
