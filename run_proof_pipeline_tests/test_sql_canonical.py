"""Canonical JSON and hash chain v1 in PostgreSQL (store/sql/canonical_json.sql), against Python.

Every function runs on the real test server, in a database of this module where the SQL is
installed into its own schema (docs/sql-canonical.md). Oracles: the hash-chain vectors, the
stored-number vectors, the RFC 8785 author's test data (from ../shared/reference when present),
the `rfc8785` package and the project's canonicalizer (integrity/canonical.py), which reads
values back as jsonb prints them. Values are always bound parameters, many per round trip.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
import pytest
import rfc8785
from hypothesis import example, given, settings
from hypothesis import strategies as st
from psycopg import sql

from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.integrity import (
    CanonicalizationError,
    canonicalize,
    es6_number,
    step_canonical_bytes,
)
from run_proof_pipeline.integrity.canonical import canonicalize_stored_json
from run_proof_pipeline.integrity.timestamps import parse_timestamp
from run_proof_pipeline.integrity.vectors import BUNDLED_VECTORS
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.sql import (
    CANONICAL_JSON_FUNCTIONS,
    SCHEMA_PLACEHOLDER,
    canonical_json_sql,
)
from run_proof_pipeline_tests.test_canonical_json import key_chars

SCHEMA = "rp_canon"
SHARED = Path(__file__).resolve().parents[2] / "shared"
EXTRA_VECTORS = SHARED / "reference/hash-chain-v1-extra-vectors.json"
AUTHOR_DATA = SHARED / "reference/rfc8785-author-testdata"
SAFE = 2**53 - 1
PINS = {
    "search_path": "pg_catalog, pg_temp",
    "standard_conforming_strings": "on",
    "extra_float_digits": "1",
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "plan_cache_mode": "force_generic_plan",
}

# --- the database ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def canon_url(pg_server: LocalPostgres) -> str:
    """libpq URL of a database of this module with the SQL installed in schema rp_canon."""
    url = pg_server.create_database(f"canon_{uuid.uuid4().hex[:12]}", exist_ok=False)
    libpq = DatabaseUrl.parse(url).libpq()
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
        conn.execute(canonical_json_sql(SCHEMA))
    return libpq


@pytest.fixture(scope="module")
def conn(canon_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(canon_url, autocommit=True) as connection:
        yield connection


def _fn(name: str) -> sql.Composable:
    return sql.SQL("{}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(name))


def sql_canonical(
    conn: psycopg.Connection, texts: list[str], function: str = "run_proof_jcs"
) -> list[str | None]:
    """`function`(text::jsonb) for each JSON text, in one round trip."""
    query = sql.SQL(
        "SELECT {}(u.j::pg_catalog.jsonb) FROM pg_catalog.unnest(%s::pg_catalog.text[])"
        " WITH ORDINALITY u(j, i) ORDER BY u.i"
    ).format(_fn(function))
    return [row[0] for row in conn.execute(query, (texts,)).fetchall()]


def sql_walked(conn: psycopg.Connection, texts: list[str], exact: bool) -> list[str | None]:
    """The same through the stackless walk, which values nested 32 levels deep take."""
    query = sql.SQL(
        "SELECT {}(u.j::pg_catalog.jsonb, %s, false, 0)"
        " FROM pg_catalog.unnest(%s::pg_catalog.text[])"
        " WITH ORDINALITY u(j, i) ORDER BY u.i"
    ).format(_fn("run_proof_jcs_walk"))
    return [row[0] for row in conn.execute(query, (exact, texts)).fetchall()]


def sql_problems(conn: psycopg.Connection, texts: list[str], exact: bool) -> list[str | None]:
    query = sql.SQL(
        "SELECT {}(u.j::pg_catalog.jsonb, %s) FROM pg_catalog.unnest(%s::pg_catalog.text[])"
        " WITH ORDINALITY u(j, i) ORDER BY u.i"
    ).format(_fn("run_proof_jcs_problem"))
    return [row[0] for row in conn.execute(query, (exact, texts)).fetchall()]


def stored_text(conn: psycopg.Connection, texts: list[str]) -> list[str]:
    """Each JSON text as jsonb prints it back (what the Python reader parses)."""
    query = (
        "SELECT u.j::pg_catalog.jsonb::pg_catalog.text"
        " FROM pg_catalog.unnest(%s::pg_catalog.text[]) WITH ORDINALITY u(j, i) ORDER BY u.i"
    )
    return [row[0] for row in conn.execute(query, (texts,)).fetchall()]


def python_read_path(text: str) -> str | None:
    """The project's reading of stored JSON text; None where it refuses the value."""
    try:
        return canonicalize_stored_json(text).decode()
    except CanonicalizationError:
        return None


# --- hash chain v1 in SQL ----------------------------------------------------------------------

HEADER_ARGS = "%s::text, %s::text, %s::text, %s::text, %s::text, %s::jsonb, %s::timestamptz"
STEP_ARGS = (
    "%s::text, %s::text, %s::bigint, %s::text, %s::text, %s::jsonb, %s::text, %s::text,"
    " %s::text, %s::jsonb, %s::float8, %s::float8, %s::bigint, %s::timestamptz"
)
SEAL_ARGS = "%s::text, %s::text, %s::text, %s::timestamptz, %s::bigint"


def _ts(value: str | None) -> datetime | None:
    return None if value is None else parse_timestamp(value)


def _json(value: Any) -> str | None:
    # JSON null as SQL NULL (the spec hashes them alike), anything else as its JSON text.
    return None if value is None else json.dumps(value)


def sql_chain(conn: psycopg.Connection, case: dict[str, Any]) -> dict[str, Any]:
    """Every canonical string and hash of a vector case, computed by the SQL functions."""
    header, steps, seal = case["header"], case["steps"], case["seal"]
    header_args = (
        header["tenant_id"],
        header["run_id"],
        header["trace_id"],
        header["agent_id"],
        header["plan_id"],
        _json(header["plan"]),
        _ts(header["started_at"]),
    )
    header_sig = sql.SQL(HEADER_ARGS)
    canonical_header, genesis = conn.execute(
        sql.SQL("SELECT {}({}), {}({})").format(
            _fn("run_proof_v1_header_canonical"),
            header_sig,
            _fn("run_proof_v1_genesis_hash"),
            header_sig,
        ),
        header_args + header_args,
    ).fetchone()
    step_query = sql.SQL("SELECT {}({}), {}(%s::text, {})").format(
        _fn("run_proof_v1_step_canonical"),
        sql.SQL(STEP_ARGS),
        _fn("run_proof_v1_step_hash"),
        sql.SQL(STEP_ARGS),
    )
    canonical_steps: list[str] = []
    step_hashes: list[str] = []
    head = genesis
    for step in steps:
        args = (
            header["tenant_id"],
            header["run_id"],
            step["step_index"],
            step["skill_id"],
            step["skill_name"],
            _json(step["params"]),
            step["status"],
            step["outcome_category"],
            step["outcome_code"],
            _json(step["outcome_data"]),
            step["cost_cents"],
            step["duration_ms"],
            step["retry_count"],
            _ts(step["timestamp"]),
        )
        canonical, hashed = conn.execute(step_query, args + (head,) + args).fetchone()
        # The step hash is H(prev || C(step)) of the very canonical text SQL printed.
        assert hashed == hashlib.sha256(bytes.fromhex(head) + canonical.encode()).hexdigest()
        canonical_steps.append(canonical)
        step_hashes.append(hashed)
        head = hashed
    canonical_seal = root = None
    if seal is not None:
        seal_args = (
            header["tenant_id"],
            header["run_id"],
            seal["status"],
            _ts(seal["completed_at"]),
            len(steps),
        )
        canonical_seal, root = conn.execute(
            sql.SQL("SELECT {}({}), {}(%s::text, {})").format(
                _fn("run_proof_v1_seal_canonical"),
                sql.SQL(SEAL_ARGS),
                _fn("run_proof_v1_root_hash"),
                sql.SQL(SEAL_ARGS),
            ),
            seal_args + (head,) + seal_args,
        ).fetchone()
    return {
        "canonical_header": canonical_header,
        "genesis_hash": genesis,
        "canonical_steps": canonical_steps,
        "step_hashes": step_hashes,
        "head_hash": head,
        "canonical_seal": canonical_seal,
        "root_hash": root,
    }


def _expected(case: dict[str, Any]) -> dict[str, Any]:
    expected = case["expected"]
    return {
        key: expected.get(key)
        for key in (
            "canonical_header",
            "genesis_hash",
            "canonical_steps",
            "step_hashes",
            "head_hash",
            "canonical_seal",
            "root_hash",
        )
    }


def _bundled_cases() -> list[dict[str, Any]]:
    return json.loads(BUNDLED_VECTORS.read_text(encoding="utf-8"))["cases"]


def _extra_cases() -> list[dict[str, Any]]:
    if not EXTRA_VECTORS.exists():
        return []
    return json.loads(EXTRA_VECTORS.read_text(encoding="utf-8"))["cases"]


needs_extra = pytest.mark.skipif(
    not EXTRA_VECTORS.exists(),
    reason=f"{EXTRA_VECTORS} not present (a clone on its own): the bundled vectors still run",
)
needs_author_data = pytest.mark.skipif(
    not AUTHOR_DATA.is_dir(),
    reason=f"{AUTHOR_DATA} not present (a clone on its own): the RFC 8785 example still runs",
)


# --- installation ------------------------------------------------------------------------------


def test_the_sql_file_ships_in_the_package_and_names_its_schema_by_placeholder() -> None:
    raw = (
        resources.files("run_proof_pipeline.store.sql")
        .joinpath("canonical_json.sql")
        .read_text(encoding="utf-8")
    )
    assert raw.count("CREATE OR REPLACE FUNCTION @schema@.") == len(CANONICAL_JSON_FUNCTIONS)
    installed = canonical_json_sql('odd "name"')
    assert SCHEMA_PLACEHOLDER not in installed
    assert 'CREATE OR REPLACE FUNCTION "odd ""name""".run_proof_jcs(' in installed
    for bad in ("", "a$$b", "nul\x00"):
        with pytest.raises(ValueError, match="empty or holds"):
            canonical_json_sql(bad)


def test_installed_functions_are_the_listed_ones_immutable_parallel_safe_and_pinned(
    conn: psycopg.Connection,
) -> None:
    rows = conn.execute(
        "SELECT p.oid::regprocedure::text, p.provolatile, p.proparallel, p.proconfig"
        " FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = %s",
        (SCHEMA,),
    ).fetchall()
    listed = {f"{SCHEMA}.{signature}" for signature in CANONICAL_JSON_FUNCTIONS}
    assert {row[0] for row in rows} == listed
    for signature, volatility, parallel, config in rows:
        assert (volatility, parallel) == ("i", "s"), signature
        pinned = {name.lower(): value for name, value in (i.split("=", 1) for i in config)}
        assert pinned == {name.lower(): value for name, value in PINS.items()}, signature


def test_installing_twice_changes_nothing(canon_url: str, conn: psycopg.Connection) -> None:
    probe = ['{"b":[1e21,0.1],"a":"\\u00e9"}']
    before = sql_canonical(conn, probe)
    with psycopg.connect(canon_url, autocommit=True) as other:
        other.execute(canonical_json_sql(SCHEMA))
    assert sql_canonical(conn, probe) == before == ['{"a":"é","b":[1e+21,0.1]}']


def test_a_schema_needing_quotes_installs_and_computes_alike(
    canon_url: str, conn: psycopg.Connection
) -> None:
    odd = 'Run "Proof" 2'
    with psycopg.connect(canon_url, autocommit=True) as other:
        other.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(odd)))
        other.execute(canonical_json_sql(odd))
        got = other.execute(
            sql.SQL("SELECT {}.run_proof_jcs(%s::jsonb)").format(sql.Identifier(odd)),
            ('{"z":1.50,"y":[true,null]}',),
        ).fetchone()[0]
        other.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(odd)))
    assert got == '{"y":[true,null],"z":1.5}'


# --- the vectors -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", _bundled_cases(), ids=lambda case: case["name"])
def test_sql_reproduces_every_bundled_hash_chain_vector(
    conn: psycopg.Connection, case: dict[str, Any]
) -> None:
    assert sql_chain(conn, case) == _expected(case)


@needs_extra
@pytest.mark.parametrize("case", _extra_cases(), ids=lambda case: case["name"])
def test_sql_reproduces_every_extra_hash_chain_vector(
    conn: psycopg.Connection, case: dict[str, Any]
) -> None:
    assert sql_chain(conn, case) == _expected(case)


STORED_NUMBERS = json.loads(
    resources.files("run_proof_pipeline.integrity")
    .joinpath("data/stored-number-vectors.json")
    .read_text(encoding="utf-8")
)["cases"]


def test_sql_follows_every_stored_number_vector(conn: psycopg.Connection) -> None:
    stored = [case["stored"] for case in STORED_NUMBERS]
    canonical = sql_canonical(conn, stored)
    problems = sql_problems(conn, stored, exact=False)
    for case, got, problem in zip(STORED_NUMBERS, canonical, problems, strict=True):
        if case["verdict"] == "accept":
            assert (got, problem) == (case["canonical"], None), case["name"]
        else:
            assert got is None, case["name"]
            assert problem is not None and problem.startswith(f"(root): {case['because']}: ")
    # and as members, where a refused number makes the whole value NULL, naming its place
    wrapped = [f'{{"params":{{"n":[1,{case["stored"]}]}}}}' for case in STORED_NUMBERS]
    for case, got, problem in zip(
        STORED_NUMBERS,
        sql_canonical(conn, wrapped),
        sql_problems(conn, wrapped, exact=False),
        strict=True,
    ):
        if case["verdict"] == "accept":
            assert got == f'{{"params":{{"n":[1,{case["canonical"]}]}}}}', case["name"]
        else:
            assert (got, problem.split(": ")[:2]) == (None, ["/params/n/1", case["because"]])


RFC8785_SECTION_3_2_4 = (
    '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
    '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
)


def test_sql_prints_the_example_of_rfc8785_section_3_2_4(conn: psycopg.Connection) -> None:
    text = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    assert sql_canonical(conn, [text]) == [RFC8785_SECTION_3_2_4]
    assert rfc8785.dumps(json.loads(text)).decode() == RFC8785_SECTION_3_2_4


def _author_files() -> list[Path]:
    return sorted(AUTHOR_DATA.glob("in-*.json")) if AUTHOR_DATA.is_dir() else []


@needs_author_data
def test_sql_equals_rfc8785_on_the_authors_test_data(conn: psycopg.Connection) -> None:
    files = _author_files()
    assert len(files) >= 6
    texts = [path.read_text(encoding="utf-8") for path in files]
    got = sql_canonical(conn, texts)
    for path, text, canonical in zip(files, texts, got, strict=True):
        value = json.loads(text)
        assert canonical == rfc8785.dumps(value).decode(), path.name
        assert canonical == canonicalize(value).decode(), path.name
    # 333333333.33333329 is 17 digits for the double 333333333.3333333: not exact
    exact = sql_canonical(conn, texts, "run_proof_jcs_exact")
    problems = sql_problems(conn, texts, exact=True)
    for path, canonical, exact_canonical, problem in zip(files, got, exact, problems, strict=True):
        if path.name == "in-values.json":
            assert (exact_canonical, problem) == (None, "/numbers/0: inexact: 333333333.33333329")
        else:
            assert (exact_canonical, problem) == (canonical, None), path.name


# --- property tests: random JSON through the server --------------------------------------------

# The Python canonicalizer's key characters (test_canonical_json): where UTF-16 order and code
# point order disagree (astral against U+E000..U+FFFF), control characters, and anything else
# but U+0000 (jsonb refuses it) and lone surrogates.
_chars = key_chars
_keys = st.text(_chars, max_size=6)
_strings = st.text(_chars, max_size=12)
# Edge doubles: layout switches of ES6 (1e21, 1e-7) and of float8out (1e15, 1e-4), the fast
# path's bounds (15 characters, 1e-6), subnormals, extremes, negative zero, 2^53 +- 1.
EDGE_FLOATS = [
    0.0,
    -0.0,
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    2.225073858507201e-308,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    1e21,
    9.999999999999999e20,
    1e20,
    123456789012345680000.0,
    1e-7,
    1.5e-7,
    9.99e-7,
    1e-6,
    0.000001234567891,
    1e-5,
    0.0001,
    1e15,
    999999999999999.9,
    1e16,
    float(2**53),
    float(2**53 + 2),
    0.1,
    0.30000000000000004,
    1 / 3,
    227.6,
    1500.0,
    123456789.125,
    4.35,
    0.000015,
    1e23,  # float8out: 9.999999999999999e+22
    3.4060724690242328e16,  # float8out: 3.4060724690242328e+16, ES6: 34060724690242330
]
_floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(EDGE_FLOATS),
    st.integers(-340, 307).flatmap(lambda e: st.integers(1, 9).map(lambda d: float(f"{d}e{e}"))),
)
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-SAFE, max_value=SAFE), _floats, _strings
)
json_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(_keys, children, max_size=6)
    ),
    max_leaves=30,
)
BATCH = settings(max_examples=20, deadline=None, database=None)


@BATCH
@given(st.lists(json_values, min_size=40, max_size=40))
@example([{"\ue000": 1, "\U0001f600": 2, "a": [-0.0, 1e21, 1e-7]}, "\x01\x1f\x7f\u2028"])
def test_sql_equals_rfc8785_and_the_python_canonicalizer_on_random_json(
    conn: psycopg.Connection, values: list[Any]
) -> None:
    texts = [json.dumps(value) for value in values]
    got = sql_canonical(conn, texts)
    exact = sql_canonical(conn, texts, "run_proof_jcs_exact")
    assert sql_walked(conn, texts, exact=False) == got
    assert sql_walked(conn, texts, exact=True) == exact
    stored = stored_text(conn, texts)
    for value, canonical, exact_canonical, as_stored in zip(
        values, got, exact, stored, strict=True
    ):
        oracle = rfc8785.dumps(value).decode()
        assert canonical == oracle
        assert canonical == canonicalize(value).decode()
        # the reader's path: the value as jsonb prints it, parsed back and canonicalized
        assert canonical == python_read_path(as_stored)
        # a writer's doubles and safe integers are exact: nothing for exact mode to refuse
        assert exact_canonical == oracle


def _exactly(text: str, canonical: str) -> bool:
    return Decimal(text) == Decimal(canonical)


_number_texts = st.one_of(
    # integers past 2^53, which a Python writer emits as they are
    st.integers(min_value=SAFE + 1, max_value=10**30).map(str),
    st.integers(min_value=-(10**30), max_value=-SAFE - 1).map(str),
    st.sampled_from([str(2**64), str(2**63 - 1), str(10**21), str(10**22 + 1)]),
    # doubles written as C's %.17g and as their exact decimal value (Java's BigDecimal)
    st.floats(allow_nan=False, allow_infinity=False).map(lambda x: format(x, ".17g")),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda x: str(Decimal(x))),
    # any decimal at all, within and beyond a double's range (1e400, 1e-400)
    st.tuples(st.integers(-(10**25), 10**25), st.integers(-420, 420)).map(
        lambda t: f"{t[0]}e{t[1]}"
    ),
    st.tuples(st.integers(0, 10**12), st.integers(0, 10**20), st.integers(-30, 30)).map(
        lambda t: f"{t[0]}.{t[1]}E{t[2]:+d}"
    ),
)


@BATCH
@given(st.lists(_number_texts, min_size=60, max_size=60))
@example(["9007199254740993", "18446744073709551616", "0.10000000000000001", "1e-400"])
def test_sql_reads_every_stored_number_as_python_does_and_flags_inexact_ones(
    conn: psycopg.Connection, texts: list[str]
) -> None:
    stored = stored_text(conn, texts)
    got = sql_canonical(conn, texts)
    exact = sql_canonical(conn, texts, "run_proof_jcs_exact")
    assert sql_walked(conn, texts, exact=False) == got
    assert sql_walked(conn, texts, exact=True) == exact
    problems = sql_problems(conn, texts, exact=True)
    for text, as_stored, canonical, exact_canonical, problem in zip(
        texts, stored, got, exact, problems, strict=True
    ):
        # v1: the double the stored number denotes, or refused (NULL, never an error)
        assert canonical == python_read_path(as_stored), text
        if canonical is None:
            assert exact_canonical is None and problem is not None
        elif _exactly(text, canonical):
            assert (exact_canonical, problem) == (canonical, None), text
        else:
            # what a later format must hash otherwise: reported, not rounded
            assert exact_canonical is None, text
            assert problem is not None and problem.startswith("(root): inexact: "), text


def _cesu8(key: str) -> bytes:
    units = key.encode("utf-16-be")
    return b"".join(
        chr(int.from_bytes(units[i : i + 2], "big")).encode("utf-8", "surrogatepass")
        for i in range(0, len(units), 2)
    )


@BATCH
@given(st.lists(_keys, min_size=60, max_size=60))
@example(["", "\U0001f600", "\ue000", "\ud7ff", "\U0010ffff", "é€\U00010000x"])
def test_sql_sort_keys_order_as_utf16_code_units(conn: psycopg.Connection, keys: list[str]) -> None:
    query = sql.SQL(
        "SELECT {}(u.k) FROM pg_catalog.unnest(%s::pg_catalog.text[]) WITH ORDINALITY u(k, i)"
        " ORDER BY u.i"
    ).format(_fn("run_proof_utf16_sort_key"))
    got = [bytes(row[0]) for row in conn.execute(query, (keys,)).fetchall()]
    assert got == [_cesu8(key) for key in keys]
    by_sql = [key for _, key in sorted(zip(got, keys, strict=True))]
    assert by_sql == sorted(keys, key=lambda key: key.encode("utf-16-be"))


_texts_or_null = st.one_of(st.none(), _strings)
_steps = st.fixed_dictionaries(
    {
        "tenant_id": _strings,
        "run_id": _strings,
        "step_index": st.one_of(st.none(), st.integers(0, 2**63 - 1)),
        "skill_id": _texts_or_null,
        "skill_name": _texts_or_null,
        "params": json_values,
        "status": _texts_or_null,
        "outcome_category": _texts_or_null,
        "outcome_code": _texts_or_null,
        "outcome_data": st.one_of(st.none(), json_values),
        "cost_cents": st.one_of(st.none(), _floats),
        "duration_ms": st.one_of(st.none(), _floats),
        "retry_count": st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
        "timestamp": st.one_of(
            st.none(),
            st.datetimes(
                min_value=datetime(1, 1, 2),
                max_value=datetime(9999, 12, 30),
                timezones=st.just(UTC),
            ),
        ),
    }
)


@settings(max_examples=10, deadline=None, database=None)
@given(st.lists(_steps, min_size=25, max_size=25))
def test_sql_step_record_equals_the_python_reader_on_random_steps(
    conn: psycopg.Connection, steps: list[dict[str, Any]]
) -> None:
    def column(name: str) -> list[Any]:
        return [step[name] for step in steps]

    types = "text text int8 text text text text text text text float8 float8 int8 timestamptz"
    unnests = sql.SQL(", ").join(
        sql.SQL("pg_catalog.unnest(%s::{}[])").format(sql.SQL(name)) for name in types.split()
    )
    query = sql.SQL(
        "SELECT {}(u.tenant_id, u.run_id, u.step_index, u.skill_id, u.skill_name,"
        " u.params::pg_catalog.jsonb, u.status, u.outcome_category, u.outcome_code,"
        " u.outcome_data::pg_catalog.jsonb, u.cost_cents, u.duration_ms, u.retry_count, u.ts)"
        " FROM ROWS FROM ({}) WITH ORDINALITY u(tenant_id, run_id, step_index, skill_id,"
        " skill_name, params, status, outcome_category, outcome_code, outcome_data, cost_cents,"
        " duration_ms, retry_count, ts, i) ORDER BY u.i"
    ).format(_fn("run_proof_v1_step_canonical"), unnests)
    arguments = [
        column("tenant_id"),
        column("run_id"),
        column("step_index"),
        column("skill_id"),
        column("skill_name"),
        [json.dumps(step["params"]) for step in steps],
        column("status"),
        column("outcome_category"),
        column("outcome_code"),
        [_json(step["outcome_data"]) for step in steps],
        column("cost_cents"),
        column("duration_ms"),
        column("retry_count"),
        column("timestamp"),
    ]
    got = [row[0] for row in conn.execute(query, arguments).fetchall()]
    assert got == [step_canonical_bytes(**step).decode() for step in steps]


def _sql_doubles(conn: psycopg.Connection, values: list[float]) -> list[str | None]:
    """run_proof_jcs_double of each value, in order, in one query."""
    query = sql.SQL(
        "SELECT {}(u.x) FROM pg_catalog.unnest(%s::pg_catalog.float8[]) WITH ORDINALITY u(x, i)"
        " ORDER BY u.i"
    ).format(_fn("run_proof_jcs_double"))
    return [row[0] for row in conn.execute(query, (values,)).fetchall()]


@BATCH
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=60, max_size=60))
@example([-0.0, 5e-324, 1e15, 1e-5, 1e21, 1e-7, 1e16, 0.0001])
def test_sql_prints_float8_values_as_es6(conn: psycopg.Connection, values: list[float]) -> None:
    got = _sql_doubles(conn, values)
    assert got == [es6_number(value) for value in values]


def _huge_doubles() -> list[float]:
    """Doubles at and beyond 2^54, where float8out's shortest digits can differ from ES6's."""
    rng = random.Random(13)
    values = [1e23, -1e23, 3.4060724690242328e16, 2.0**54, 2.0**1023, 1.7976931348623157e308]
    for _ in range(2000):
        bits = (rng.randint(54, 1023) + 1023) << 52 | rng.getrandbits(52)
        values.append(struct.unpack(">d", struct.pack(">Q", bits))[0])
    values += [float(f"{d}e{k}") for k in range(16, 308) for d in (1, 2, 5, 9)]
    return values


def test_sql_prints_huge_doubles_as_es6_where_float8out_does_not(
    conn: psycopg.Connection,
) -> None:
    values = _huge_doubles()
    got = _sql_doubles(conn, values)
    assert got == [es6_number(value) for value in values]
    assert got[:3] == ["1e+23", "-1e+23", "34060724690242330"]
    # and the same doubles written as jsonb numbers (exactly, the way Python writes ints)
    texts = [str(int(value)) for value in values]
    assert sql_canonical(conn, texts) == [python_read_path(text) for text in texts]


# --- what cannot be represented: NULL, never an error ------------------------------------------


def test_values_the_format_refuses_give_null_and_never_raise(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        sql.SQL(
            "SELECT {d}('NaN'), {d}('Infinity'), {d}('-Infinity'),"
            " {n}('NaN'::numeric, false), {n}('Infinity'::numeric, false),"
            " {t}('infinity'), {t}('-infinity'), {t}('10000-01-01 00:00:00+00'),"
            " {t}('0001-01-01 00:00:00+00'::timestamptz - interval '1 microsecond'),"
            " {t}('9999-12-31 23:59:59.999999+00'),"
            " {s}('not hex', 't', 'r', 0, 's', 's', '{{}}', 'ok', 'c', '200', null, 1, 2, 0,"
            "     '2026-02-09 10:00:00+00'),"
            " {s}(repeat('A', 64), 't', 'r', 0, 's', 's', '{{}}', 'ok', 'c', '200', null, 1, 2,"
            "     0, '2026-02-09 10:00:00+00'),"
            " {s}(repeat('a', 64), 't', 'r', 0, 's', 's', '{{}}', 'ok', 'c', '200', null,"
            "     'NaN', 2, 0, '2026-02-09 10:00:00+00'),"
            " {s}(repeat('a', 64), 't', 'r', 0, 's', 's', '[1e-400]', 'ok', 'c', '200', null,"
            "     1, 2, 0, '2026-02-09 10:00:00+00'),"
            " {s}(repeat('a', 64), 't', 'r', 0, 's', 's', '{{}}', 'ok', 'c', '200', null, 1, 2,"
            "     0, 'infinity'),"
            " {s}(repeat('a', 64), 't', 'r', 0, 's', 's', '{{}}', 'ok', 'c', '200', null, 1, 2,"
            "     0, '2026-02-09 10:00:00+00')"
        ).format(
            d=_fn("run_proof_jcs_double"),
            n=_fn("run_proof_jcs_number"),
            t=_fn("run_proof_canonical_timestamp"),
            s=_fn("run_proof_v1_step_hash"),
        )
    ).fetchone()
    assert rows[:9] == (None,) * 9
    assert rows[9] == "9999-12-31T23:59:59.999999Z"
    assert rows[10:15] == (None,) * 5
    assert rows[15] is not None and len(rows[15]) == 64


def test_sql_null_arguments_are_json_null(conn: psycopg.Connection) -> None:
    canonical = conn.execute(
        sql.SQL(
            "SELECT {}(null, null, null, null, null, null, null, null, null, null, null, null,"
            " null, null), {}(null), {}('null')"
        ).format(_fn("run_proof_v1_step_canonical"), _fn("run_proof_jcs"), _fn("run_proof_jcs"))
    ).fetchone()
    record = {
        key: None
        for key in (
            "tenant_id run_id step_index skill_id skill_name params status outcome_category"
            " outcome_code outcome_data cost_cents duration_ms retry_count timestamp"
        ).split()
    }
    assert canonical == (
        canonicalize({**record, "v": 1, "kind": "step"}).decode(),
        "null",
        "null",
    )


def test_integers_beyond_2_53_in_integer_columns_read_as_their_double(
    conn: psycopg.Connection,
) -> None:
    values = [0, SAFE, -SAFE, SAFE + 2, 2**63 - 1, -(2**63)]
    query = sql.SQL(
        "SELECT {}(u.x) FROM pg_catalog.unnest(%s::pg_catalog.int8[]) WITH ORDINALITY u(x, i)"
        " ORDER BY u.i"
    ).format(_fn("run_proof_v1_integer"))
    got = [row[0] for row in conn.execute(query, (values,)).fetchall()]
    assert got == [canonicalize(value, strict=False).decode() for value in values]
    assert got[-2:] == ["9223372036854776000", "-9223372036854776000"]


def _nested(depth: int, inner: str = "1.50") -> str:
    """`depth` levels, arrays and objects taking turns, around `inner`."""
    text = inner
    for level in range(depth):
        text = f'{{"k":{text},"a":0}}' if level % 2 else f"[{text},-0.0]"
    return text


def test_nesting_up_to_128_levels_is_canonicalized_and_deeper_is_refused_like_python(
    conn: psycopg.Connection,
) -> None:
    # docs/json-nesting.md: a hashed value nests at most 128 levels. 31 stay on the
    # per-level path; 40 and more cross over to the stackless walk, which also measures
    # values as deep as jsonb takes them (14,554 levels of `[` by default).
    mixed = [31, 32, 33, 40, 127, 128, 129, 2000, 5000]
    arrays = [*mixed, 14000]
    depths = [*mixed, *arrays, 1]
    texts = [_nested(depth) for depth in mixed] + [
        "[" * depth + "1" + "]" * depth for depth in arrays
    ]
    texts.append('{"s":"' + "[" * 200 + '"}')  # brackets in a string are text: depth 1
    python = [python_read_path(text) for text in texts]
    assert [value is not None for value in python] == [depth <= 128 for depth in depths]
    for exact in (False, True):
        function = "run_proof_jcs_exact" if exact else "run_proof_jcs"
        assert sql_canonical(conn, texts, function) == python
        assert sql_walked(conn, texts, exact) == python
    problems = sql_problems(conn, texts, exact=False)
    for depth, problem in zip(depths, problems, strict=True):
        assert problem == (None if depth <= 128 else f"(root): nesting: {depth} levels")
    # a refused number inside a too-deep value: the nesting is named first
    deep_and_refused = _nested(130, "1e400")
    assert sql_canonical(conn, [deep_and_refused]) == [None]
    assert sql_problems(conn, [deep_and_refused], exact=False) == ["(root): nesting: 130 levels"]
    shallow_and_refused = _nested(50, "1e400")
    assert sql_problems(conn, [shallow_and_refused], exact=False) == [
        "/k/0" * 25 + ": overflow: 1" + "0" * 23 + "..." + "0" * 12 + " (401 characters)"
    ]


def test_walk_and_per_level_path_agree_on_a_wide_and_deep_value(
    conn: psycopg.Connection,
) -> None:
    nested: Any = {"\U0001f600": [1e-7], "\ue000": -0.0}
    for i in range(60):
        nested = [nested, {"z": i, "\ud7ff": nested}] if i % 7 == 0 else {"n": nested, "a": i}
    text = json.dumps(nested)
    assert sql_canonical(conn, [text]) == sql_walked(conn, [text], exact=False)
    assert sql_canonical(conn, [text]) == [rfc8785.dumps(nested).decode()]


# --- a hostile session -------------------------------------------------------------------------

# Each changes, left to itself, how a value prints, what a name means or how code compiles.
HOSTILE = [
    ("extra_float_digits", "-15"),
    ("DateStyle", "SQL, DMY"),
    ("IntervalStyle", "sql_standard"),
    ("TimeZone", "Pacific/Chatham"),
    ("search_path", "shadow, pg_catalog"),
    ("standard_conforming_strings", "off"),
    ("bytea_output", "escape"),
    ("transform_null_equals", "on"),
    ("plan_cache_mode", "force_custom_plan"),
    ("work_mem", "64kB"),
    ("plpgsql.variable_conflict", "use_column"),
    ("plpgsql.extra_errors", "all"),
]

# Decoys for unqualified names: the same names as built-ins ours call, and an operator that
# pg_catalog lacks (numeric = integer), which would win even with pg_catalog first.
SHADOW = """
CREATE SCHEMA shadow;
CREATE FUNCTION shadow.sha256(bytea) RETURNS bytea LANGUAGE sql
    AS $$ SELECT pg_catalog.decode('00', 'hex') $$;
CREATE FUNCTION shadow.jsonb_typeof(jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'string' $$;
CREATE FUNCTION shadow.to_json(text) RETURNS json LANGUAGE sql AS $$ SELECT '"x"'::json $$;
CREATE FUNCTION shadow.convert_to(text, name) RETURNS bytea LANGUAGE sql
    AS $$ SELECT pg_catalog.decode('01', 'hex') $$;
CREATE FUNCTION shadow.textcat(text, text) RETURNS text LANGUAGE sql AS $$ SELECT 'X' $$;
CREATE OPERATOR shadow.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = shadow.textcat);
CREATE FUNCTION shadow.num_eq_int(numeric, integer) RETURNS boolean LANGUAGE sql
    AS $$ SELECT true $$;
CREATE OPERATOR shadow.= (LEFTARG = numeric, RIGHTARG = integer, FUNCTION = shadow.num_eq_int);
"""

HOSTILE_PROBES = [
    '{"cost":227.6,"n":[1e21,1e-7,0.30000000000000004,1500.0,5e-324,-0.0,0,123456789012345678]}',
    '{"\\ud83d\\ude00":1,"\\ue000":2,"a\\u0001\\n":"\\"\\\\/\\u2028","\\u00e9":[true,false,null]}',
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[0.1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
    "9007199254740993",
    "[2798.0000000000000000001]",
]


def _everything(conn: psycopg.Connection) -> dict[str, Any]:
    cases = _bundled_cases() + _extra_cases()
    return {
        "chains": [sql_chain(conn, case) for case in cases],
        "canonical": sql_canonical(conn, HOSTILE_PROBES),
        "exact": sql_canonical(conn, HOSTILE_PROBES, "run_proof_jcs_exact"),
        "problems": sql_problems(conn, HOSTILE_PROBES, exact=True),
        "timestamp": conn.execute(
            sql.SQL("SELECT {}('2026-02-09 23:30:00.000001+00')").format(
                _fn("run_proof_canonical_timestamp")
            )
        ).fetchone()[0],
    }


def _defaults(conn: psycopg.Connection, scope: str, database: str, reset: bool) -> None:
    """Each hostile value as a default of the database, or of the role in this database."""
    target = (
        sql.SQL("DATABASE {}").format(sql.Identifier(database))
        if scope == "database"
        else sql.SQL("ROLE CURRENT_USER IN DATABASE {}").format(sql.Identifier(database))
    )
    for name, value in HOSTILE:
        # a list setting takes its elements one by one ('a, b' would be one schema name)
        shown: sql.Composable = (
            sql.SQL(", ").join(sql.Identifier(part.strip()) for part in value.split(","))
            if name == "search_path"
            else sql.Literal(value)
        )
        change = (
            sql.SQL("RESET {}").format(sql.Identifier(name))
            if reset
            else sql.SQL("SET {} = {}").format(sql.Identifier(name), shown)
        )
        conn.execute(sql.SQL("ALTER {} {}").format(target, change))


@pytest.mark.parametrize("scope", ["session", "database", "role"])
def test_a_hostile_session_gets_the_same_bytes(
    canon_url: str, conn: psycopg.Connection, scope: str
) -> None:
    baseline = _everything(conn)
    assert baseline["chains"][0] == _expected(_bundled_cases()[0])
    database = conn.info.dbname
    conn.execute(SHADOW)
    try:
        if scope != "session":
            _defaults(conn, scope, database, reset=False)
        with psycopg.connect(canon_url, autocommit=True) as hostile:
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
    canon_url: str, conn: psycopg.Connection
) -> None:
    probe = ['{"b":[1e21,0.5],"a":"x"}']
    with psycopg.connect(canon_url, autocommit=True) as hostile:
        # pg_temp is searched first for type names unless a path lists it: `text` and
        # `jsonb` written unqualified now mean these domains in this session.
        hostile.execute("CREATE DOMAIN pg_temp.text AS pg_catalog.varchar(1)")
        hostile.execute("CREATE DOMAIN pg_temp.bytea AS pg_catalog.text CHECK (false)")
        assert hostile.execute("SELECT 'abc'::text").fetchone() == ("a",)
        with pytest.raises(psycopg.errors.CheckViolation):
            hostile.execute("SELECT 'abc'::bytea")
        assert sql_canonical(hostile, probe) == sql_canonical(conn, probe)
        assert sql_canonical(hostile, probe) == ['{"a":"x","b":[1e+21,0.5]}']
