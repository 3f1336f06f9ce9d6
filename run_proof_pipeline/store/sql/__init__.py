"""SQL shipped with the package: canonical JSON and hash chains v1 and v2 in PostgreSQL.

`canonical_json.sql` defines canonical JSON and the functions of format v1, `chain_v2.sql`
those of format v2, on top of the former (docs/sql-canonical.md). Each file names its schema
`@schema@` everywhere, so that every function is created, and calls its siblings,
schema-qualified: nothing depends on the search_path of the session that installs it or
of the session that calls it. Each function has a line `@pins@` where its `SET` clauses go,
written once here (`PINS_SQL`), so that every function pins the same settings.
`canonical_json_sql(schema)` and `chain_v2_sql(schema)` return the texts ready to run (one
psycopg `execute()` each without parameters, the former first; both are idempotent).
"""

from __future__ import annotations

import re
from importlib import resources

__all__ = [
    "CANONICAL_JSON_FUNCTIONS",
    "PINS_PLACEHOLDER",
    "PINS_SQL",
    "SCHEMA_PLACEHOLDER",
    "CHAIN_V2_FUNCTIONS",
    "canonical_json_sql",
    "chain_v2_sql",
    "quote_identifier",
]

SCHEMA_PLACEHOLDER = "@schema@"
PINS_PLACEHOLDER = "@pins@"
_PLACEHOLDER = re.compile(r"@[A-Za-z_]+@")

# The SET clauses every function has, in this order, so that no session, role or database
# default can change a byte (docs/sql-canonical.md, "Settings pinned, and why"): built-ins
# only on the path, pg_temp last (else it is searched first for type names); how the bodies'
# string and timestamp literals are read; float8out's shortest round-trip digits (needs
# extra_float_digits > 0); generic plans (a session forcing custom plans made every call
# 2.7x slower, though no result depends on the plan).
PINS_SQL = """\
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 1
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SET plan_cache_mode = force_generic_plan"""

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
    "run_proof_v1_link_hash(text,text)",
    f"run_proof_v1_step_canonical({_STEP})",
    f"run_proof_v1_step_hash(text,{_STEP})",
    f"run_proof_v1_seal_canonical(text,text,text,{_TS},bigint)",
    f"run_proof_v1_root_hash(text,text,text,text,{_TS},bigint)",
)

# The functions of chain_v2.sql, in the same form.
_V2_HEADER = (
    f"text,text,text,text,text,jsonb,{_TS},{_TS},text,numeric,text,text,text,jsonb,text,"
    "text,text,boolean,text,text"
)
_V2_STEP = (
    "text,text,text,bigint,text,text,jsonb,text,text,text,jsonb,double precision,"
    f"double precision,bigint,{_TS},text,text,text,text,text,text,text,boolean,text"
)
_V2_SEAL = f"text,text,text,text,{_TS},bigint,jsonb"
CHAIN_V2_FUNCTIONS = (
    "run_proof_jcs2_number(numeric)",
    "run_proof_jcs2_depth(jsonb)",
    "run_proof_jcs2_walk(jsonb,integer)",
    "run_proof_jcs2_node(jsonb,integer)",
    "run_proof_jcs2(jsonb)",
    "run_proof_jcs2_problem(jsonb)",
    "run_proof_v2_double_problem(double precision)",
    f"run_proof_v2_timestamp_problem({_TS})",
    f"run_proof_v2_header_canonical({_V2_HEADER})",
    f"run_proof_v2_genesis_hash({_V2_HEADER})",
    f"run_proof_v2_header_problem({_V2_HEADER})",
    f"run_proof_v2_step_canonical({_V2_STEP})",
    f"run_proof_v2_step_hash(text,{_V2_STEP})",
    f"run_proof_v2_step_problem({_V2_STEP})",
    f"run_proof_v2_seal_canonical({_V2_SEAL})",
    f"run_proof_v2_seal_hash(text,{_V2_SEAL})",
    f"run_proof_v2_seal_problem({_V2_SEAL})",
)


def quote_identifier(name: str) -> str:
    """`name` as a double-quoted SQL identifier (what psycopg's sql.Identifier writes).

    A `$` is refused: the name also lands inside the functions' `$$`-quoted bodies, where
    `$$` would end the body.
    """
    if not name or "\x00" in name or "$" in name:
        raise ValueError(f"schema name {name!r} is empty or holds U+0000 or '$'")
    return '"' + name.replace('"', '""') + '"'


def _expand(text: str, schema: str, name: str = "canonical_json.sql") -> str:
    """`text` with its placeholders filled in; ValueError for a file that is not as written.

    Strict, because a slip would install functions that trust the session: a placeholder
    other than the two, a missing one, or a pins placeholder anywhere but on a line of its
    own in a function's header, before `AS $$`, exactly once per function (so that every
    function is pinned), is refused rather than installed half-substituted.
    """
    unknown = set(_PLACEHOLDER.findall(text)) - {SCHEMA_PLACEHOLDER, PINS_PLACEHOLDER}
    if unknown:
        raise ValueError(f"{name} holds unknown placeholders {sorted(unknown)}")
    if SCHEMA_PLACEHOLDER not in text:
        raise ValueError(f"{name} holds no {SCHEMA_PLACEHOLDER}")
    functions = text.split("\nCREATE OR REPLACE FUNCTION ")[1:]
    headers = [function.split("\nAS $$", 1)[0] + "\n" for function in functions]
    pinned = sum(header.count(f"\n{PINS_PLACEHOLDER}\n") == 1 for header in headers)
    if pinned != len(functions) or text.count(PINS_PLACEHOLDER) != len(functions):
        raise ValueError(
            f"{name}: {len(functions) - pinned} of {len(functions)} functions lack"
            f" a line {PINS_PLACEHOLDER} before AS $$, and it stands"
            f" {text.count(PINS_PLACEHOLDER)} times in all: it goes exactly once in each"
            " function's header, on a line of its own"
        )
    return text.replace(PINS_PLACEHOLDER, PINS_SQL).replace(
        SCHEMA_PLACEHOLDER, quote_identifier(schema)
    )


def canonical_json_sql(schema: str) -> str:
    """The text of canonical_json.sql with its functions placed in `schema` and pinned."""
    quote_identifier(schema)  # a bad name is refused before anything is read
    text = resources.files(__name__).joinpath("canonical_json.sql").read_text(encoding="utf-8")
    return _expand(text, schema)


def chain_v2_sql(schema: str) -> str:
    """The text of chain_v2.sql with its functions placed in `schema` and pinned.

    It calls functions of canonical_json.sql in the same schema: run canonical_json_sql(schema)
    first (the functions are resolved when called, so the order matters only for use).
    """
    quote_identifier(schema)
    text = resources.files(__name__).joinpath("chain_v2.sql").read_text(encoding="utf-8")
    return _expand(text, schema, "chain_v2.sql")
