"""One definition of a trace and of a step (integrity/fields.py), and everything that must
spell the same fields pinned to it: the specs, the record builders and the read path's
encoders, the stored rows the verifier checks. A field added in one place only fails here."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from run_proof_pipeline.integrity import (
    StoredStep,
    StoredTrace,
    canonicalize,
    canonicalize_v2,
    step_record,
    step_record_v2,
)
from run_proof_pipeline.integrity.fields import (
    FIELD_TYPES,
    HEADER_V1_FIELDS,
    HEADER_V2_FIELDS,
    HEADER_V2_ONLY_FIELDS,
    SEAL_V1_FIELDS,
    SEAL_V2_FIELDS,
    STEP_CHAIN_V1,
    STEP_CHAIN_V2,
    STEP_STORED_FIELDS,
    STEP_V1_FIELDS,
    STEP_V2_FIELDS,
    STEP_V2_ONLY_FIELDS,
    TRACE_IDS,
    FieldType,
    column_of,
    fields_of_type,
    values_of,
)
from run_proof_pipeline.integrity.records import (
    header_record,
    seal_record,
    step_canonical_bytes,
)
from run_proof_pipeline.integrity.records_v2 import (
    header_record_v2,
    seal_record_v2,
    step_canonical_v2,
)
from run_proof_pipeline.integrity.stored import stored_step_canonical, stored_step_canonical_v2

DOCS = Path(__file__).resolve().parents[1] / "docs"
_RECORD = re.compile(r'\{"v":(\d), "kind":"(\w+)",(.*?)\}', re.DOTALL)


def _spec_records(doc: str) -> dict[str, tuple[str, ...]]:
    """kind -> field names, as the spec's "Records" section writes each record."""
    text = (DOCS / doc).read_text(encoding="utf-8")
    section = text[text.index("## Records") : text.index("## Chain")]
    return {
        kind: tuple(re.findall(r'"(\w+)"', names)) for _, kind, names in _RECORD.findall(section)
    }


def test_the_v1_fields_are_the_v1_spec_s_records() -> None:
    assert _spec_records("hash-chain-v1.md") == {
        "trace": HEADER_V1_FIELDS,
        "step": STEP_V1_FIELDS,
        "seal": SEAL_V1_FIELDS,
    }


def test_the_v2_fields_are_the_v2_spec_s_records() -> None:
    assert _spec_records("hash-chain-v2.md") == {
        "trace": HEADER_V2_FIELDS,
        "step": STEP_V2_FIELDS,
        "seal": SEAL_V2_FIELDS,
    }


def test_the_v2_only_fields_are_what_v2_adds_to_the_stored_rows() -> None:
    assert HEADER_V2_FIELDS == HEADER_V1_FIELDS + HEADER_V2_ONLY_FIELDS
    assert STEP_V1_FIELDS == TRACE_IDS + STEP_STORED_FIELDS
    assert set(STEP_V2_FIELDS) == set(TRACE_IDS) | set(STEP_STORED_FIELDS) | set(
        STEP_V2_ONLY_FIELDS
    )
    assert not set(STEP_STORED_FIELDS) & set(STEP_V2_ONLY_FIELDS)


def test_every_field_has_its_column_s_type() -> None:
    assert set(FIELD_TYPES) == set(HEADER_V2_FIELDS) | set(STEP_V2_FIELDS) | set(SEAL_V2_FIELDS)
    assert fields_of_type(FieldType.DOUBLE) == {"cost_cents", "duration_ms"}
    assert fields_of_type(FieldType.JSON) == {"plan", "trace", "metadata", "params", "outcome_data"}
    assert fields_of_type(FieldType.BOOLEAN) == {"is_synthetic"}
    # varchar in AOS's schema, hashed as the text it is (docs/hash-chain-v2.md "Primitives").
    assert FIELD_TYPES["frozen_timestamp"] is FieldType.TEXT
    assert column_of("aos_root_hash") == "root_hash" and column_of("plan") == "plan"


# --- the record builders and the read path's encoders ----------------------------------------

_BUILDERS = [
    (header_record, HEADER_V1_FIELDS),
    (step_record, STEP_V1_FIELDS),
    (seal_record, SEAL_V1_FIELDS),
    (header_record_v2, HEADER_V2_FIELDS),
    (step_record_v2, STEP_V2_FIELDS),
    (seal_record_v2, SEAL_V2_FIELDS),
]


@pytest.mark.parametrize(("builder", "names"), _BUILDERS, ids=lambda b: getattr(b, "__name__", ""))
def test_a_record_holds_exactly_its_fields(builder: Any, names: tuple[str, ...]) -> None:
    record = builder(**dict.fromkeys(names))
    assert list(record) == ["v", "kind", *names]
    with pytest.raises(TypeError, match=f"missing 1 required keyword-only argument: '{names[-1]}'"):
        builder(**dict.fromkeys(names[:-1]))
    with pytest.raises(TypeError, match="unexpected keyword argument 'extra_field'"):
        builder(**dict.fromkeys(names), extra_field=1)


@pytest.mark.parametrize(
    ("encoder", "names"),
    [(step_canonical_bytes, STEP_V1_FIELDS), (step_canonical_v2, STEP_V2_FIELDS)],
    ids=["v1", "v2"],
)
def test_the_fast_step_encoders_take_and_write_exactly_the_step_fields(
    encoder: Any, names: tuple[str, ...]
) -> None:
    """They spell their fields out for speed (integrity/records*.py); these are the names."""
    parameters = inspect.signature(encoder).parameters
    assert tuple(parameters) == names
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters.values())
    written = json.loads(encoder(**_distinct(names)))
    assert set(written) == {"v", "kind", *names}


def _distinct(names: tuple[str, ...]) -> dict[str, Any]:
    """A value of its column's type for each field, no two text values alike (so a field
    passed under another's name changes the record)."""
    at = datetime(2026, 2, 9, 10, 0, 0, 123456, tzinfo=UTC)
    by_type = {
        FieldType.TIMESTAMP: lambda i: at.replace(second=i),
        FieldType.DOUBLE: lambda i: i + 0.5,
        FieldType.INTEGER: lambda i: i,
        FieldType.JSON: lambda i: {"n": i},
        FieldType.BOOLEAN: lambda i: i % 2 == 0,
        FieldType.TEXT: lambda i: f"value-{i}",
    }
    return {name: by_type[FIELD_TYPES[name]](i) for i, name in enumerate(names)}


def _pick(values: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: values[name] for name in names}


def test_a_stored_step_s_canonical_form_takes_every_field_from_its_own_name() -> None:
    values = _distinct(STEP_V2_FIELDS)
    trace = StoredTrace(
        **{**dict.fromkeys(HEADER_V1_FIELDS), **_pick(values, TRACE_IDS)},
        status=None,
        completed_at=None,
        genesis_hash=None,
        root_hash=None,
        chain_length=None,
    )
    step = StoredStep(
        **_pick(values, STEP_STORED_FIELDS),
        prev_hash=None,
        step_hash=None,
        extra=_pick(values, STEP_V2_ONLY_FIELDS),
    )
    v1 = {name: values[name] for name in STEP_V1_FIELDS}
    assert stored_step_canonical(trace, step) == canonicalize(step_record(**v1), strict=False)
    assert stored_step_canonical_v2(trace, step) == canonicalize_v2(step_record_v2(**values))


# --- the stored rows the verifier checks -----------------------------------------------------


def _field_names(model: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(model)]


def test_a_stored_step_holds_the_stored_step_fields_and_its_chain() -> None:
    names = _field_names(StoredStep)
    assert names == [*STEP_STORED_FIELDS, *STEP_CHAIN_V1, "chain_position", "extra"]
    assert set(STEP_CHAIN_V2) <= set(names)


def test_a_stored_trace_holds_the_v1_header_and_the_seal_s_own_fields() -> None:
    names = _field_names(StoredTrace)
    seal_own = [f for f in SEAL_V1_FIELDS if f not in TRACE_IDS and f != "chain_length"]
    assert names[: len(HEADER_V1_FIELDS)] == list(HEADER_V1_FIELDS)
    assert names[len(HEADER_V1_FIELDS) : len(HEADER_V1_FIELDS) + len(seal_own)] == seal_own
    assert {"chain_length", "header_v2", "metadata"} <= set(names)


def test_values_of_reads_the_named_attributes() -> None:
    step = StoredStep(**_distinct(STEP_STORED_FIELDS), prev_hash="p", step_hash="h")
    assert values_of(step, ("skill_id", "prev_hash")) == {"skill_id": "value-1", "prev_hash": "p"}
