"""One definition of a trace and of a step (integrity/fields.py), and everything that must
spell the same fields pinned to it: the specs, the record builders and the read path's
encoders, the stored rows the verifier checks, the decoders' column lists, the trace row and
the relations a proof reads, the recorder's and the bundle's models. A field added in one
place only fails here."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from run_proof_pipeline.bundle.model import (
    CARRIED_AS_TEXT,
    BundleStep,
    BundleStepV2,
    BundleTrace,
    BundleTraceV2,
)
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
    STEP_V2_ADDED_FIELDS,
    STEP_V2_FIELDS,
    STEP_V2_ONLY_FIELDS,
    TRACE_IDS,
    FieldType,
    StepFields,
    TraceHeaderFields,
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
from run_proof_pipeline.store.recorder import FullStepAppend, FullTraceStart, StepAppend, TraceStart
from run_proof_pipeline.store.relations import PROOF_RELATIONS
from run_proof_pipeline.store.snapshot import TRACE_COLUMNS, TraceRow
from run_proof_pipeline.store.step_rows import STEP_COLUMNS, StepLineDecoder, StepRowDecoder
from run_proof_pipeline.store.step_rows_v2 import STEP_V2_COLUMNS, StepV2Decoder

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


# --- the read path: the decoders' column lists -----------------------------------------------

_TEXT_OF_TYPE = {
    FieldType.TIMESTAMP: lambda i: f"2026-02-09 10:00:{i:02d}.123456+00",
    FieldType.DOUBLE: lambda i: f"{i}.5",
    FieldType.INTEGER: lambda i: str(i),
    FieldType.JSON: lambda i: f'{{"n": {i}}}',
    FieldType.BOOLEAN: lambda i: "t",
    FieldType.TEXT: lambda i: f"value-{i}",
}


def _row_text(columns: tuple[str, ...]) -> dict[str, str]:
    """Each column's text as COPY sends it, no two alike; step_index 0 and chain position
    0 (a first step), the hashes 64 hex characters."""
    texts = {
        name: _TEXT_OF_TYPE[FIELD_TYPES[name]](i) if name in FIELD_TYPES else f"{i:064x}"
        for i, name in enumerate(columns, start=1)
    }
    return {**texts, "step_index": "0", "chain_position": "0"}


def _parsed(name: str, text: str) -> Any:
    kind = FIELD_TYPES[name]
    if kind is FieldType.JSON:
        return json.loads(text)
    if kind is FieldType.DOUBLE:
        return float(text)
    if kind is FieldType.INTEGER:
        return int(text)
    return True if kind is FieldType.BOOLEAN else text


def test_the_v1_decoders_read_every_column_by_its_name() -> None:
    assert set(STEP_COLUMNS) == {*STEP_V1_FIELDS, *STEP_CHAIN_V1}
    texts = _row_text(STEP_COLUMNS)
    ids = {"tenant_id": texts["tenant_id"], "run_id": texts["run_id"]}
    record = step_record(
        **ids, **{n: _parsed(n, texts[n]) for n in STEP_V1_FIELDS if n not in TRACE_IDS}
    )
    expected = canonicalize(record, strict=False)
    line = "\t".join(texts[c] for c in STEP_COLUMNS).encode() + b"\n"
    row = tuple(texts[c] for c in STEP_COLUMNS)
    for step in (StepLineDecoder().decode(line), StepRowDecoder().decode(row)):
        assert step.error is None
        assert step.canonical == expected
        assert (step.prev_hash, step.step_hash) == (texts["prev_hash"], texts["step_hash"])
        assert (step.skill_name, step.status) == (texts["skill_name"], texts["status"])
        assert (step.cost_cents, step.duration_ms) == (
            float(texts["cost_cents"]),
            float(texts["duration_ms"]),
        )
        assert step.params == json.loads(texts["params"])
        assert step.outcome_data == json.loads(texts["outcome_data"])


def test_the_v2_decoder_reads_every_column_by_its_name() -> None:
    assert set(STEP_V2_COLUMNS) == {*STEP_STORED_FIELDS, *STEP_V2_ONLY_FIELDS, *STEP_CHAIN_V2} - {
        "trace_id"
    }
    texts = _row_text(STEP_V2_COLUMNS)
    carried = {"tenant_id": "tenant-a", "run_id": "run-a", "trace_id": "trace-a"}
    own = {n: _parsed(n, texts[n]) for n in STEP_V2_FIELDS if n not in carried}
    expected = canonicalize_v2(step_record_v2(**carried, **own))
    decoder = StepV2Decoder(carried["tenant_id"], carried["run_id"], carried["trace_id"])
    line = "\t".join(texts[c] for c in STEP_V2_COLUMNS).encode() + b"\n"
    step = decoder.decode_line(line)
    assert step.error is None
    assert step.canonical == expected
    assert (step.chain_position, step.prev_hash, step.step_hash) == (
        0,
        texts["prev_hash"],
        texts["step_hash"],
    )
    assert (step.skill_name, step.cost_cents) == (texts["skill_name"], float(texts["cost_cents"]))
    assert step.summary_fields()[4] == texts["params"]  # params, as stored


def test_a_trace_row_reads_every_header_and_seal_column() -> None:
    names = set(_field_names(TraceRow))
    header_and_seal = {*HEADER_V2_FIELDS, *SEAL_V2_FIELDS} - {"aos_root_hash"}
    # The JSON columns format v2 hashes exactly travel as their text (plan also parsed, v1).
    exact_text = {f"{n}_text" for n in header_and_seal if FIELD_TYPES[n] is FieldType.JSON}
    assert header_and_seal - {"trace", "metadata"} <= names
    assert exact_text <= names
    assert column_of("aos_root_hash") in names
    assert all(name in TRACE_COLUMNS for name in names)


def test_the_relations_a_proof_reads_hold_every_hashed_column_with_its_type() -> None:
    """store/relations.py lists the columns it checks with our own (genesis_hash, ...) in
    the order its messages name them; every record field must be among them, typed alike."""
    oids = {
        FieldType.TEXT: {25, 1043},
        FieldType.TIMESTAMP: {1184},
        FieldType.DOUBLE: {701},
        FieldType.INTEGER: {21, 23, 20},
        FieldType.JSON: {3802},
        FieldType.BOOLEAN: {16},
    }
    for table, names in (
        ("aos_traces", {*HEADER_V2_FIELDS, *SEAL_V2_FIELDS}),
        ("aos_trace_steps", set(STEP_V2_FIELDS)),
    ):
        columns = PROOF_RELATIONS[table]
        for name in names:
            assert columns[column_of(name)] == oids[FIELD_TYPES[name]], (table, name)


# --- the models that spell their fields --------------------------------------------------------


def test_the_recorder_s_models_are_the_records_fields() -> None:
    assert tuple(TraceStart.model_fields) == HEADER_V1_FIELDS
    assert tuple(FullTraceStart.model_fields) == HEADER_V2_FIELDS
    # The recorder assigns step_index (the chain head's next); tenant and run are the trace's.
    step_own = tuple(n for n in STEP_STORED_FIELDS if n != "step_index")
    assert tuple(StepAppend.model_fields) == step_own
    assert tuple(FullStepAppend.model_fields) == step_own + STEP_V2_ADDED_FIELDS


def test_the_bundle_models_are_the_records_fields_and_the_stored_hashes() -> None:
    seal_own = ("status", "completed_at")
    assert set(BundleTrace.model_fields) == {
        *HEADER_V1_FIELDS,
        *seal_own,
        "genesis_hash",
        "root_hash",
        "chain_length",
    }
    assert set(BundleStep.model_fields) == {*STEP_STORED_FIELDS, *STEP_CHAIN_V1}
    assert set(BundleTraceV2.model_fields) == {
        "chain_format",
        *HEADER_V2_FIELDS,
        *(set(SEAL_V2_FIELDS) - {"tenant_id", "run_id", "trace_id"}),
        "genesis_hash",
        "seal_hash",
    }
    assert set(BundleStepV2.model_fields) == {
        *STEP_STORED_FIELDS,
        *STEP_V2_ADDED_FIELDS,
        *STEP_CHAIN_V2,
    }
    # What a JSON reader could change travels as its stored text (bundle/model.py).
    for model in (BundleTraceV2, BundleStepV2):
        for name, info in model.model_fields.items():
            if name in CARRIED_AS_TEXT:
                assert info.annotation == str | None, (model.__name__, name)


def test_the_stored_rows_and_the_models_have_the_protocols_attributes() -> None:
    step_values = _distinct(STEP_STORED_FIELDS)
    steps = [
        StoredStep(**step_values, prev_hash=None, step_hash=None),
        BundleStep.model_construct(**step_values),
        BundleStepV2.model_construct(**step_values),
    ]
    assert all(isinstance(step, StepFields) for step in steps)
    header = _distinct(HEADER_V1_FIELDS)
    traces = [
        StoredTrace(
            **header,
            status=None,
            completed_at=None,
            genesis_hash=None,
            root_hash=None,
            chain_length=None,
        ),
        BundleTrace.model_construct(**header),
        BundleTraceV2.model_construct(**header),
        TraceStart.model_construct(**header),
    ]
    assert all(isinstance(trace, TraceHeaderFields) for trace in traces)
    # A step that lacks a field is not one (the check is by attribute).
    assert not isinstance(TraceStart.model_construct(**header), StepFields)
