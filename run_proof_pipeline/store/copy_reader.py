"""A synchronous reader that joins another transaction's snapshot and streams COPY lines.

The proof's snapshot is held by the coordinator's (or a sweep page's) async transaction,
which exports it (`pg_export_snapshot()`); this connection imports it, so what it reads is
exactly what that transaction sees.  Lines come straight from libpq (`psycopg.pq`):
psycopg's Copy iterator costs about as much per row as hashing the row, and a sync loop
also skips the asyncio round per row of the async driver.

Imports stay light (psycopg only): segment worker processes start with this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType

import psycopg
from psycopg import pq, sql

from run_proof_pipeline.store.session_pins import pinned_settings, startup_options

__all__ = ["SnapshotCopyReader"]


class SnapshotCopyReader:
    def __init__(self, conninfo: str) -> None:
        # UTF-8 on the wire: the line decoder hashes the COPY bytes as they arrive. Every
        # rendering setting is pinned at start (store/session_pins.py) and again in join().
        self._conn = psycopg.connect(
            conninfo, client_encoding="UTF8", autocommit=True, options=startup_options()
        )

    def __enter__(self) -> SnapshotCopyReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def join(self, snapshot: str) -> None:
        """End any previous read and start a REPEATABLE READ transaction in `snapshot`,
        under the pinned session settings the line decoder expects (UTC, ISO dates, ...)."""
        conn = self._conn
        if conn.info.transaction_status != pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        # Must be the transaction's first statement; the id goes in as a quoted literal.
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        for name, value in pinned_settings():
            conn.execute("SELECT pg_catalog.set_config(%s, %s, true)", (name, value))
        if conn.info.encoding != "utf-8":
            raise psycopg.OperationalError(
                f"client encoding is {conn.info.encoding}, not UTF-8: refusing to read"
            )

    def lines(self, statement: sql.Composable) -> Iterator[bytes]:
        """Each line of `COPY (...) TO STDOUT` (text format, ending in a newline).

        Closing the iterator before the end closes the connection (the server would
        otherwise keep sending): a reader left that way takes no further statement.
        """
        pgconn = self._conn.pgconn
        pgconn.send_query(statement.as_bytes(self._conn))
        started = pgconn.get_result()
        if started is None or started.status != pq.ExecStatus.COPY_OUT:
            raise psycopg.OperationalError(_error(pgconn, started))
        get_copy_data = pgconn.get_copy_data
        finished = False
        try:
            while True:
                size, data = get_copy_data(0)  # blocks until a row (or the end) arrives
                if size < 0:
                    break
                yield bytes(data)
            if size == -2:
                raise psycopg.OperationalError(_error(pgconn, None))
            result = pgconn.get_result()
            if result is None or result.status != pq.ExecStatus.COMMAND_OK:
                raise psycopg.OperationalError(_error(pgconn, result))
            while pgconn.get_result() is not None:  # the end of this statement's results
                pass
            finished = True
        finally:
            if not finished:
                self.close()


def _error(pgconn: pq.abc.PGconn, result: pq.abc.PGresult | None) -> str:
    message = result.error_message if result is not None else b""
    return (message or pgconn.error_message or b"COPY failed").decode("utf-8", "replace").strip()
