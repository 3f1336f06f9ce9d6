"""SQL shipped with the package: canonical JSON and hash chain v1 in PostgreSQL.

`canonical_json.sql` defines the functions (docs/sql-canonical.md). It names its schema
`@schema@` everywhere, so that every function is created, and calls its siblings,
schema-qualified: nothing depends on the search_path of the session that installs it or
of the session that calls it. `canonical_json_sql(schema)` returns the text ready to run
(one psycopg `execute()` without parameters; it is idempotent).
"""

from __future__ import annotations

from importlib import resources

__all__ = [
    "CANONICAL_JSON_FUNCTIONS",
    "SCHEMA_PLACEHOLDER",
    "canonical_json_sql",
    "quote_identifier",
]

SCHEMA_PLACEHOLDER = "@schema@"

# Every function the file defines, as PostgreSQL's regprocedure prints it (for grants,
# checks and drops): name(argument types).
_TS = "timestamp with time zone"
_STEP = (
    "text,text,bigint,text,text,jsonb,text,text,text,jsonb,"
    f"double precision,double precision,bigint,{_TS}"
)
CANONICAL_JSON_FUNCTIONS = (
    "run_proof_es6_layout(text)",
    "run_proof_shortest_double(double precision)",
    "run_proof_jcs_double(double precision)",
    "run_proof_jcs_number(numeric,boolean)",
    "run_proof_utf16_sort_key(text)",
    "run_proof_jcs_walk(jsonb,boolean,boolean,integer)",
    "run_proof_jcs_node(jsonb,boolean,integer)",
    "run_proof_jcs(jsonb)",
    "run_proof_jcs_exact(jsonb)",
    "run_proof_jcs_problem(jsonb,boolean)",
    f"run_proof_canonical_timestamp({_TS})",
    "run_proof_v1_integer(bigint)",
    f"run_proof_v1_header_canonical(text,text,text,text,text,jsonb,{_TS})",
    f"run_proof_v1_genesis_hash(text,text,text,text,text,jsonb,{_TS})",
    f"run_proof_v1_step_canonical({_STEP})",
    f"run_proof_v1_step_hash(text,{_STEP})",
    f"run_proof_v1_seal_canonical(text,text,text,{_TS},bigint)",
    f"run_proof_v1_root_hash(text,text,text,text,{_TS},bigint)",
)


def quote_identifier(name: str) -> str:
    """`name` as a double-quoted SQL identifier (what psycopg's sql.Identifier writes).

    A `$` is refused: the name also lands inside the functions' `$$`-quoted bodies, where
    `$$` would end the body.
    """
    if not name or "\x00" in name or "$" in name:
        raise ValueError(f"schema name {name!r} is empty or holds U+0000 or '$'")
    return '"' + name.replace('"', '""') + '"'


def canonical_json_sql(schema: str) -> str:
    """The text of canonical_json.sql with its functions placed in `schema`."""
    text = resources.files(__name__).joinpath("canonical_json.sql").read_text(encoding="utf-8")
    return text.replace(SCHEMA_PLACEHOLDER, quote_identifier(schema))
