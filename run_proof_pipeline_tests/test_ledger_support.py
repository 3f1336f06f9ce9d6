"""Helpers for the ledger, checkpoint and tamper tests (no tests here).

`tamper()` acts as the table owner / superuser would: every user trigger of the trace
tables and the ledger is disabled for the statements, then restored to its exact state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from run_proof_pipeline.integrity import (
    ChainHashes,
    compute_chain,
    header_record,
    seal_record,
    step_record,
)
from run_proof_pipeline.ledger.audit import AuditReport, audit_ledger
from run_proof_pipeline.ledger.create import CreatedCheckpoint, create_checkpoint
from run_proof_pipeline.ledger.entry import LedgerEntry
from run_proof_pipeline.ledger.queries import read_entries
from run_proof_pipeline.ledger.settings import load_ledger_settings
from run_proof_pipeline.ledger.snapshot_run import in_snapshot
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.store_fixtures import BASE, make_step

TAMPERED_TABLES = ("aos_traces", "aos_trace_steps", "run_proof_ledger")
_STATE_SQL = {"A": "ENABLE ALWAYS TRIGGER", "O": "ENABLE TRIGGER", "R": "ENABLE REPLICA TRIGGER"}

Statement = tuple[str, Sequence[Any]]


def tamper(url: DatabaseUrl, *statements: Statement) -> list[int]:
    """Run `statements` in one transaction with every user trigger of the trace tables and
    the ledger off, as their owner could; returns each statement's rowcount."""
    with psycopg.connect(url.libpq()) as conn:
        triggers = conn.execute(
            "SELECT c.relname, t.tgname, t.tgenabled FROM pg_trigger t"
            " JOIN pg_class c ON c.oid = t.tgrelid"
            " WHERE NOT t.tgisinternal AND c.relname = ANY(%s)",
            (list(TAMPERED_TABLES),),
        ).fetchall()
        for table, name, _state in triggers:
            conn.execute(
                sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(
                    sql.Identifier(table), sql.Identifier(name)
                )
            )
        counts = [conn.execute(text, params).rowcount for text, params in statements]
        for table, name, state in triggers:
            conn.execute(
                sql.SQL("ALTER TABLE {} {} {}").format(
                    sql.Identifier(table), sql.SQL(_STATE_SQL[state]), sql.Identifier(name)
                )
            )
    return counts


def one(url: DatabaseUrl, query: str, params: Sequence[Any] = ()) -> Any:
    with psycopg.connect(url.libpq()) as conn:
        row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


@dataclass(frozen=True)
class RunShape:
    """What `store_fixtures.record_run` writes, so a test can recompute the chain an
    attacker would write after changing the content."""

    tenant_id: str
    run_id: str
    steps: int = 3
    status: str = "succeeded"

    def step_fields(self, index: int) -> dict[str, Any]:
        return make_step(index, at=BASE + timedelta(seconds=index)).model_dump()

    def chain(
        self, changes: dict[int, dict[str, Any]] | None = None, *, length: int | None = None
    ) -> ChainHashes:
        changes = changes or {}
        n = self.steps if length is None else length
        ids = {"tenant_id": self.tenant_id, "run_id": self.run_id}
        header = header_record(
            **ids,
            trace_id=f"trace-{self.run_id}",
            agent_id="agent-7",
            plan_id="plan-42",
            plan={"goal": "fetch and summarize"},
            started_at=BASE,
        )
        steps = [
            step_record(**ids, step_index=i, **{**self.step_fields(i), **changes.get(i, {})})
            for i in range(n)
        ]
        seal = seal_record(
            **ids, status=self.status, completed_at=BASE + timedelta(hours=1), chain_length=n
        )
        return compute_chain(header, steps, seal)


def make_checkpoint(url: DatabaseUrl) -> CreatedCheckpoint:
    settings = load_ledger_settings()
    return in_snapshot(url, lambda conn: create_checkpoint(conn, settings))


def audit(url: DatabaseUrl, checkpoint: Path | None = None) -> AuditReport:
    settings = load_ledger_settings()
    return in_snapshot(url, lambda conn: audit_ledger(conn, settings, checkpoint=checkpoint))


def ledger_entries(url: DatabaseUrl) -> list[LedgerEntry]:
    return in_snapshot(url, read_entries)
