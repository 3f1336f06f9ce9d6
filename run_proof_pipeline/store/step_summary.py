"""What a decoded step shows besides its hashes: six summary fields, decoded when read.

The proof itself needs only a step's canonical form and stored hashes (store/decoded_step.py);
the coordinator's step summaries (TraceStepSummary, docs/aos-compat.md) show SUMMARY_FIELDS.
A step decoded from a raw COPY line keeps those columns as the stored bytes or text and
decodes them on first access, so a proof that shows no summaries never pays for them. The
same fields travel to and from segment worker processes as JSON-ready values
(summary_fields() / from_summary_fields()).
"""

from __future__ import annotations

import json
from typing import Any

from run_proof_pipeline.integrity import parse_stored_json
from run_proof_pipeline.store.column_text import strict_float

__all__ = ["SUMMARY_FIELDS", "LazyStepSummary"]

# The order of a summary's raw tuple and of summary_fields().
SUMMARY_FIELDS: tuple[str, ...] = (
    "skill_name",
    "status",
    "duration_ms",
    "cost_cents",
    "params",
    "outcome_data",
)


class LazyStepSummary:
    """The summary fields of one step, decoded from `_raw` (stored bytes or text, numbers
    possibly already floats, in SUMMARY_FIELDS order) on first access."""

    __slots__ = (
        "_raw",
        "_skill_name",
        "_status",
        "_duration_ms",
        "_cost_cents",
        "_params",
        "_outcome_data",
    )

    def _set_summary(
        self,
        skill_name: str | None,
        status: str | None,
        duration_ms: float | None,
        cost_cents: float | None,
        params: Any,
        outcome_data: Any,
    ) -> None:
        self._raw: tuple[Any, ...] | None = None
        self._skill_name = skill_name
        self._status = status
        self._duration_ms = duration_ms
        self._cost_cents = cost_cents
        self._params = params
        self._outcome_data = outcome_data

    def summary_fields(self) -> list[Any]:
        """(skill_name, status, duration_ms, cost_cents, params, outcome_data) as JSON-ready
        values, the JSON columns as text: what from_summary_fields() takes back."""
        raw = self._raw
        if raw is not None:  # still the stored bytes: decoded as text only
            return [None if v is None else v.decode("utf-8", "replace") for v in raw]
        return [
            self._skill_name,
            self._status,
            self._duration_ms,
            self._cost_cents,
            None if self._params is None else json.dumps(self._params),
            None if self._outcome_data is None else json.dumps(self._outcome_data),
        ]

    def _decoded(self) -> None:
        raw = self._raw
        if raw is None:
            return
        skill_name, status, duration_ms, cost_cents, params, outcome_data = raw
        self._skill_name = _text(skill_name)
        self._status = _text(status)
        self._duration_ms = _number(duration_ms)
        self._cost_cents = _number(cost_cents)
        self._params = _json(params)
        self._outcome_data = _json(outcome_data)
        self._raw = None

    @property
    def skill_name(self) -> str | None:
        self._decoded()
        return self._skill_name

    @property
    def status(self) -> str | None:
        self._decoded()
        return self._status

    @property
    def duration_ms(self) -> float | None:
        self._decoded()
        return self._duration_ms

    @property
    def cost_cents(self) -> float | None:
        self._decoded()
        return self._cost_cents

    @property
    def params(self) -> Any:
        self._decoded()
        return self._params

    @property
    def outcome_data(self) -> Any:
        self._decoded()
        return self._outcome_data


def _text(value: str | bytes | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _number(value: str | bytes | float | None) -> float | None:
    if value is None or isinstance(value, float):
        return value
    return strict_float(value)


def _json(value: str | bytes | None) -> Any:
    return None if value is None else parse_stored_json(value)
