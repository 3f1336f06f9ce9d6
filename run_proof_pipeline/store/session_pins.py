"""The session settings every connection of ours pins, so the database cannot steer a proof.

What a value looks like on the wire (`extra_float_digits`, `DateStyle`, `IntervalStyle`,
`TimeZone`, `client_encoding`, `bytea_output`), which relation a name means (`search_path`)
and which rows a query sees (`row_security`, `transform_null_equals`) are session settings,
and the database owner (`ALTER DATABASE ... SET`) or any role (`ALTER ROLE CURRENT_USER SET`)
can change their defaults. docs/threat-model.md ("What a proof trusts") lists the attacks.

Two layers, so that neither alone is trusted:
- libpq startup options (`-c name=value`) on every connection we open: they take precedence
  over database and role defaults, and cover connections that never open a snapshot;
- `set_config(..., true)` inside every proof's snapshot transaction (pin_transaction), so a
  proof's reads run under these values whatever happened on the connection before.

The search path is `pg_catalog, <schema>`: built-in functions and operators come first and
cannot be shadowed, and the store's tables are those of the configured schema only (no
`"$user"` schema). Migrations, which create objects, use `<schema>, pg_catalog` instead.
"""

from __future__ import annotations

import os
import re

__all__ = [
    "SCHEMA_ENV",
    "pinned_settings",
    "proof_search_path",
    "startup_options",
    "store_schema",
]

SCHEMA_ENV = "RUN_PROOF_SCHEMA"
DEFAULT_SCHEMA = "public"
# A plain lower-case identifier: no quoting needed anywhere it is written (options, SQL).
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# Rendering and visibility settings, fixed for every connection (settable by any role).
_RENDERING: tuple[tuple[str, str], ...] = (
    # PostgreSQL >= 12: any value > 0 prints the shortest text that reads back exactly.
    ("extra_float_digits", "1"),
    ("DateStyle", "ISO,MDY"),
    ("IntervalStyle", "postgres"),
    ("TimeZone", "UTC"),
    ("bytea_output", "hex"),
    ("standard_conforming_strings", "on"),
    # On: a policy that would hide rows is checked before proving (store/relations.py);
    # off would make every query on a FORCEd table fail for the owner.
    ("row_security", "on"),
    ("transform_null_equals", "off"),
    ("quote_all_identifiers", "off"),
    ("xmloption", "content"),
    ("default_transaction_isolation", "read committed"),
    ("default_transaction_read_only", "off"),
    ("default_transaction_deferrable", "off"),
)
# client_encoding is a startup option only: changing it inside a transaction would race
# psycopg's own decoding. The proof also checks the encoding it actually got (copies_utf8).
_STARTUP_ONLY: tuple[tuple[str, str], ...] = (("client_encoding", "UTF8"),)


def store_schema() -> str:
    """The schema of the trace store: RUN_PROOF_SCHEMA, default `public`."""
    raw = os.environ.get(SCHEMA_ENV, "")
    schema = raw.strip() or DEFAULT_SCHEMA
    if not _SCHEMA_NAME.fullmatch(schema):
        # Imported here: segment workers load this module and stay light (psycopg only).
        from run_proof_pipeline.settings import ConfigError

        raise ConfigError(
            f"{SCHEMA_ENV}={raw!r} is not a schema name this tool accepts "
            "(lower-case letters, digits and '_', at most 63, not starting with a digit)"
        )
    return schema


def proof_search_path(schema: str | None = None) -> str:
    return f"pg_catalog, {schema or store_schema()}"


def _ddl_search_path(schema: str | None = None) -> str:
    return f"{schema or store_schema()}, pg_catalog"


def pinned_settings(*, ddl: bool = False, schema: str | None = None) -> list[tuple[str, str]]:
    """(name, value) of every pinned setting that can be set inside a transaction."""
    path = _ddl_search_path(schema) if ddl else proof_search_path(schema)
    return [("search_path", path), *_RENDERING]


def startup_options(*, ddl: bool = False, schema: str | None = None) -> str:
    """The libpq `options` value pinning every setting at connection start."""
    pairs = [*pinned_settings(ddl=ddl, schema=schema), *_STARTUP_ONLY]
    # libpq splits `options` on unescaped spaces; a value's own spaces are escaped.
    return " ".join(f"-c {name}={value.replace(' ', chr(92) + ' ')}" for name, value in pairs)
