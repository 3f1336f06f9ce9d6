"""Read one trace in one consistent snapshot, streaming its steps in index order.

Everything a proof reads happens inside one REPEATABLE READ transaction (spec), so a
concurrent append or seal cannot produce a false verdict. Steps arrive through COPY in
text format and are never held whole: a run of a million steps costs a batch of memory.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.types.json import set_json_loads
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.integrity import parse_stored_json
from run_proof_pipeline.store.relations import PROOF_RELATIONS, check_proof_relations
from run_proof_pipeline.store.session_pins import pinned_settings, store_schema
from run_proof_pipeline.store.step_columns import (
    STEP_COLUMNS,
    STEP_SELECT,
    STEP_V2_COLUMNS,
    step_v2_from,
    step_v2_select,
)

StepKind = Literal["v1", "v2", "v2-adopted"]


@dataclass(frozen=True)
class TraceRow:
    """One aos_traces row as a proof reads it.  `root_hash` is the column (AOS's own value on
    a format-v2 trace, docs/hash-chain-v2.md "Where every value is stored"); the format's
    seal, v1 and v2 alike, is `seal_hash`."""

    trace_id: str
    run_id: str
    tenant_id: str
    agent_id: str | None
    plan_id: str | None
    plan: Any
    status: str
    started_at: datetime
    completed_at: datetime | None
    genesis_hash: str | None
    root_hash: str | None
    chain_length: int | None
    seal_seq: int | None
    # Set when a legacy trace was adopted: its proof covers changes since then, not the run.
    adopted_at: datetime | None = None
    # 1, 2, or None for a legacy trace (unproven).
    chain_format: int | None = None
    seal_hash: str | None = None
    # Why the database could not hash the header (format v2), else None.
    chain_problem: str | None = None
    created_at: datetime | None = None
    correlation_id: str | None = None
    seed: Any = None
    frozen_timestamp: str | None = None
    plan_hash: str | None = None
    schema_version: str | None = None
    stored_by: str | None = None
    checksum: str | None = None
    incident_id: str | None = None
    is_synthetic: Any = None
    synthetic_scenario_id: str | None = None
    # jsonb text of plan, trace and metadata (_JSON_AS_TEXT), read for format-v2 traces only.
    plan_text: str | None = None
    trace_text: str | None = None
    metadata_text: str | None = None

    @property
    def legacy(self) -> bool:
        """No format to prove: chain_format NULL, or a format-v1 row whose genesis is gone
        (docs/hash-chain-v2.md; a v2 row without a genesis is a FAILED header instead)."""
        return self.chain_format is None or (self.chain_format == 1 and self.genesis_hash is None)

    @property
    def adopted(self) -> bool:
        return self.adopted_at is not None


# The v2 header's JSON columns travel as text, for format-v2 traces only: the integrity core
# parses them with every number exact (parse_stored_json_v2, docs/hash-chain-v2.md "exact
# numbers"); a v1 trace's proof never reads them (its `plan` is decoded as before).
_JSON_AS_TEXT = {f"{column}_text": column for column in ("plan", "trace", "metadata")}
# The SELECT list of a TraceRow: each of its fields is a column, or a JSON column's text.
TRACE_COLUMNS = ", ".join(
    f"CASE WHEN chain_format = 2 THEN {_JSON_AS_TEXT[name]}::text END AS {name}"
    if name in _JSON_AS_TEXT
    else name
    for name in (field.name for field in fields(TraceRow))
)


def decode_json_as_stored(driver: psycopg.AsyncConnection[Any] | psycopg.Connection[Any]) -> None:
    """Make `driver` decode json/jsonb values (the header's `plan`) with parse_stored_json,
    as the step columns are: the stored-number rule (docs/stored-numbers.md) and the nesting
    rule (docs/json-nesting.md) then hold for them too, and a value nested deeper than any
    Python parser reads comes back as an UnrepresentableNesting (the header FAILS, naming
    it) instead of a RecursionError inside psycopg's default json.loads."""
    set_json_loads(parse_stored_json, driver)


def pin_statement() -> tuple[str, dict[str, str]]:
    """One SELECT that pins every setting of store/session_pins.py for this transaction,
    names and values as bound parameters."""
    pins = pinned_settings()
    calls = ", ".join(f"pg_catalog.set_config(:n{i}, :v{i}, true)" for i in range(len(pins)))
    params = {f"n{i}": name for i, (name, _) in enumerate(pins)}
    params |= {f"v{i}": value for i, (_, value) in enumerate(pins)}
    return f"SELECT {calls}", params


async def begin_snapshot(conn: AsyncConnection) -> None:
    """Make `conn`'s transaction a REPEATABLE READ snapshot under the pinned settings, and
    check that the relations a proof reads are the store's own (store/relations.py)."""
    await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
    # The header's `plan` is read as the step columns are: the stored-number and nesting rules
    # hold for it too (docs/stored-numbers.md, docs/json-nesting.md), and a value deeper than
    # Python's parser reads is a FAILED header, not a RecursionError in psycopg's json.loads.
    decode_json_as_stored(await psycopg_connection(conn))
    statement, params = pin_statement()
    await conn.execute(text(statement), params)
    await check_proof_relations(conn, store_schema(), PROOF_RELATIONS)


async def export_snapshot(conn: AsyncConnection) -> str:
    """The id under which other connections can join this transaction's snapshot
    (SnapshotCopyReader.join); valid while this transaction stays open."""
    return str((await conn.execute(text("SELECT pg_export_snapshot()"))).scalar_one())


async def read_trace(conn: AsyncConnection, tenant_id: str, run_id: str) -> TraceRow | None:
    # The tenant is part of the key: another tenant's run reads exactly like a missing one.
    row = (
        await conn.execute(
            text(
                f"SELECT {TRACE_COLUMNS} FROM aos_traces"  # noqa: S608 - constant column list
                " WHERE tenant_id = :tenant_id AND run_id = :run_id"
                # An upgraded AOS store may hold legacy duplicates of a run id (only format
                # traces are unique per run): the format trace is the one to prove, then the
                # newest.  `genesis_hash IS NULL` second: a v2 trace whose header could not
                # be hashed is still a format trace (it is proved, and fails at the header).
                " ORDER BY chain_format IS NULL, genesis_hash IS NULL, started_at DESC LIMIT 1"
            ),
            {"tenant_id": tenant_id, "run_id": run_id},
        )
    ).first()
    return None if row is None else TraceRow(**row._mapping)


async def psycopg_connection(conn: AsyncConnection) -> psycopg.AsyncConnection[Any]:
    """The psycopg connection under a SQLAlchemy one (the store's engines are psycopg's)."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    if not isinstance(driver, psycopg.AsyncConnection):
        raise TypeError(f"the store's connection is not psycopg's: {type(driver).__name__}")
    return driver


async def connection_conninfo(conn: AsyncConnection) -> tuple[str, str | None]:
    """The libpq parameters of `conn`, password included (for a connection that joins its
    snapshot: never put on a command line or into a log), and the password."""
    info = (await psycopg_connection(conn)).info
    params = dict(info.get_parameters())
    if info.password:
        params["password"] = info.password
    return make_conninfo("", **params), info.password or None


async def copies_utf8(conn: AsyncConnection) -> bool:
    """True when COPY text arrives in UTF-8, so raw lines can be hashed as they are."""
    return (await psycopg_connection(conn)).info.encoding == "utf-8"


@asynccontextmanager
async def _copy_out(
    conn: AsyncConnection, statement: str, params: tuple[Any, ...]
) -> AsyncIterator[psycopg.AsyncCopy]:
    """A COPY ... TO STDOUT that the reader may leave early (a proof stops at its first
    failure) without spoiling the snapshot: psycopg then cancels the statement, which aborts
    the transaction, so the COPY runs in a savepoint that is rolled back in that case.  The
    snapshot of a REPEATABLE READ transaction survives the rollback to a savepoint."""
    driver = await psycopg_connection(conn)
    await driver.execute("SAVEPOINT run_proof_copy")
    try:
        async with driver.cursor() as cursor:
            # psycopg merges the parameters client-side with proper quoting (COPY takes no
            # server-side parameters); the statement text itself is constant.
            async with cursor.copy(statement, params) as copy:
                yield copy
    except BaseException:
        await driver.execute("ROLLBACK TO SAVEPOINT run_proof_copy")
        raise
    await driver.execute("RELEASE SAVEPOINT run_proof_copy")


_STEP_COPY = (
    f"COPY (SELECT {STEP_SELECT} FROM aos_trace_steps"  # noqa: S608
    " WHERE trace_id = %s ORDER BY step_index) TO STDOUT"
)


def _step_copy(conn: AsyncConnection, trace_id: str) -> Any:
    return _copy_out(conn, _STEP_COPY, (trace_id,))


def step_lines_statement(trace: TraceRow) -> sql.Composed:
    """stream_step_lines()'s COPY (stream_step_lines_v2()'s for a format-v2 trace), for a
    SnapshotCopyReader: the id as a quoted literal."""
    text_ = _step_copy_v2_text(trace) if trace.chain_format == 2 else _STEP_COPY
    return sql.SQL(text_.replace("%s", "{}")).format(sql.Literal(trace.trace_id))


async def stream_step_rows(
    conn: AsyncConnection, trace_id: str
) -> AsyncGenerator[tuple[str | None, ...], None]:
    """Yield the trace's step rows in `step_index` order as tuples of text (None for NULL)."""
    async with _step_copy(conn, trace_id) as copy:
        copy.set_types(["text"] * len(STEP_COLUMNS))
        async for row in copy.rows():
            yield row


async def stream_step_lines(conn: AsyncConnection, trace_id: str) -> AsyncGenerator[bytes, None]:
    """Yield the trace's step rows in `step_index` order as raw COPY text lines (one
    `\\t`-separated line per row, ending in `\\n`): no per-value conversion at all."""
    async with _step_copy(conn, trace_id) as copy:
        # PostgreSQL sends one CopyData message per row.
        async for data in copy:
            yield bytes(data)


def _step_copy_v2_text(trace: TraceRow) -> str:
    adopted = trace.adopted
    return (
        f"COPY (SELECT {step_v2_select(adopted=adopted)}"  # noqa: S608 - constant text
        f" FROM {step_v2_from(adopted=adopted)}"
        " WHERE s.trace_id = %s ORDER BY s.step_index) TO STDOUT"
    )


def _step_copy_v2(conn: AsyncConnection, trace: TraceRow) -> Any:
    return _copy_out(conn, _step_copy_v2_text(trace), (trace.trace_id,))


async def stream_step_lines_v2(
    conn: AsyncConnection, trace: TraceRow
) -> AsyncGenerator[bytes, None]:
    """The steps of a format-v2 trace in `step_index` order as raw COPY lines of
    STEP_V2_COLUMNS (store/step_rows_v2.py says where their hashes come from)."""
    async with _step_copy_v2(conn, trace) as copy:
        async for data in copy:
            yield bytes(data)


async def stream_step_rows_v2(
    conn: AsyncConnection, trace: TraceRow
) -> AsyncGenerator[tuple[str | None, ...], None]:
    """stream_step_lines_v2() as tuples of text, decoded by psycopg (any client encoding)."""
    async with _step_copy_v2(conn, trace) as copy:
        copy.set_types(["text"] * len(STEP_V2_COLUMNS))
        async for row in copy.rows():
            yield row


_MANY_STEP_LINES = (
    f"COPY (SELECT trace_id, {STEP_SELECT} FROM aos_trace_steps"  # noqa: S608
    " WHERE trace_id = ANY({}) ORDER BY trace_id, step_index) TO STDOUT"
)


def _many_v2_step_lines(adopted: bool) -> str:
    return (
        f"COPY (SELECT s.trace_id, {step_v2_select(adopted=adopted)}"  # noqa: S608
        f" FROM {step_v2_from(adopted=adopted)}"
        " WHERE s.trace_id = ANY({}) ORDER BY s.trace_id, s.step_index) TO STDOUT"
    )


def _many_statement(kind: StepKind) -> str:
    if kind == "v1":
        return _MANY_STEP_LINES
    return _many_v2_step_lines(kind == "v2-adopted")


def step_kind(trace: TraceRow) -> StepKind:
    """Which step columns a trace's proof reads: format v2 (native or adopted, see
    store/step_rows_v2.py), else format v1's (legacy traces too: they are only counted)."""
    if trace.chain_format == 2:
        return "v2-adopted" if trace.adopted else "v2"
    return "v1"


def many_step_lines_statement(trace_ids: list[str], kind: StepKind = "v1") -> sql.Composed:
    """The COPY of stream_many_step_lines(), composed with its ids quoted as a literal."""
    return sql.SQL(_many_statement(kind)).format(sql.Literal(trace_ids))


async def stream_many_step_lines(
    conn: AsyncConnection, trace_ids: list[str], kind: StepKind = "v1"
) -> AsyncGenerator[bytes, None]:
    """Yield the steps of several traces of one step kind (step_kind()) as raw COPY lines
    with `trace_id` as an extra first column, each trace's steps together and in
    `step_index` order: one statement for a batch of small traces instead of one per trace."""
    # `= ANY` on the leading column of the (trace_id, step_index) index: the index scan
    # returns the rows in this order, without a sort.
    async with _copy_out(conn, _many_statement(kind).format("%s"), (trace_ids,)) as copy:
        async for data in copy:
            yield bytes(data)
