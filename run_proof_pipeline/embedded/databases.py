"""Databases on the server, made and dropped over an administrator's connection: names
checked first (the server silently truncates one over 63 bytes), quoted as identifiers."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from psycopg import errors, sql

from run_proof_pipeline.embedded.errors import LocalPostgresError

__all__ = ["MAX_IDENTIFIER_BYTES", "create_database", "drop_database", "validate_db_name"]

MAX_IDENTIFIER_BYTES = 63  # NAMEDATALEN - 1; longer names are silently truncated by the server

AdminConnect = Callable[[], psycopg.Connection]


def validate_db_name(name: str) -> str:
    if not name or "\x00" in name or len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise ValueError(
            f"invalid database name {name!r}: must be 1..{MAX_IDENTIFIER_BYTES} bytes, no NUL"
        )
    return name


def create_database(connect: AdminConnect, name: str, *, exist_ok: bool) -> None:
    """Create ``name`` from template0; an existing one is fine with ``exist_ok``, else a
    ``LocalPostgresError``."""
    validate_db_name(name)
    with connect() as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists and not exist_ok:
            raise LocalPostgresError(f"database {name!r} already exists")
        if not exists:
            # template0 because template1 may have sessions, which makes CREATE DATABASE fail.
            stmt = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
            try:
                conn.execute(stmt)
            except errors.DuplicateDatabase:
                if not exist_ok:
                    raise LocalPostgresError(f"database {name!r} already exists") from None


def drop_database(connect: AdminConnect, name: str) -> None:
    """Drop ``name`` if it exists, disconnecting any sessions still using it."""
    validate_db_name(name)
    with connect() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
