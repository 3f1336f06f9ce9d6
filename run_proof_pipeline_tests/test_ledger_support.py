"""Helpers for the ledger, checkpoint and tamper tests (no tests here).

`tamper()` acts as the table owner / superuser would: every user trigger of the trace
tables and the ledger is disabled for the statements, then restored to its exact state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import psycopg.rows
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
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import run_on_connection

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


_STEP_COLUMNS = (
    "skill_id, skill_name, params, status, outcome_category, outcome_code, outcome_data,"
    ' cost_cents, duration_ms, retry_count, "timestamp"'
)


@dataclass(frozen=True)
class RunShape:
    """A format-v1 run as the store holds it, read back (`RunShape.read`), so that a test can
    recompute the chain an attacker would write after changing the content. Nothing here is
    what a fixture meant to write: read() checks that the values it read reproduce the
    stored hashes, so the arithmetic is the store's."""

    tenant_id: str
    run_id: str
    header: dict[str, Any]
    step_rows: tuple[dict[str, Any], ...]
    seal: tuple[str, Any] | None  # (status, completed_at) when sealed

    @classmethod
    def read(cls, url: DatabaseUrl, tenant_id: str, run_id: str) -> RunShape:
        with psycopg.connect(url.libpq()) as conn:
            conn.row_factory = psycopg.rows.dict_row
            trace = conn.execute(
                "SELECT trace_id, agent_id, plan_id, plan, started_at, status, completed_at,"
                " root_hash, genesis_hash FROM aos_traces WHERE tenant_id = %s AND run_id = %s",
                (tenant_id, run_id),
            ).fetchone()
            assert trace is not None, f"no trace of run {run_id!r} of tenant {tenant_id!r}"
            rows = conn.execute(
                f"SELECT {_STEP_COLUMNS}, step_hash FROM aos_trace_steps WHERE trace_id = %s"
                " ORDER BY step_index",
                (trace["trace_id"],),
            ).fetchall()
        header = {k: trace[k] for k in ("trace_id", "agent_id", "plan_id", "plan", "started_at")}
        sealed = trace["root_hash"] is not None
        shape = cls(
            tenant_id,
            run_id,
            header,
            tuple({k: v for k, v in row.items() if k != "step_hash"} for row in rows),
            (trace["status"], trace["completed_at"]) if sealed else None,
        )
        chain = shape.chain()
        assert chain.genesis_hash == trace["genesis_hash"], "not a format-v1 run as stored"
        assert list(chain.step_hashes) == [row["step_hash"] for row in rows]
        assert chain.root_hash == trace["root_hash"]
        return shape

    @property
    def steps(self) -> int:
        return len(self.step_rows)

    def step_fields(self, index: int) -> dict[str, Any]:
        return dict(self.step_rows[index])

    def chain(
        self,
        changes: dict[int, dict[str, Any]] | None = None,
        *,
        length: int | None = None,
        sealed_as: tuple[str, Any] | None = None,
    ) -> ChainHashes:
        """The chain of the first `length` steps (all), with `changes` to step fields, sealed
        as stored or as `sealed_as` (status, completed_at); no seal for an unsealed run."""
        changes = changes or {}
        n = self.steps if length is None else length
        ids = {"tenant_id": self.tenant_id, "run_id": self.run_id}
        steps = [
            step_record(**ids, step_index=i, **{**self.step_fields(i), **changes.get(i, {})})
            for i in range(n)
        ]
        seal = sealed_as or self.seal
        return compute_chain(
            header_record(**ids, **self.header),
            steps,
            None
            if seal is None
            else seal_record(**ids, status=seal[0], completed_at=seal[1], chain_length=n),
        )


def make_checkpoint(url: DatabaseUrl) -> CreatedCheckpoint:
    settings = load_ledger_settings()
    return run_on_connection(url, lambda conn: create_checkpoint(conn, settings), snapshot=True)


def audit(url: DatabaseUrl, checkpoint: Path | None = None) -> AuditReport:
    settings = load_ledger_settings()
    return run_on_connection(
        url, lambda conn: audit_ledger(conn, settings, checkpoint=checkpoint), snapshot=True
    )


def ledger_entries(url: DatabaseUrl) -> list[LedgerEntry]:
    return run_on_connection(url, read_entries, snapshot=True)
