"""The seed's section 4 Output Report: every field, DB URL with its password redacted.

Every value is redacted (settings.redact) before it is written in any form, so a secret that
reached a field by any path (the URL, an error text) is masked in the Markdown, the text and
the JSON alike; the JSON is serialised from the redacted values, never redacted as text
(which could cut into its quoting).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel

from run_proof_pipeline.settings import redact

REPORT_FIELDS: tuple[tuple[str, str], ...] = (
    ("db_url", "DB URL"),
    ("run_id", "Run ID"),
    ("tenant_id", "Tenant ID"),
    ("started_at", "Trace started_at"),
    ("status", "Trace status"),
    ("step_count", "Trace step_count (DB)"),
    ("integrity_model", "Coordinator integrity_model"),
    ("verification_status", "Coordinator verification_status"),
    ("chain_length", "Coordinator chain_length"),
    ("root_hash", "Coordinator root_hash"),
    ("trace_count", "Coordinator trace_count"),
    ("coordinator_step_count", "Coordinator step_count"),
    ("pytest_result", "Pytest result"),
    ("adopted_at", "Trace adopted at"),
)
# Shown only when the run id is held by several traces or tenants (the seed's SQL would pick
# or count rows of another trace): which trace the report is about, and who else holds the id.
COLLISION_FIELDS: tuple[tuple[str, str], ...] = (
    ("trace_id", "Proven trace_id"),
    ("run_id_collisions", "Run ID also held by"),
)
NATIVE = "native (not adopted)"


def adoption_note(adopted_at: datetime | None) -> str:
    """An adopted legacy trace is proven since its adoption, not since the run: say so."""
    if adopted_at is None:
        return NATIVE
    return (
        f"adopted at {adopted_at.isoformat()}: proves no change since adoption, not since the run"
    )


class OutputReport(BaseModel):
    db_url: str
    run_id: str
    tenant_id: str
    started_at: str
    status: str
    step_count: int
    integrity_model: str
    verification_status: str
    chain_length: int
    root_hash: str | None
    trace_count: int
    coordinator_step_count: int
    pytest_result: str
    adopted_at: str = NATIVE
    trace_id: str | None = None
    run_id_collisions: str | None = None

    def _shown(self) -> tuple[tuple[str, str], ...]:
        if self.run_id_collisions is None:
            return REPORT_FIELDS
        return REPORT_FIELDS + COLLISION_FIELDS

    def _hidden(self) -> set[str]:
        return set() if self.run_id_collisions is not None else {k for k, _ in COLLISION_FIELDS}

    def redacted_data(self) -> dict[str, object]:
        """The report's fields as written: every text value redacted, hidden fields left out."""
        data = self.model_dump(mode="json", exclude=self._hidden())
        return {k: redact(v) if isinstance(v, str) else v for k, v in data.items()}

    def values(self) -> list[tuple[str, str]]:
        data = self.model_dump()
        return [(label, redact(str(data[key]))) for key, label in self._shown()]

    def markdown(self) -> str:
        """The seed's report as a Markdown table (run metadata and the report file)."""
        rows = "\n".join(f"| **{label}** | `{value}` |" for label, value in self.values())
        return f"## Run Proof Output Report\n\n| Field | Value |\n|---|---|\n{rows}\n"

    def text(self) -> str:
        return "\n".join(f"{label}: {value}" for label, value in self.values())

    def write(self, directory: Path, name: str) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name}.md"
        path.write_text(self.markdown(), encoding="utf-8")
        path.with_suffix(".json").write_text(
            json.dumps(self.redacted_data(), indent=2, ensure_ascii=False), encoding="utf-8"
        )
        return path
