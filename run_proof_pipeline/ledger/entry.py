"""Ledger entry format v1 (docs/ledger-v1.md): one record per seal, hashed as a Merkle leaf.

Pure: no I/O. The database computes the same leaf in SQL when it appends an entry
(migration 0002); readers never trust that column, they recompute it from the fields here.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from run_proof_pipeline.integrity import canonical_timestamp, canonicalize
from run_proof_pipeline.integrity.merkle import leaf_hash

__all__ = ["ENTRY_VERSION", "EntryKind", "LedgerEntry"]

ENTRY_VERSION = 1


class EntryKind(StrEnum):
    SEAL = "seal"
    # Reserved for later appends: a legacy trace adopted into format v1, and a run retired
    # on purpose (its absence from the trace tables is then expected, not a deletion).
    ADOPTION = "adoption"
    TOMBSTONE = "tombstone"


class LedgerEntry(BaseModel):
    """One run_proof_ledger row; `seq` is its 1-based position, the leaf index plus one."""

    model_config = ConfigDict(frozen=True)

    seq: int
    kind: str
    tenant_id: str
    run_id: str
    trace_id: str
    chain_length: int
    root_hash: str
    recorded_at: datetime | str
    # As stored; None when the reader has not got it (e.g. an entry rebuilt from a bundle).
    leaf_hash: str | None = None

    def record(self) -> dict[str, Any]:
        return {
            "v": ENTRY_VERSION,
            "kind": self.kind,
            "tenant_id": self.tenant_id,
            "run_id": self.run_id,
            "trace_id": self.trace_id,
            "chain_length": self.chain_length,
            "root_hash": self.root_hash,
            "recorded_at": canonical_timestamp(self.recorded_at),
        }

    def canonical(self) -> bytes:
        return canonicalize(self.record(), strict=False)

    def leaf(self) -> bytes:
        return leaf_hash(self.canonical())

    @property
    def index(self) -> int:
        return self.seq - 1

    def names_run(self) -> str:
        return f"ledger entry {self.seq} (tenant {self.tenant_id!r}, run {self.run_id!r})"
