"""Bad input gets a clear error and writes nothing (docs/bad-input.md lists the messages).

The CLI cases run `run-proof verify` as a real process: the documented exit code, one line
on stderr, no traceback, no password.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from run_proof_pipeline.cli.main import app
from run_proof_pipeline.ledger.keys import generate_signing_key
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import async_engine
from run_proof_pipeline.store.recorder import InvalidRecord, TraceRecorder, TraceSealed
from run_proof_pipeline_tests.support.cli_process import CLI, run_process, verify_run
from run_proof_pipeline_tests.support.stores import BASE, make_step, record_run, run
from run_proof_pipeline_tests.support.v1_writer import V1TraceWriter
from run_proof_pipeline_tests.test_ledger_support import ledger_entries, one

SECRET = "s3cret-pw"


def _slow(*values: object) -> Any:
    # Each case starts a real `run-proof` process (seconds each): one per exit code stays in
    # the quick suite, the rest run with the slow ones.
    return pytest.param(*values, marks=pytest.mark.slow)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("database_url", "code", "message"),
    [
        ("not a url at all", 2, "is not a valid database URL"),
        _slow(
            f"mysql://app:{SECRET}@db.example/aos", 2, "is not a PostgreSQL URL (scheme 'mysql')"
        ),
        _slow("sqlite:///traces.db", 2, "is not a PostgreSQL URL (scheme 'sqlite')"),
        _slow(f"postgresql://app:{SECRET}@127.0.0.1:5432", 2, "names no database"),
        (f"postgresql://app:{SECRET}@127.0.0.1:{{port}}/aos", 5, "database unreachable"),
    ],
    ids=["malformed", "mysql", "sqlite", "no-database", "closed-port"],
)
def test_bad_database_url_is_one_clear_line(database_url: str, code: int, message: str) -> None:
    completed = verify_run(database_url.format(port=_closed_port()), "tenant-a", "run-1")

    assert completed.returncode == code
    lines = completed.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("run-proof: ")
    assert message in lines[0]
    assert SECRET not in completed.stderr + completed.stdout


@pytest.mark.parametrize(
    ("tenant_id", "run_id"),
    [
        ("tenant-a", "run-1' OR '1'='1"),
        _slow("tenant-a' --", "run-1"),
        _slow("%", "%"),
        _slow("tenant-a", "run-1; DROP TABLE aos_traces; --"),
        _slow("t" * 10_000, "r" * 10_000),
    ],
    ids=["quote-run", "quote-tenant", "percent", "semicolon", "10k-chars"],
)
def test_hostile_ids_find_nothing(store: DatabaseUrl, tenant_id: str, run_id: str) -> None:
    record_run(store, "tenant-a", "run-1", steps=2)

    completed = verify_run(store.libpq(), tenant_id, run_id)

    assert completed.returncode == 4, completed.stderr
    assert "verification_status: UNSUPPORTED" in completed.stdout
    assert "failure_reason: No trace found for run" in completed.stdout
    assert completed.stderr == ""
    assert one(store, "SELECT count(*) FROM aos_traces") == 1


def test_nul_byte_id_finds_nothing(store: DatabaseUrl, monkeypatch: pytest.MonkeyPatch) -> None:
    # argv cannot carry NUL, so this one runs in-process.
    monkeypatch.setenv("DATABASE_URL", store.libpq())
    result = CliRunner().invoke(app, ["verify", "--tenant-id", "tenant-a", "--run-id", "r\x00"])

    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code == 4
    assert "No trace found for run" in result.output


async def _append(url: DatabaseUrl, run_id: str, **overrides: Any) -> None:
    engine = async_engine(url)
    try:
        await V1TraceWriter(engine).append_step("tenant-a", run_id, make_step(1, **overrides))
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"params": {"x": math.nan}}, "step 1: params.x: nan is not a finite number"),
        ({"outcome_data": {"x": math.inf}}, "step 1: outcome_data.x: inf is not a finite number"),
        ({"cost_cents": -math.inf}, "step 1: cost_cents: -inf is not a finite number"),
        ({"params": {"n": 2**53}}, "integer 9007199254740992 is outside +-(2^53-1)"),
        ({"timestamp": datetime(2026, 2, 9, 10, 0)}, "has no UTC offset"),
        ({"timestamp": "2026-02-09T10:00:00"}, "has no UTC offset"),
        ({"skill_name": "a\x00b"}, "step 1: skill_name: string contains U+0000"),
    ],
    ids=["nan", "inf", "minus-inf", "huge-int", "naive-datetime", "naive-string", "nul"],
)
def test_unrepresentable_step_values_are_refused_and_nothing_is_written(
    store: DatabaseUrl, overrides: dict[str, Any], message: str
) -> None:
    record_run(store, "tenant-a", "run-open", steps=1, seal=False, chain_format=1)

    with pytest.raises(InvalidRecord) as refused:
        run(_append(store, "run-open", **overrides))

    assert message in str(refused.value)
    assert one(store, "SELECT count(*) FROM aos_trace_steps") == 1


def test_a_step_after_the_seal_is_refused_by_the_recorder_and_the_database(
    store: DatabaseUrl,
) -> None:
    record_run(store, "tenant-a", "run-1", steps=2, chain_format=1)

    with pytest.raises(TraceSealed, match="'run-1' is sealed: no step may be appended"):
        run(_append(store, "run-1"))
    with psycopg.connect(store.libpq()) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="is sealed"):
            conn.execute(
                "INSERT INTO aos_trace_steps (trace_id, run_id, tenant_id, step_index)"
                " VALUES ('trace-run-1', 'run-1', 'tenant-a', 2)"
            )

    assert one(store, "SELECT count(*) FROM aos_trace_steps") == 2


def test_a_second_seal_is_refused_by_the_recorder_and_the_database(store: DatabaseUrl) -> None:
    record_run(store, "tenant-a", "run-1", steps=2)
    root = one(store, "SELECT root_hash FROM aos_traces")

    async def reseal() -> None:
        engine = async_engine(store)
        try:
            await TraceRecorder(engine).seal(
                "tenant-a", "run-1", status="failed", completed_at=BASE
            )
        finally:
            await engine.dispose()

    with pytest.raises(TraceSealed, match="'run-1' is already sealed"):
        run(reseal())
    with psycopg.connect(store.libpq()) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="is sealed"):
            conn.execute("UPDATE aos_traces SET root_hash = repeat('0', 64), status = 'failed'")

    assert one(store, "SELECT root_hash FROM aos_traces") == root
    assert len(ledger_entries(store)) == 1


def _verify_bundle(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`run-proof verify-bundle` as a process, with only `env` for the key and origin settings."""
    settings = ("RUN_PROOF_PUBLIC_KEY", "RUN_PROOF_PUBLIC_KEY_FILE", "RUN_PROOF_CHECKPOINT_ORIGIN")
    clean = {k: v for k, v in os.environ.items() if k not in settings}
    return run_process(
        [CLI, "verify-bundle", str(tmp_path / "bundle.json"), *args], {**clean, **env}
    )


KEY = generate_signing_key("run-proof.local/aos").verifier().text()


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["--public-key", KEY],
            {},
            "verify-bundle needs the origin of the log the bundle must be of: --origin ORIGIN "
            "or RUN_PROOF_CHECKPOINT_ORIGIN",
        ),
        _slow(
            ["--origin", "run-proof.local/aos"],
            {},
            "a public key is needed: --public-key KEY_TEXT or --public-key-file PATH",
        ),
        _slow(
            ["--public-key", KEY, "--public-key-file", "{pub}", "--origin", "o"],
            {},
            "both --public-key and --public-key-file are given",
        ),
        _slow(
            ["--origin", "o"],
            {"RUN_PROOF_PUBLIC_KEY": KEY, "RUN_PROOF_PUBLIC_KEY_FILE": "{pub}"},
            "configuration error: both RUN_PROOF_PUBLIC_KEY and RUN_PROOF_PUBLIC_KEY_FILE",
        ),
        _slow(
            ["--public-key", "{pub}", "--origin", "o"],
            {},
            "this value is the key's text, never a path: a key file is given with "
            "--public-key-file",
        ),
        _slow(
            ["--public-key-file", KEY, "--origin", "o"],
            {},
            "--public-key-file takes the path of a key file, and its value is a key's text",
        ),
        _slow(
            ["--public-key-file", "{missing}", "--origin", "o"],
            {},
            "absent.pub': no such file",
        ),
    ],
    ids=[
        "no-origin",
        "no-key",
        "text-and-file",
        "both-settings",
        "path-as-text",
        "text-as-path",
        "missing-file",
    ],
)
def test_verify_bundle_key_and_origin_are_never_guessed(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    pub = tmp_path / "aos.pub"
    pub.write_text(KEY + "\n", encoding="ascii")
    paths = {"pub": str(pub), "missing": str(tmp_path / "absent.pub")}

    completed = _verify_bundle(
        tmp_path,
        *(a.format(**paths) for a in args),
        **{k: v.format(**paths) for k, v in env.items()},
    )

    assert completed.returncode == 2
    assert completed.stdout == ""
    lines = completed.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("run-proof: "), lines
    assert message in lines[0]
