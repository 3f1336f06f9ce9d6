"""The one definition of a trace and of a step: which fields each hashed record holds.

Every other place that lists the fields of a header, a step or a seal (the record builders,
the stored rows the verifier reads, the row decoders' column lists, the recorder, the proof
bundle, the vectors) reads them here; a model that must spell its fields (a dataclass, a
pydantic model) is pinned to these tuples by run_proof_pipeline_tests/test_fields.py, so a
field cannot be added in one place only. The store's migrations stay frozen on purpose: they
are the schema as it was written, and the tests prove the SQL chain against these records.

The records (tuples in the order the specs list them; C and C2 sort keys, so the order is
for people, not for the hash):
- format v1, docs/hash-chain-v1.md "Records": HEADER_V1_FIELDS, STEP_V1_FIELDS,
  SEAL_V1_FIELDS;
- format v2, docs/hash-chain-v2.md "Records": the v1 fields plus HEADER_V2_ONLY_FIELDS,
  STEP_V2_ONLY_FIELDS and the seal's trace_id and metadata.

Where each value comes from: a step record's `tenant_id` and `run_id` (TRACE_IDS) are the
trace's, never the step row's (a row moved in from another run hashes differently), so a
stored step carries STEP_STORED_FIELDS; format v2's step `trace_id` is the trace's too (the
reader selects the rows by it). Every field name is its column's name, except the v2
header's `aos_root_hash`, which is AOS's `root_hash` column (column_of()).

FIELD_TYPES gives each field's column type (docs/existing-aos-database.md), which decides how
a record writes its value (integrity/records.py, records_v2.py) and how a reader takes the
column's text (store/, bundle/).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "FIELD_TYPES",
    "HEADER_V1_FIELDS",
    "HEADER_V2_FIELDS",
    "HEADER_V2_ONLY_FIELDS",
    "SEAL_V1_FIELDS",
    "SEAL_V2_FIELDS",
    "STEP_CHAIN_V1",
    "STEP_CHAIN_V2",
    "STEP_STORED_FIELDS",
    "STEP_V1_FIELDS",
    "STEP_V2_ADDED_FIELDS",
    "STEP_V2_FIELDS",
    "STEP_V2_ONLY_FIELDS",
    "TRACE_IDS",
    "FieldType",
    "StepFields",
    "TraceHeaderFields",
    "column_of",
    "fields_of_type",
    "values_of",
]

# Carried from the trace into each of its records.
TRACE_IDS: tuple[str, ...] = ("tenant_id", "run_id")

# --- format v1 (docs/hash-chain-v1.md "Records") ---------------------------------------------

HEADER_V1_FIELDS: tuple[str, ...] = (
    *TRACE_IDS,
    "trace_id",
    "agent_id",
    "plan_id",
    "plan",
    "started_at",
)
# The columns of a step row that its record hashes (a StoredStep's content).
STEP_STORED_FIELDS: tuple[str, ...] = (
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
)
STEP_V1_FIELDS: tuple[str, ...] = (*TRACE_IDS, *STEP_STORED_FIELDS)
SEAL_V1_FIELDS: tuple[str, ...] = (*TRACE_IDS, "status", "completed_at", "chain_length")
# Where a step row's chain is stored (compared with the recomputed one, never hashed).
STEP_CHAIN_V1: tuple[str, ...] = ("prev_hash", "step_hash")

# --- format v2 (docs/hash-chain-v2.md "Records") ---------------------------------------------

# The header fields a v1 header does not have (a v2 StoredTrace carries them in header_v2).
HEADER_V2_ONLY_FIELDS: tuple[str, ...] = (
    "created_at",
    "correlation_id",
    "seed",
    "frozen_timestamp",
    "plan_hash",
    "schema_version",
    "trace",
    "stored_by",
    "checksum",
    "incident_id",
    "is_synthetic",
    "synthetic_scenario_id",
    "aos_root_hash",
)
HEADER_V2_FIELDS: tuple[str, ...] = (*HEADER_V1_FIELDS, *HEADER_V2_ONLY_FIELDS)
# AOS's further step columns that format v2 covers.
STEP_V2_ADDED_FIELDS: tuple[str, ...] = (
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
# The step fields a v1 step does not have (a v2 StoredStep carries them in `extra`).
STEP_V2_ONLY_FIELDS: tuple[str, ...] = ("trace_id", *STEP_V2_ADDED_FIELDS)
STEP_V2_FIELDS: tuple[str, ...] = (
    *TRACE_IDS,
    "trace_id",
    *STEP_STORED_FIELDS,
    *STEP_V2_ADDED_FIELDS,
)
SEAL_V2_FIELDS: tuple[str, ...] = (
    *TRACE_IDS,
    "trace_id",
    "status",
    "completed_at",
    "chain_length",
    "metadata",
)
# Format v2 also checks where the database chained the row (rule 2).
STEP_CHAIN_V2: tuple[str, ...] = ("chain_position", *STEP_CHAIN_V1)

# --- column types --------------------------------------------------------------------------


class FieldType(StrEnum):
    """A hashed field's column type in AOS's tables (docs/existing-aos-database.md)."""

    TEXT = "text"  # text or varchar: a JSON string (frozen_timestamp too: it is varchar)
    TIMESTAMP = "timestamptz"  # canonical_timestamp()
    DOUBLE = "double precision"  # ES6 of the double (format v2 takes an int as that double)
    INTEGER = "integer"  # smallint, integer or bigint: exact
    JSON = "jsonb"  # a parsed JSON value
    BOOLEAN = "boolean"


_TYPED: dict[FieldType, tuple[str, ...]] = {
    FieldType.TIMESTAMP: ("started_at", "created_at", "completed_at", "timestamp"),
    FieldType.DOUBLE: ("cost_cents", "duration_ms"),
    FieldType.INTEGER: ("step_index", "retry_count", "seed", "chain_length"),
    FieldType.JSON: ("plan", "trace", "metadata", "params", "outcome_data"),
    FieldType.BOOLEAN: ("is_synthetic",),
}
_EVERY_FIELD = dict.fromkeys((*HEADER_V2_FIELDS, *STEP_V2_FIELDS, *SEAL_V2_FIELDS))
FIELD_TYPES: Mapping[str, FieldType] = {
    name: next((t for t, names in _TYPED.items() if name in names), FieldType.TEXT)
    for name in _EVERY_FIELD
}


def fields_of_type(*types: FieldType) -> frozenset[str]:
    """Every record field whose column has one of `types`."""
    return frozenset(name for name, kind in FIELD_TYPES.items() if kind in types)


# The record field -> column names that differ (docs/hash-chain-v2.md "Records").
_COLUMNS = {"aos_root_hash": "root_hash"}


def column_of(field: str) -> str:
    """The column that holds a record field: its own name, except aos_root_hash."""
    return _COLUMNS.get(field, field)


def values_of(source: object, names: tuple[str, ...]) -> dict[str, Any]:
    """{name: source.name} for each of `names`: a record's fields read off any object that
    has them (a stored row, a bundle's model), by the names defined here."""
    return {name: getattr(source, name) for name in names}


# --- protocols: anything with these attributes -----------------------------------------------
# Read-only properties, so that frozen dataclasses and pydantic models both conform;
# runtime-checkable, so a test can hold a model to them (run_proof_pipeline_tests/test_fields.py).


@runtime_checkable
class TraceHeaderFields(Protocol):
    """A trace with the fields of a format-v1 header (HEADER_V1_FIELDS)."""

    @property
    def tenant_id(self) -> Any: ...
    @property
    def run_id(self) -> Any: ...
    @property
    def trace_id(self) -> Any: ...
    @property
    def agent_id(self) -> Any: ...
    @property
    def plan_id(self) -> Any: ...
    @property
    def plan(self) -> Any: ...
    @property
    def started_at(self) -> str | datetime | None: ...


@runtime_checkable
class StepFields(Protocol):
    """A stored step with the fields its record hashes (STEP_STORED_FIELDS)."""

    @property
    def step_index(self) -> Any: ...
    @property
    def skill_id(self) -> Any: ...
    @property
    def skill_name(self) -> Any: ...
    @property
    def params(self) -> Any: ...
    @property
    def status(self) -> Any: ...
    @property
    def outcome_category(self) -> Any: ...
    @property
    def outcome_code(self) -> Any: ...
    @property
    def outcome_data(self) -> Any: ...
    @property
    def cost_cents(self) -> Any: ...
    @property
    def duration_ms(self) -> Any: ...
    @property
    def retry_count(self) -> Any: ...
    @property
    def timestamp(self) -> str | datetime | None: ...
