"""Hash chain format v2 in PostgreSQL (store/sql/chain_v2.sql), against Python.

Every function runs on the session's real test server, in a database of this module where
canonical_json.sql and chain_v2.sql are installed into a plain schema and into one whose name
needs quoting (docs/sql-canonical.md, "Format v2"). Oracles: the v2 vectors
(integrity/data/hash-chain-v2-vectors.json), the Python core (integrity/canonical_v2.py and
records_v2.py, reading values back as jsonb prints them), `rfc8785` on double-only values, and
the spec's exact-number rule checked directly with `Decimal`. Values are always bound
parameters, many per round trip.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from typing import Any

import psycopg
import pytest
import rfc8785
from hypothesis import example, given, settings
from hypothesis import strategies as st
from psycopg import sql

from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.integrity import CanonicalizationError, es6_number
from run_proof_pipeline.integrity.canonical_v2 import canonicalize_v2, parse_stored_json_v2
from run_proof_pipeline.integrity.records_v2 import (
    header_canonical_v2,
    seal_canonical_v2,
    step_canonical_v2,
)
from run_proof_pipeline.integrity.timestamps import parse_timestamp
from run_proof_pipeline.integrity.vectors import BUNDLED_VECTORS_V2, load_vectors_v2
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.sql import (
    CANONICAL_JSON_FUNCTIONS,
    CHAIN_V2_FUNCTIONS,
    PINS_PLACEHOLDER,
    SCHEMA_PLACEHOLDER,
    _expand,
    canonical_json_sql,
    chain_v2_sql,
)
from run_proof_pipeline_tests.test_canonical_json import key_chars
from run_proof_pipeline_tests.test_sql_canonical import HOSTILE, PINS, SHADOW, _defaults

PLAIN = "rp_v2"
ODD = 'Run "Proof" v2'
SCHEMAS = [PLAIN, ODD]
SAFE = 2**53 - 1

# --- the database ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def v2_url(pg_server: LocalPostgres) -> str:
    """libpq URL of a database of this module with both files installed in both schemas."""
    url = pg_server.create_database(f"chainv2_{uuid.uuid4().hex[:12]}", exist_ok=False)
    libpq = DatabaseUrl.parse(url).libpq()
    with psycopg.connect(libpq, autocommit=True) as conn:
        for schema in SCHEMAS:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            conn.execute(canonical_json_sql(schema))
            conn.execute(chain_v2_sql(schema))
    return libpq


@pytest.fixture(scope="module")
def conn(v2_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(v2_url, autocommit=True) as connection:
        yield connection


def _fn(name: str, schema: str = PLAIN) -> sql.Composable:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def sql_json(
    conn: psycopg.Connection,
    texts: list[str],
    function: str = "run_proof_jcs2",
    schema: str = PLAIN,
    extra: str = "",
) -> list[str | None]:
    """`function`(text::jsonb <extra>) for each JSON text, in one round trip."""
    query = sql.SQL(
        "SELECT {}(u.j::pg_catalog.jsonb{}) FROM pg_catalog.unnest(%s::pg_catalog.text[])"
        " WITH ORDINALITY u(j, i) ORDER BY u.i"
    ).format(_fn(function, schema), sql.SQL(extra))
    return [row[0] for row in conn.execute(query, (texts,)).fetchall()]


def stored_text(conn: psycopg.Connection, texts: list[str]) -> list[str]:
    """Each JSON text as jsonb prints it back (what the Python reader parses)."""
    query = (
        "SELECT u.j::pg_catalog.jsonb::pg_catalog.text"
        " FROM pg_catalog.unnest(%s::pg_catalog.text[]) WITH ORDINALITY u(j, i) ORDER BY u.i"
    )
    return [row[0] for row in conn.execute(query, (texts,)).fetchall()]


def python_v2(stored: str) -> str | None:
    """The Python core's C2 of a value as jsonb prints it; None where it refuses it."""
    try:
        return canonicalize_v2(parse_stored_json_v2(stored)).decode()
    except CanonicalizationError:
        return None


def dump(value: Any) -> str:
    """JSON text of a value whose numbers may be int, Decimal (written exactly) or float."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return str(value)  # 1E+400, 0.10000000000000001, -0.0: all JSON numbers
    return json.dumps(value)


def _dump_or_null(value: Any) -> str | None:
    # JSON null as SQL NULL: the spec hashes them alike ("a SQL NULL is JSON null")
    return None if value is None else dump(value)


# --- the record functions, called with column arrays ---------------------------------------------

HEADER_TYPES = ["text"] * 5 + [
    "jsonb",
    "timestamptz",
    "timestamptz",
    "text",
    "numeric",
    "text",
    "text",
    "text",
    "jsonb",
    "text",
    "text",
    "text",
    "bool",
    "text",
    "text",
]
STEP_TYPES = ["text", "text", "text", "int8", "text", "text", "jsonb", "text", "text", "text"]
STEP_TYPES += ["jsonb", "float8", "float8", "int8", "timestamptz"] + ["text"] * 7
STEP_TYPES += ["bool", "text"]
SEAL_TYPES = ["text", "text", "text", "text", "timestamptz", "int8", "jsonb"]
HEADER_FIELDS = (
    "tenant_id run_id trace_id agent_id plan_id plan started_at created_at correlation_id seed"
    " frozen_timestamp plan_hash schema_version trace stored_by checksum incident_id"
    " is_synthetic synthetic_scenario_id aos_root_hash"
).split()
STEP_FIELDS = (
    "tenant_id run_id trace_id step_index skill_id skill_name params status outcome_category"
    " outcome_code outcome_data cost_cents duration_ms retry_count timestamp input_hash"
    " output_hash rng_state_before idempotency_key replay_behavior source level is_synthetic"
    " synthetic_scenario_id"
).split()
SEAL_FIELDS = "tenant_id run_id trace_id status completed_at chain_length metadata".split()
# Sent as these array types: jsonb, numeric and timestamptz travel as text and are cast in
# the query (timestamps in ISO 8601 with an offset, read alike under any DateStyle, so that
# 'infinity' and years BC can be sent too).
_CARRIER = {"jsonb": "text", "numeric": "text", "timestamptz": "text"}


class Raw:
    """A JSON text passed as it is (values too deep for dump's recursion)."""

    def __init__(self, text: str) -> None:
        self.text = text


def _column(kind: str, values: list[Any]) -> list[Any]:
    if kind == "jsonb":
        return [v.text if isinstance(v, Raw) else _dump_or_null(v) for v in values]
    if kind == "numeric":
        return [None if v is None else str(v) for v in values]
    if kind == "timestamptz":
        return [
            v.isoformat() if isinstance(v, datetime) else v
            for v in (
                (parse_timestamp(t) if isinstance(t, str) and t.endswith("Z") else t)
                for t in values
            )
        ]
    return values


def sql_records(
    conn: psycopg.Connection,
    function: str,
    types: list[str],
    fields: list[str],
    rows: list[dict[str, Any]],
    *,
    prev: list[str | None] | None = None,
    schema: str = PLAIN,
) -> list[Any]:
    """`function`(<prev,> fields of each row...) for every row, in one round trip."""
    kinds = (["text"] if prev is not None else []) + types
    columns = ([prev] if prev is not None else []) + [
        _column(kind, [row[name] for row in rows]) for kind, name in zip(types, fields, strict=True)
    ]
    unnests = sql.SQL(", ").join(
        sql.SQL("pg_catalog.unnest(%s::pg_catalog.{}[])").format(
            sql.Identifier(_CARRIER.get(kind, kind))
        )
        for kind in kinds
    )
    arguments = sql.SQL(", ").join(
        sql.SQL("u.c{}::pg_catalog.{}").format(sql.SQL(str(k)), sql.Identifier(kind))
        for k, kind in enumerate(kinds)
    )
    names = sql.SQL(", ").join(sql.SQL(f"c{k}") for k in range(len(kinds)))
    query = sql.SQL(
        "SELECT {}({}) FROM ROWS FROM ({}) WITH ORDINALITY u({}, i) ORDER BY u.i"
    ).format(_fn(function, schema), arguments, unnests, names)
    return [row[0] for row in conn.execute(query, columns).fetchall()]


def headers(conn: psycopg.Connection, function: str, rows: list[dict[str, Any]], **kw: Any) -> Any:
    return sql_records(conn, function, HEADER_TYPES, HEADER_FIELDS, rows, **kw)


def steps(conn: psycopg.Connection, function: str, rows: list[dict[str, Any]], **kw: Any) -> Any:
    return sql_records(conn, function, STEP_TYPES, STEP_FIELDS, rows, **kw)


def seals(conn: psycopg.Connection, function: str, rows: list[dict[str, Any]], **kw: Any) -> Any:
    return sql_records(conn, function, SEAL_TYPES, SEAL_FIELDS, rows, **kw)


# --- the vectors -------------------------------------------------------------------------------


def _vector_cases() -> list[dict[str, Any]]:
    if not BUNDLED_VECTORS_V2.exists():
        return []
    return load_vectors_v2(BUNDLED_VECTORS_V2.read_text(encoding="utf-8"))["cases"]


def sql_chain(conn: psycopg.Connection, case: dict[str, Any], schema: str = PLAIN) -> dict:
    """Every canonical string and hash of a v2 vector case, computed by the SQL functions."""
    header = case["header"]
    ids = {"tenant_id": header["tenant_id"], "run_id": header["run_id"]}
    (canonical_header,) = headers(conn, "run_proof_v2_header_canonical", [header], schema=schema)
    (genesis,) = headers(conn, "run_proof_v2_genesis_hash", [header], schema=schema)
    head = genesis
    canonical_steps: list[str] = []
    step_hashes: list[str] = []
    for step in case["steps"]:
        row = {**ids, **step}
        (canonical,) = steps(conn, "run_proof_v2_step_canonical", [row], schema=schema)
        (hashed,) = steps(conn, "run_proof_v2_step_hash", [row], prev=[head], schema=schema)
        # The step hash is H(prev || C2(step)) of the very canonical text SQL printed.
        assert hashed == hashlib.sha256(bytes.fromhex(head) + canonical.encode()).hexdigest()
        canonical_steps.append(canonical)
        step_hashes.append(hashed)
        head = hashed
    canonical_seal = seal_hash = None
    if case["seal"] is not None:
        seal = {
            **ids,
            "trace_id": header["trace_id"],
            "chain_length": len(case["steps"]),
            **case["seal"],
        }
        (canonical_seal,) = seals(conn, "run_proof_v2_seal_canonical", [seal], schema=schema)
        (seal_hash,) = seals(conn, "run_proof_v2_seal_hash", [seal], prev=[head], schema=schema)
    return {
        "canonical_header": canonical_header,
        "genesis_hash": genesis,
        "canonical_steps": canonical_steps,
        "step_hashes": step_hashes,
        "head_hash": head,
        "canonical_seal": canonical_seal,
        "seal_hash": seal_hash,
    }


def _expected(case: dict[str, Any]) -> dict[str, Any]:
    keys = ("canonical_header", "genesis_hash", "canonical_steps", "step_hashes", "head_hash")
    out = {key: case["expected"][key] for key in keys}
    out["canonical_seal"] = case["expected"].get("canonical_seal")
    out["seal_hash"] = case["expected"].get("seal_hash")
    return out


needs_vectors = pytest.mark.skipif(
    not BUNDLED_VECTORS_V2.exists(),
    reason=f"{BUNDLED_VECTORS_V2.name} not written yet (helper H1 writes it)",
)


# --- installation ------------------------------------------------------------------------------


def test_the_sql_file_ships_names_its_schema_by_placeholder_and_is_expanded_strictly() -> None:
    raw = (
        resources.files("run_proof_pipeline.store.sql")
        .joinpath("chain_v2.sql")
        .read_text(encoding="utf-8")
    )
    assert raw.count("CREATE OR REPLACE FUNCTION @schema@.") == len(CHAIN_V2_FUNCTIONS)
    installed = chain_v2_sql('odd "name"')
    assert SCHEMA_PLACEHOLDER not in installed and PINS_PLACEHOLDER not in installed
    assert 'CREATE OR REPLACE FUNCTION "odd ""name""".run_proof_v2_step_hash(' in installed
    for bad in ("", "a$$b", "nul\x00"):
        with pytest.raises(ValueError, match="empty or holds"):
            chain_v2_sql(bad)
    # A function losing its pins line, an unknown placeholder: refused, naming the file.
    unpinned = raw.replace(f"\n{PINS_PLACEHOLDER}\n", "\n", 1)
    with pytest.raises(ValueError, match=r"chain_v2\.sql: 1 of \d+ functions lack"):
        _expand(unpinned, PLAIN, "chain_v2.sql")
    with pytest.raises(ValueError, match=r"chain_v2\.sql holds unknown placeholders"):
        _expand(raw + "\n-- @other@\n", PLAIN, "chain_v2.sql")


@pytest.mark.parametrize("schema", SCHEMAS)
def test_installed_functions_are_the_listed_ones_immutable_parallel_safe_and_pinned(
    conn: psycopg.Connection, schema: str
) -> None:
    rows = conn.execute(
        "SELECT p.oid::regprocedure::text, p.provolatile, p.proparallel, p.proconfig"
        " FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = %s",
        (schema,),
    ).fetchall()
    quoted = sql.Identifier(schema).as_string(conn) if schema == ODD else schema
    listed = {f"{quoted}.{s}" for s in CANONICAL_JSON_FUNCTIONS + CHAIN_V2_FUNCTIONS}
    assert {row[0] for row in rows} == listed
    for signature, volatility, parallel, config in rows:
        assert (volatility, parallel) == ("i", "s"), signature
        pinned = {name.lower(): value for name, value in (i.split("=", 1) for i in config)}
        assert pinned == {name.lower(): value for name, value in PINS.items()}, signature


def test_the_parameters_have_the_names_the_spec_gives_them(conn: psycopg.Connection) -> None:
    # Callers (migration 0006's triggers) may pass arguments by name.
    names = dict(
        conn.execute(
            "SELECT p.proname, p.proargnames FROM pg_catalog.pg_proc p"
            " JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = %s AND p.proname LIKE 'run_proof_v2_%%'",
            (PLAIN,),
        ).fetchall()
    )
    for kind, fields in (("header", HEADER_FIELDS), ("step", STEP_FIELDS), ("seal", SEAL_FIELDS)):
        assert names[f"run_proof_v2_{kind}_canonical"] == fields
        assert names[f"run_proof_v2_{kind}_problem"] == fields
    assert names["run_proof_v2_genesis_hash"] == HEADER_FIELDS
    assert names["run_proof_v2_step_hash"] == ["prev_hash", *STEP_FIELDS]
    assert names["run_proof_v2_seal_hash"] == ["head_hash", *SEAL_FIELDS]
    got = conn.execute(
        sql.SQL("SELECT {}(value => %s::jsonb)").format(_fn("run_proof_jcs2")), ("[1.50]",)
    ).fetchone()
    assert got == ("[1.5]",)


def test_installing_twice_changes_nothing(v2_url: str, conn: psycopg.Connection) -> None:
    probe = ['{"b":[1e21,0.1,9007199254740993],"a":"\\u00e9"}']
    before = sql_json(conn, probe)
    with psycopg.connect(v2_url, autocommit=True) as other:
        other.execute(canonical_json_sql(PLAIN))
        other.execute(chain_v2_sql(PLAIN))
    assert sql_json(conn, probe) == before == ['{"a":"é","b":[1e+21,0.1,9007199254740993]}']


def test_canonical_json_sql_still_installs_and_works_alone(v2_url: str) -> None:
    with psycopg.connect(v2_url, autocommit=True) as other:
        other.execute("CREATE SCHEMA v1_only")
        try:
            other.execute(canonical_json_sql("v1_only"))
            got = other.execute("SELECT v1_only.run_proof_jcs('[1.50]')").fetchone()
        finally:
            other.execute("DROP SCHEMA v1_only CASCADE")
    assert got == ("[1.5]",)


# --- vectors -----------------------------------------------------------------------------------


@needs_vectors
@pytest.mark.parametrize("schema", SCHEMAS)
@pytest.mark.parametrize("case", _vector_cases(), ids=lambda case: case["name"])
def test_sql_reproduces_every_v2_vector(
    conn: psycopg.Connection, case: dict[str, Any], schema: str
) -> None:
    assert sql_chain(conn, case, schema) == _expected(case)


@needs_vectors
def test_the_vectors_cover_the_exact_numbers_of_the_spec() -> None:
    # So that the vector test above really exercises the exact branch.
    text = BUNDLED_VECTORS_V2.read_text(encoding="utf-8")
    for number in ("9007199254740993", "18446744073709551616", "0.10000000000000001"):
        assert number in text
    steps_text = json.dumps([c["expected"]["canonical_steps"] for c in _vector_cases()])
    assert "1" + "0" * 400 in steps_text


# --- C2 of JSON values -------------------------------------------------------------------------

# (stored JSON text, C2) straight from docs/hash-chain-v2.md, "exact numbers"
SPEC_NUMBERS = [
    ("9007199254740993", "9007199254740993"),
    ("18446744073709551616", "18446744073709551616"),
    ("0.10000000000000001", "0.10000000000000001"),
    ("1e400", "1" + "0" * 400),
    ("-1e400", "-1" + "0" * 400),
    ("1e-400", "0." + "0" * 399 + "1"),
    ("1.50", "1.5"),
    ("-0.0", "0"),
    ("0.000", "0"),
    ("1e21", "1e+21"),
    ("1e22", "1e+22"),
    ("10000000000000000000000", "1e+22"),
    ("1e-7", "1e-7"),
    ("5e-324", "5e-324"),
    # just above half the smallest subnormal (reads as 5e-324), and below it (reads as 0):
    # neither is the value of its double's ES6 text, so both are written exactly
    ("2.4703282292062328e-324", "0." + "0" * 323 + "24703282292062328"),
    ("2.4703282292062327e-324", "0." + "0" * 323 + "24703282292062327"),
    ("1.7976931348623159e308", "17976931348623159" + "0" * 292),  # reads as infinity
    ("9007199254740992", "9007199254740992"),
    ("9007199254740991", "9007199254740991"),
    ("-9223372036854775808", "-9223372036854775808"),
    ("123456789012345678901234567890.0001", "123456789012345678901234567890.0001"),
    ("1.7976931348623157e308", "1.7976931348623157e+308"),
    ("0.30000000000000004", "0.30000000000000004"),
    ("333333333.33333329", "333333333.33333329"),  # RFC 8785's own example, not shortest
    ("100", "100"),
    ("1E2", "100"),
    ("4.35", "4.35"),
    ("227.6", "227.6"),
]


def test_the_numbers_of_the_spec_are_written_as_it_says(conn: psycopg.Connection) -> None:
    texts = [text for text, _ in SPEC_NUMBERS]
    want = [c2 for _, c2 in SPEC_NUMBERS]
    assert sql_json(conn, texts) == want
    assert sql_json(conn, [f"[{t}]" for t in texts]) == [f"[{c2}]" for c2 in want]
    assert sql_json(conn, [f'{{"k":{t}}}' for t in texts], "run_proof_jcs2_walk", extra=", 0") == [
        f'{{"k":{c2}}}' for c2 in want
    ]
    assert [python_v2(s) for s in stored_text(conn, texts)] == want
    # Nothing here is unrepresentable.
    assert sql_json(conn, texts, "run_proof_jcs2_problem") == [None] * len(texts)


_chars = key_chars
_keys = st.text(_chars, max_size=6)
_strings = st.text(_chars, max_size=12)
_floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 5e-324, 1e21, 1e-7, 1e15, 1e16, 1e23, 3.4060724690242328e16]),
)
# Exact numbers: integers of any size (a Python writer emits them as they are), decimals with
# any exponent (1e400, 1e-400), %.17g and exact writings of doubles, trailing zeros.
_big_ints = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40),
    st.integers(min_value=0, max_value=64).map(lambda k: 2**k + 1),
    st.integers(min_value=0, max_value=1100).map(lambda k: -(2**k)),
)
_decimals = st.one_of(
    st.tuples(st.integers(-(10**25), 10**25), st.integers(-420, 420)).map(
        lambda t: Decimal(f"{t[0]}E{t[1]}")
    ),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda x: Decimal(format(x, ".17g"))),
    st.floats(allow_nan=False, allow_infinity=False).map(Decimal),
    st.sampled_from([Decimal("1.50"), Decimal("-0.0"), Decimal("1E+400"), Decimal("1E-400")]),
)
_scalars = st.one_of(st.none(), st.booleans(), _big_ints, _decimals, _floats, _strings)
exact_json = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(_keys, children, max_size=6)
    ),
    max_leaves=30,
)
double_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-SAFE, max_value=SAFE),
        _floats,
        _strings,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(_keys, children, max_size=6)
    ),
    max_leaves=30,
)
BATCH = settings(max_examples=20, deadline=None, database=None)


@settings(max_examples=10, deadline=None, database=None)
@given(st.lists(exact_json, min_size=40, max_size=40))
@example([{"\ue000": 1, "\U0001f600": 2, "a": [Decimal("1E+400"), 2**64, Decimal("1.50")]}])
def test_sql_c2_equals_the_python_core_on_random_json_with_exact_numbers(
    conn: psycopg.Connection, values: list[Any]
) -> None:
    texts = [dump(value) for value in values]
    got = sql_json(conn, texts)
    assert sql_json(conn, texts, "run_proof_jcs2_walk", extra=", 0") == got
    for value, canonical, as_stored in zip(values, got, stored_text(conn, texts), strict=True):
        assert canonical is not None
        assert canonical == python_v2(as_stored)
        assert canonical == canonicalize_v2(value).decode()


@BATCH
@given(st.lists(double_json, min_size=40, max_size=40))
@example([{"a": [-0.0, 1e21, 1e-7, 5e-324, 1e23]}, "\x01\x1f\x7f\u2028"])
def test_sql_c2_is_plain_rfc8785_on_values_a_json_encoder_writes(
    conn: psycopg.Connection, values: list[Any]
) -> None:
    texts = [json.dumps(value) for value in values]
    got = sql_json(conn, texts)
    assert got == [rfc8785.dumps(value).decode() for value in values]
    # and v1 on the same values agrees: v2 changes only numbers a double cannot hold
    assert got == sql_json(conn, texts, "run_proof_jcs")


_number_texts = st.one_of(
    _big_ints.map(str),
    _decimals.map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda x: format(x, ".17g")),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda x: str(Decimal(x))),
    st.sampled_from([str(2**1024), str(2**1024 - 2**970), str(2**1024 - 2**970 - 1)]),
    st.sampled_from(["1.7976931348623158e308", "1.7976931348623159e308", "2e-324", "3e-324"]),
)


@BATCH
@given(st.lists(_number_texts, min_size=60, max_size=60))
def test_every_number_keeps_its_exact_value_and_distinct_values_stay_distinct(
    conn: psycopg.Connection, texts: list[str]
) -> None:
    got = sql_json(conn, texts)
    by_value: dict[Decimal, str] = {}
    for text, canonical in zip(texts, got, strict=True):
        assert canonical is not None
        x = Decimal(text)
        # the spec's rule, checked directly: the text's value is x, always (nothing rounded)
        assert Decimal(canonical) == x, text
        is_es6 = False
        if x != 0 and abs(x) < Decimal(2) ** 1024:
            d = float(x)
            is_es6 = d != 0.0 and d - d == 0.0 and Decimal(es6_number(d)) == x
        if is_es6 or x == 0:
            assert canonical == (es6_number(float(x)) if x != 0 else "0"), text
        else:
            # the exact form: no exponent, no leading zeros, no trailing fraction zeros
            assert "e" not in canonical.lower()
            digits = canonical.lstrip("-")
            assert digits == "0" or not digits.startswith("0") or digits.startswith("0.")
            assert "." not in canonical or not canonical.endswith("0")
        # injective: one value, one text; two values, two texts
        assert by_value.setdefault(x, canonical) == canonical
    assert len(set(by_value.values())) == len(by_value)


# --- records -----------------------------------------------------------------------------------

_text = st.one_of(st.none(), _strings)
_ts = st.one_of(
    st.none(),
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
)
_bigint = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([2**53, 2**53 + 1, 2**60, 2**63 - 1, -(2**63), 0, -1]),
)
_double = st.one_of(st.none(), _floats)
_json_field = st.one_of(st.none(), exact_json)
_step = st.fixed_dictionaries(
    {
        "tenant_id": _text,
        "run_id": _text,
        "trace_id": _text,
        "step_index": _bigint,
        "skill_id": _text,
        "skill_name": _text,
        "params": _json_field,
        "status": _text,
        "outcome_category": _text,
        "outcome_code": _text,
        "outcome_data": _json_field,
        "cost_cents": _double,
        "duration_ms": _double,
        "retry_count": _bigint,
        "timestamp": _ts,
        "input_hash": _text,
        "output_hash": _text,
        "rng_state_before": _text,
        "idempotency_key": _text,
        "replay_behavior": _text,
        "source": _text,
        "level": _text,
        "is_synthetic": st.one_of(st.none(), st.booleans()),
        "synthetic_scenario_id": _text,
    }
)
_header = st.fixed_dictionaries(
    {
        "tenant_id": _text,
        "run_id": _text,
        "trace_id": _text,
        "agent_id": _text,
        "plan_id": _text,
        "plan": _json_field,
        "started_at": _ts,
        "created_at": _ts,
        "correlation_id": _text,
        "seed": st.one_of(st.none(), _big_ints, _decimals),
        "frozen_timestamp": _text,
        "plan_hash": _text,
        "schema_version": _text,
        "trace": _json_field,
        "stored_by": _text,
        "checksum": _text,
        "incident_id": _text,
        "is_synthetic": st.one_of(st.none(), st.booleans()),
        "synthetic_scenario_id": _text,
        "aos_root_hash": _text,
    }
)
_seal = st.fixed_dictionaries(
    {
        "tenant_id": _text,
        "run_id": _text,
        "trace_id": _text,
        "status": _text,
        "completed_at": _ts,
        "chain_length": _bigint,
        "metadata": _json_field,
    }
)
_hex = st.binary(min_size=32, max_size=32).map(bytes.hex)


def _read_back(conn: psycopg.Connection, value: Any) -> Any:
    """A JSON field as the Python reader gets it: jsonb's text, parsed with exact numbers."""
    if value is None:
        return None
    return parse_stored_json_v2(stored_text(conn, [dump(value)])[0])


def _python_record(
    conn: psycopg.Connection,
    encoder: Callable[..., bytes],
    row: dict[str, Any],
    json_fields: tuple[str, ...],
) -> str:
    fields = dict(row)
    for name in json_fields:
        fields[name] = _read_back(conn, row[name])
    return encoder(**fields).decode()


@settings(max_examples=8, deadline=None, database=None)
@given(st.lists(_step, min_size=20, max_size=20), st.lists(_hex, min_size=20, max_size=20))
def test_sql_step_record_and_hash_equal_the_python_core_on_random_steps(
    conn: psycopg.Connection, rows: list[dict[str, Any]], prevs: list[str]
) -> None:
    got = steps(conn, "run_proof_v2_step_canonical", rows)
    hashes = steps(conn, "run_proof_v2_step_hash", rows, prev=prevs)
    problems = steps(conn, "run_proof_v2_step_problem", rows)
    for row, canonical, hashed, prev, problem in zip(
        rows, got, hashes, prevs, problems, strict=True
    ):
        want = _python_record(conn, step_canonical_v2, row, ("params", "outcome_data"))
        assert canonical == want
        assert hashed == hashlib.sha256(bytes.fromhex(prev) + want.encode()).hexdigest()
        assert problem is None


@settings(max_examples=8, deadline=None, database=None)
@given(st.lists(_header, min_size=15, max_size=15), st.lists(_seal, min_size=15, max_size=15))
def test_sql_header_and_seal_records_equal_the_python_core_on_random_records(
    conn: psycopg.Connection, header_rows: list[dict[str, Any]], seal_rows: list[dict[str, Any]]
) -> None:
    got = headers(conn, "run_proof_v2_header_canonical", header_rows)
    genesis = headers(conn, "run_proof_v2_genesis_hash", header_rows)
    for row, canonical, hashed in zip(header_rows, got, genesis, strict=True):
        want = _python_record(conn, header_canonical_v2, row, ("plan", "trace"))
        assert canonical == want
        assert hashed == hashlib.sha256(want.encode()).hexdigest()
    assert headers(conn, "run_proof_v2_header_problem", header_rows) == [None] * len(header_rows)
    heads = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(len(seal_rows))]
    got = seals(conn, "run_proof_v2_seal_canonical", seal_rows)
    sealed = seals(conn, "run_proof_v2_seal_hash", seal_rows, prev=heads)
    for row, canonical, hashed, head in zip(seal_rows, got, sealed, heads, strict=True):
        want = _python_record(conn, seal_canonical_v2, row, ("metadata",))
        assert canonical == want
        assert hashed == hashlib.sha256(bytes.fromhex(head) + want.encode()).hexdigest()
    assert seals(conn, "run_proof_v2_seal_problem", seal_rows) == [None] * len(seal_rows)


def test_integers_beyond_2_53_are_written_exactly_in_every_integer_column(
    conn: psycopg.Connection,
) -> None:
    base = dict.fromkeys(STEP_FIELDS)
    values = [2**53, 2**53 + 1, 2**60, 2**63 - 1, -(2**63), 10**18]
    rows = [
        {**base, "step_index": v, "retry_count": w}
        for v, w in zip(values, reversed(values), strict=True)
    ]
    for row, canonical in zip(rows, steps(conn, "run_proof_v2_step_canonical", rows), strict=True):
        assert f'"step_index":{row["step_index"]},' in canonical
        assert f'"retry_count":{row["retry_count"]},' in canonical
        assert canonical == step_canonical_v2(**row).decode()
    seal_rows = [{**dict.fromkeys(SEAL_FIELDS), "chain_length": v} for v in values]
    got = seals(conn, "run_proof_v2_seal_canonical", seal_rows)
    assert [f'{{"chain_length":{v},' in c for v, c in zip(values, got, strict=True)] == [True] * 6
    header_rows = [{**dict.fromkeys(HEADER_FIELDS), "seed": v} for v in values + [10**400]]
    got = headers(conn, "run_proof_v2_header_canonical", header_rows)
    assert [f',"seed":{row["seed"]},' in c for row, c in zip(header_rows, got, strict=True)] == [
        True
    ] * 7


def test_sql_null_arguments_are_json_null(conn: psycopg.Connection) -> None:
    (step,) = steps(conn, "run_proof_v2_step_canonical", [dict.fromkeys(STEP_FIELDS)])
    assert step == step_canonical_v2(**dict.fromkeys(STEP_FIELDS)).decode()
    assert step.count("null") == len(STEP_FIELDS)
    (header,) = headers(conn, "run_proof_v2_header_canonical", [dict.fromkeys(HEADER_FIELDS)])
    assert header == header_canonical_v2(**dict.fromkeys(HEADER_FIELDS)).decode()
    (seal,) = seals(conn, "run_proof_v2_seal_canonical", [dict.fromkeys(SEAL_FIELDS)])
    assert seal == seal_canonical_v2(**dict.fromkeys(SEAL_FIELDS)).decode()
    assert sql_json(conn, ["null"]) == ["null"]
    assert conn.execute(
        sql.SQL("SELECT {}(NULL), {}(NULL)").format(
            _fn("run_proof_jcs2"), _fn("run_proof_jcs2_problem")
        )
    ).fetchone() == ("null", None)


# --- what cannot be represented: NULL, never an error, and the problem names the field ----------


def _nested(depth: int) -> str:
    return "[" * depth + "1.50" + "]" * depth


def test_nesting_up_to_128_levels_is_canonicalized_and_deeper_is_null(
    conn: psycopg.Connection,
) -> None:
    texts = [_nested(d) for d in (31, 32, 33, 127, 128, 129, 200, 14_000)]
    got = sql_json(conn, texts)
    assert got[:5] == [_nested(d).replace("1.50", "1.5") for d in (31, 32, 33, 127, 128)]
    assert got[5:] == [None, None, None]
    assert sql_json(conn, texts, "run_proof_jcs2_problem") == [None] * 5 + [
        "(root): nesting: 129 levels",
        "(root): nesting: 200 levels",
        "(root): nesting: 14000 levels",
    ]
    assert sql_json(conn, texts, "run_proof_jcs2_depth") == [31, 32, 33, 127, 128, 129, 200, 14000]
    objects = ['{"a":' * d + "1" + "}" * d for d in (128, 129)]
    assert sql_json(conn, objects) == [objects[0], None]
    for stored, canonical in zip(stored_text(conn, texts[:5]), got[:5], strict=True):
        assert python_v2(stored) == canonical


def _valid_step(**changes: Any) -> dict[str, Any]:
    row = {
        **dict.fromkeys(STEP_FIELDS),
        "trace_id": "t",
        "step_index": 0,
        "params": {"a": 1},
        "outcome_data": None,
        "cost_cents": 0.5,
        "duration_ms": 1.0,
        "retry_count": 0,
        "timestamp": datetime(2026, 2, 9, tzinfo=UTC),
    }
    row.update(changes)
    return row


UNREPRESENTABLE_STEPS = [
    ({"cost_cents": float("nan")}, "cost_cents: NaN"),
    ({"cost_cents": float("inf")}, "cost_cents: Infinity"),
    ({"duration_ms": float("-inf")}, "duration_ms: -Infinity"),
    ({"timestamp": "infinity"}, "timestamp: infinity"),
    ({"timestamp": "-infinity"}, "timestamp: -infinity"),
    ({"params": Raw(_nested(129))}, "params: (root): nesting: 129 levels"),
    ({"params": Raw(_nested(14_000))}, "params: (root): nesting: 14000 levels"),
    ({"outcome_data": Raw(_nested(129))}, "outcome_data: (root): nesting: 129 levels"),
    (
        {"cost_cents": float("nan"), "params": Raw(_nested(129))},
        "cost_cents: NaN",  # the first field in key order
    ),
]


def test_unrepresentable_steps_give_null_and_the_problem_names_the_field(
    conn: psycopg.Connection,
) -> None:
    rows = [_valid_step(**changes) for changes, _ in UNREPRESENTABLE_STEPS] + [_valid_step()]
    canonical = sql_records(conn, "run_proof_v2_step_canonical", STEP_TYPES, STEP_FIELDS, rows)
    problems = sql_records(conn, "run_proof_v2_step_problem", STEP_TYPES, STEP_FIELDS, rows)
    prev = "ab" * 32
    assert canonical[:-1] == [None] * len(UNREPRESENTABLE_STEPS)
    assert canonical[-1] is not None
    assert problems == [reason for _, reason in UNREPRESENTABLE_STEPS] + [None]
    # the hash of such a step is NULL as well
    step_hash_rows = [{**row, "prev_hash": prev} for row in rows]
    got = sql_records(
        conn,
        "run_proof_v2_step_hash",
        ["text", *STEP_TYPES],
        ["prev_hash", *STEP_FIELDS],
        step_hash_rows,
    )
    assert got[:-1] == [None] * len(UNREPRESENTABLE_STEPS)
    assert got[-1] == hashlib.sha256(bytes.fromhex(prev) + canonical[-1].encode()).hexdigest()


@pytest.mark.parametrize(
    "prev",
    [None, "", "AB" * 32, "ab" * 31, "ab" * 33, "zz" * 32, " " + "ab" * 32, "ab" * 32 + "\n"],
)
def test_a_previous_hash_that_is_not_64_lowercase_hex_digits_gives_null(
    conn: psycopg.Connection, prev: str | None
) -> None:
    assert steps(conn, "run_proof_v2_step_hash", [_valid_step()], prev=[prev]) == [None]
    seal = dict.fromkeys(SEAL_FIELDS)
    assert seals(conn, "run_proof_v2_seal_hash", [seal], prev=[prev]) == [None]


def test_unrepresentable_headers_and_seals_give_null_and_the_problem_names_the_field(
    conn: psycopg.Connection,
) -> None:
    base = {**dict.fromkeys(HEADER_FIELDS), "trace_id": "t", "plan": {"a": 1}}
    cases = [
        ({"started_at": "infinity"}, "started_at: infinity"),
        ({"created_at": "-infinity"}, "created_at: -infinity"),
        ({"plan": Raw(_nested(129))}, "plan: (root): nesting: 129 levels"),
        ({"trace": Raw(_nested(14_000))}, "trace: (root): nesting: 14000 levels"),
        ({"seed": "NaN"}, "seed: NaN"),
        ({"seed": "Infinity"}, "seed: Infinity"),
        ({"seed": "-Infinity"}, "seed: -Infinity"),
        ({}, None),
    ]
    rows = [{**base, **changes} for changes, _ in cases]
    for function in ("run_proof_v2_header_canonical", "run_proof_v2_genesis_hash"):
        got = sql_records(conn, function, HEADER_TYPES, HEADER_FIELDS, rows)
        assert [g is None for g in got] == [True] * (len(cases) - 1) + [False]
    problems = sql_records(conn, "run_proof_v2_header_problem", HEADER_TYPES, HEADER_FIELDS, rows)
    assert problems == [reason for _, reason in cases]
    seal_base = {**dict.fromkeys(SEAL_FIELDS), "trace_id": "t", "chain_length": 3}
    seal_cases = [
        ({"completed_at": "infinity"}, "completed_at: infinity"),
        ({"metadata": Raw(_nested(129))}, "metadata: (root): nesting: 129 levels"),
        ({"metadata": Raw(_nested(128))}, None),
        ({}, None),
    ]
    seal_rows = [{**seal_base, **changes} for changes, _ in seal_cases]
    got = sql_records(conn, "run_proof_v2_seal_canonical", SEAL_TYPES, SEAL_FIELDS, seal_rows)
    assert [g is None for g in got] == [True, True, False, False]
    problems = sql_records(conn, "run_proof_v2_seal_problem", SEAL_TYPES, SEAL_FIELDS, seal_rows)
    assert problems == [reason for _, reason in seal_cases]


def test_years_outside_1_to_9999_give_null_and_are_named(conn: psycopg.Connection) -> None:
    rows = [
        _valid_step(timestamp=t)
        for t in ("10000-01-01 00:00:00+00", "0001-01-01 00:00:00+00 BC", "9999-12-31 23:59:59+00")
    ]
    canonical = sql_records(conn, "run_proof_v2_step_canonical", STEP_TYPES, STEP_FIELDS, rows)
    assert canonical[:2] == [None, None]
    assert '"timestamp":"9999-12-31T23:59:59.000000Z"' in canonical[2]
    problems = sql_records(conn, "run_proof_v2_step_problem", STEP_TYPES, STEP_FIELDS, rows)
    assert problems == [
        "timestamp: year outside 1-9999: 10000-01-01 00:00:00+00",
        "timestamp: year outside 1-9999: 0001-01-01 00:00:00+00 BC",
        None,
    ]


# --- a hostile session -------------------------------------------------------------------------

HOSTILE_PROBES = [
    '{"cost":227.6,"n":[1e21,1e-7,0.30000000000000004,1500.0,5e-324,-0.0,0,123456789012345678]}',
    '{"\\ud83d\\ude00":1,"\\ue000":2,"a\\u0001\\n":"\\"\\\\/\\u2028","\\u00e9":[true,false,null]}',
    "[" * 40 + "0.1" + "]" * 40,
    "9007199254740993",
    "[2798.0000000000000000001, 1e400, 1e-400, 18446744073709551616]",
    "[" * 129 + "]" * 129,
]


def _everything(conn: psycopg.Connection) -> dict[str, Any]:
    return {
        "chains": [sql_chain(conn, case) for case in _vector_cases()],
        "canonical": sql_json(conn, HOSTILE_PROBES),
        "problems": sql_json(conn, HOSTILE_PROBES, "run_proof_jcs2_problem"),
        "steps": sql_records(
            conn,
            "run_proof_v2_step_canonical",
            STEP_TYPES,
            STEP_FIELDS,
            [_valid_step(cost_cents=1e21, duration_ms=227.6, step_index=2**60)],
        ),
        "problem": sql_records(
            conn,
            "run_proof_v2_step_problem",
            STEP_TYPES,
            STEP_FIELDS,
            [_valid_step(timestamp="10000-01-01 00:00:00+00")],
        ),
    }


@pytest.mark.parametrize("scope", ["session", "database", "role"])
def test_a_hostile_session_gets_the_same_bytes(
    v2_url: str, conn: psycopg.Connection, scope: str
) -> None:
    baseline = _everything(conn)
    if _vector_cases():
        assert baseline["chains"][0] == _expected(_vector_cases()[0])
    assert baseline["problems"][-1] == "(root): nesting: 129 levels"
    database = conn.info.dbname
    conn.execute(SHADOW)
    try:
        if scope != "session":
            _defaults(conn, scope, database, reset=False)
        with psycopg.connect(v2_url, autocommit=True) as hostile:
            if scope == "session":
                for name, value in HOSTILE:
                    hostile.execute("SELECT pg_catalog.set_config(%s, %s, false)", (name, value))
            # The attack is real: unpinned SQL in this session prints and resolves otherwise.
            bitten = hostile.execute(
                "SELECT 227.6::pg_catalog.float8::pg_catalog.text, jsonb_typeof('1'),"
                " pg_catalog.encode(sha256(pg_catalog.decode('', 'hex')), 'hex'),"
                " 'a' || 'b', 1.0 = 2,"
                " pg_catalog.to_char('2026-02-09 23:30:00+00'::pg_catalog.timestamptz,"
                " 'YYYY-MM-DD HH24:MI')"
            ).fetchone()
            assert bitten == ("2e+02", "string", "00", "X", True, "2026-02-10 13:15")
            assert _everything(hostile) == baseline
    finally:
        if scope != "session":
            _defaults(conn, scope, database, reset=True)
        conn.execute("DROP SCHEMA shadow CASCADE")


def test_a_temporary_type_shadowing_a_builtin_type_changes_nothing(
    v2_url: str, conn: psycopg.Connection
) -> None:
    with psycopg.connect(v2_url, autocommit=True) as hostile:
        hostile.execute("CREATE DOMAIN pg_temp.text AS pg_catalog.varchar(1)")
        hostile.execute("CREATE DOMAIN pg_temp.numeric AS pg_catalog.int2")
        assert hostile.execute("SELECT 'abc'::text").fetchone() == ("a",)
        assert sql_json(hostile, HOSTILE_PROBES) == sql_json(conn, HOSTILE_PROBES)


@pytest.mark.parametrize(
    "stored",
    ['{"a": 0.1349010}', "[0.10]", "[0.0000010]", '{"n": -0.50}', "[0.1349010, 10, 0.5]"],
)
def test_a_fraction_stored_with_trailing_zeros_is_written_as_its_number(
    conn: psycopg.Connection, stored: str
) -> None:
    """jsonb keeps a number's text as written (`0.1349010`); C2 writes the number (`0.134901`),
    in SQL as in Python. The fast path for plain numbers once let `0.<digits>0` through as it
    was stored (found by the property test above on the wheel's server)."""
    (got,) = sql_json(conn, [stored])
    assert got is not None
    assert got.encode() == canonicalize_v2(parse_stored_json_v2(stored))
