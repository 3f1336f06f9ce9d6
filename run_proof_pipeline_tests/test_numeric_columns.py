"""Issue 12: a column the owner turned into another type (`numeric` for `step_index` or
`cost_cents`, `text` for `params`) is refused before anything is proved, by `run-proof
verify`, the sweep and `export` as real processes: exit 1, one line on stderr naming the
column and its type, no traceback, nothing written. (test_hostile_session.py covers
`duration_ms numeric`, `params json`, `retry_count text` and `cost_cents text` in process.)

Behind that check, the step decoders still refuse such values themselves (fail closed): a
`1.0` step_index or a `numeric` number with more digits than a double has is FAILED at its
step, never hashed as the integer or double it looks like.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.integrity import ChainVerifier, StoredTrace, genesis_hash, header_record
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.relations import UntrustedStore
from run_proof_pipeline.store.step_rows import StepLineDecoder, StepRowDecoder
from run_proof_pipeline.sweep import SweepOptions, run_sweep
from run_proof_pipeline_tests.support.stores import recorded_store
from run_proof_pipeline_tests.test_ledger_support import one, tamper

CLI = str(Path(sys.executable).with_name("run-proof"))
TENANT = "tenant-num"
RUN = "run-num"


def _slow(*values: object) -> object:
    # Each case starts three `run-proof` processes: the first stays in the quick suite.
    return pytest.param(*values, marks=pytest.mark.slow)


def _run_cli(url: DatabaseUrl, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "USE_POSTGRES_TRACES"}
    env["DATABASE_URL"] = url.libpq()
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=180)


def _one_line(completed: subprocess.CompletedProcess[str], needle: str) -> str:
    lines = completed.stderr.splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith("run-proof: refusing to prove: ") and needle in lines[0]
    assert "Traceback" not in completed.stdout + completed.stderr
    return lines[0]


@pytest.fixture
def altered_store(pg_server: LocalPostgres) -> Iterator[DatabaseUrl]:
    with recorded_store(pg_server, "numeric", TENANT, RUN, steps=3) as made:
        yield made.url


def _alter(url: DatabaseUrl, column: str, new_type: str, stored: str) -> None:
    """As the owner: the column's type changed, then step 1 set to `stored` (a literal)."""
    with psycopg.connect(url.libpq(), autocommit=True) as conn:
        conn.execute(
            f'ALTER TABLE aos_trace_steps ALTER COLUMN "{column}" TYPE {new_type}'
            f' USING "{column}"::{new_type}'
        )
    touched = tamper(
        url,
        (
            f'UPDATE aos_trace_steps SET "{column}" = {stored}'
            " WHERE run_id = %s AND step_index = 1",
            (RUN,),
        ),
    )
    assert touched == [1]
    with psycopg.connect(url.libpq()) as conn:
        shown = conn.execute(
            f'SELECT "{column}"::text FROM aos_trace_steps WHERE run_id = %s'
            " ORDER BY step_index OFFSET 1 LIMIT 1",
            (RUN,),
        ).fetchone()
    assert shown is not None and shown[0] == stored.strip("'")  # stored exactly as the owner wrote


def _sweep_state_rows(url: DatabaseUrl) -> int | None:
    if one(url, "SELECT to_regclass('run_proof_sweep_verified')") is None:
        return None
    return int(one(url, "SELECT count(*) FROM run_proof_sweep_verified"))


@pytest.mark.parametrize(
    ("column", "new_type", "stored"),
    [
        ("step_index", "numeric", "1.0"),
        _slow("cost_cents", "numeric", "0.5000000000000000001"),
        _slow("params", "text", """'{"url":  "https://example.invalid/api", "attempt": 1}'"""),
    ],
    ids=["step_index-numeric", "cost_cents-numeric", "params-text"],
)
def test_a_column_of_another_type_is_refused_by_every_command(
    altered_store: DatabaseUrl, tmp_path: Path, column: str, new_type: str, stored: str
) -> None:
    url = altered_store
    _alter(url, column, new_type, stored)
    needle = f"public.aos_trace_steps.{column} has type {new_type}, expected "
    state_before = _sweep_state_rows(url)

    verify = _run_cli(url, "verify", "--tenant-id", TENANT, "--run-id", RUN)
    assert verify.returncode == 1
    _one_line(verify, needle)
    assert "verification_status" not in verify.stdout  # no verdict at all, not even FAILED

    with pytest.raises(UntrustedStore, match=needle):
        run_sweep(url, SweepOptions(full=True, workers=1, tenant_id=TENANT))
    sweep = _run_cli(url, "sweep", "--full", "--tenant-id", TENANT, "--workers", "1")
    assert sweep.returncode == 1
    _one_line(sweep, needle)
    assert _sweep_state_rows(url) == state_before  # nothing recorded as verified

    out = tmp_path / "bundle.json"
    export = _run_cli(url, "export", "--tenant-id", TENANT, "--run-id", RUN, "--out", str(out))
    assert export.returncode == 1
    _one_line(export, needle)
    assert not out.exists()


# --- behind the relation check: the decoders refuse such values themselves -----------------


def _row(step_index: str, cost_cents: str) -> tuple[str | None, ...]:
    return (
        step_index,
        TENANT,
        RUN,
        "skill.http_call",
        "http_call",
        '{"attempt": 1}',
        "succeeded",
        "success",
        "200",
        '{"ok": true}',
        cost_cents,
        "227.6",
        "0",
        "2026-02-09 10:00:01.123456+00",
        "0" * 64,
        "1" * 64,
    )


@pytest.mark.parametrize(
    ("step_index", "cost_cents", "error"),
    [
        ("1.0", "0.5", "'1.0' is not an integer value"),
        ("1e0", "0.5", "'1e0' is not an integer value"),
        (
            "1",
            "0.5000000000000000001",
            "step 1: stored value is not representable in format v1: not a float8 value: number"
            " 0.5000000000000000001 has 19 significant digits and is not the exact value of a"
            " double (at most 17, or a double's exact decimal value; it reads as 0.5)",
        ),
        (
            "1",
            "0." + "0" * 400 + "1",
            "step 1: stored value is not representable in format v1: not a float8 value: number"
            " 0.0000000000000000000000...000000000001 (403 characters, ~1E-401) is not zero but"
            " underflows to zero as a double",
        ),
    ],
    ids=["index-1.0", "index-1e0", "cost-19-digits", "cost-underflow"],
)
def test_the_decoders_fail_a_numeric_value_instead_of_rounding_it(
    step_index: str, cost_cents: str, error: str
) -> None:
    row = _row(step_index, cost_cents)
    line = "\t".join(row).encode() + b"\n"
    for decoded in (StepLineDecoder().decode(line), StepRowDecoder().decode(row)):
        assert decoded.canonical is None
        assert decoded.error == error


def test_a_numeric_step_index_fails_the_proof_at_that_step() -> None:
    header = {
        "tenant_id": TENANT,
        "run_id": RUN,
        "trace_id": "t",
        "agent_id": None,
        "plan_id": None,
        "plan": None,
        "started_at": "2026-02-09T10:00:00.000000Z",
    }
    genesis = genesis_hash(header_record(**header)).hex()
    trace = StoredTrace(
        **header,
        status=None,
        completed_at=None,
        genesis_hash=genesis,
        root_hash=None,
        chain_length=None,
    )
    verifier = ChainVerifier(trace)
    StepRowDecoder().decode(_row("0.0", "0.5")).feed_to(verifier)
    verdict = verifier.finish()

    assert verdict.status == "FAILED" and verdict.failure is not None
    assert (verdict.failure.step_index, verdict.failure.field) == (0, "step_index")
    assert verdict.failure_reason == (
        "step 0: step_index is not an integer (expected 0, found None)"
    )
