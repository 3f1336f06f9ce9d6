"""Issue 12: hostile database defaults, per CLI command, as real `run-proof` processes.

The database owner sets `DateStyle = 'SQL, DMY'` or `client_encoding = 'LATIN1'` as a
database default (`ALTER DATABASE ... SET`) or a role default (`ALTER ROLE ... IN DATABASE
... SET`); every command then gives the verdict or result it gives without them (a tampered
run FAILED at its step, a clean one VERIFIED, a bundle equal to the one exported without
them, hashes that verify after the default is gone), never a traceback. Why it holds:
run_proof_pipeline/store/session_pins.py pins these settings at every connection.

One shared store for the module (an AOS database with legacy traces, one per `adopt` case
written by AOS before the upgrade, migrated, with a clean and a tampered native run and a
checkpoint); `db upgrade` and `demo` get a database of their
own, since they are about a database not yet migrated. Each case sets its default and resets
it after. The whole matrix is slow; three representative cases stay in the fast loop.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from run_proof_pipeline.cli.main import app
from run_proof_pipeline.coordinator import get_run_proof_coordinator
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.migrate import upgrade
from run_proof_pipeline.sweep import SweepOptions, run_sweep
from run_proof_pipeline_tests.support.aos_fixtures import (
    LEGACY_BASE,
    all_aos_contents,
    aos_insert_step,
    aos_insert_trace,
    create_aos_store,
)
from run_proof_pipeline_tests.support.cli_process import CLI, retire_words, run_process
from run_proof_pipeline_tests.support.stores import prove, record_run
from run_proof_pipeline_tests.test_hostile_session import _reset_default, _set_default
from run_proof_pipeline_tests.test_ledger_support import audit, make_checkpoint, one, tamper

TENANT = "tenant-d"
CLEAN, TAMPERED = "run-clean", "run-tampered"
HOSTILE = (("DateStyle", "SQL, DMY"), ("client_encoding", "LATIN1"))
SCOPES = ("database", "role")
COMMANDS = (
    "verify",
    "sweep",
    "export",
    "checkpoint-create",
    "checkpoint-verify",
    "db-upgrade",
    "adopt",
    "retire",
    "demo",
)
# The fast loop keeps one case of each kind: a proof, a hash-computing writer, a reader.
FAST = {
    ("database", "DateStyle", "verify"),
    ("role", "client_encoding", "adopt"),
    ("database", "client_encoding", "export"),
}
_CLEARED = (
    "USE_POSTGRES_TRACES",
    "RUN_PROOF_PUBLIC_KEY",
    "RUN_PROOF_PUBLIC_KEY_FILE",
    "RUN_PROOF_CHECKPOINT_ORIGIN",
)


@dataclass(frozen=True)
class Shared:
    url: DatabaseUrl
    checkpoints: Path
    key: Path
    bundle: dict[str, Any]  # TAMPERED's bundle, exported with no hostile default
    legacy: dict[tuple[str, str], str]  # (scope, setting) -> the run id `adopt` adopts


@contextmanager
def _ledger_env(checkpoints: Path, key: Path) -> Iterator[None]:
    """The module's checkpoint settings, for the in-process checks."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RUN_PROOF_CHECKPOINT_DIR", str(checkpoints))
        patch.setenv("RUN_PROOF_SIGNING_KEY", str(key))
        for name in _CLEARED[1:]:
            patch.delenv(name, raising=False)
        yield


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str


def _cli(url: DatabaseUrl, *args: str, checkpoints: Path, key: Path) -> Ran:
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.update(
        DATABASE_URL=url.libpq(),
        RUN_PROOF_CHECKPOINT_DIR=str(checkpoints),
        RUN_PROOF_SIGNING_KEY=str(key),
    )
    completed = run_process([CLI, *args], env, timeout=300)
    ran = Ran(completed.returncode, completed.stdout, completed.stderr)
    assert "Traceback" not in ran.stdout + ran.stderr, ran.stderr
    return ran


@pytest.fixture(scope="module")
def shared(pg_server: LocalPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    base = tmp_path_factory.mktemp("hostile-cli")
    checkpoints, key = base / "checkpoints", base / "keys" / "ledger.key"
    name = f"hostile_cli_{uuid.uuid4().hex[:12]}"
    url = DatabaseUrl.parse(pg_server.create_database(name, exist_ok=False))
    create_aos_store(url)
    # One legacy run per adopt case, written by AOS before the upgrade: after 0006 an INSERT
    # is chained in format v2, so a legacy (unchained) trace can only come from before it.
    legacy = {(sc, name): f"run-legacy-{sc}-{name}" for sc in SCOPES for name, _ in HOSTILE}
    started = LEGACY_BASE + timedelta(days=1)
    with psycopg.connect(url.libpq()) as conn:
        for run_id in legacy.values():
            trace_id = f"tr-{run_id}"
            aos_insert_trace(
                conn,
                trace_id=trace_id,
                run_id=run_id,
                tenant_id="acme",
                started_at=started,
                status="completed",
                completed_at=started + timedelta(minutes=5),
            )
            for index in range(2):
                aos_insert_step(
                    conn, trace_id=trace_id, step_index=index, at=started + timedelta(seconds=index)
                )
    upgrade(url)
    record_run(url, TENANT, CLEAN, steps=3, chain_format=1)
    record_run(url, TENANT, TAMPERED, steps=3, chain_format=1)
    assert tamper(
        url,
        (
            "UPDATE aos_trace_steps SET cost_cents = 5.49 WHERE trace_id = %s AND step_index = 1",
            (f"trace-{TAMPERED}",),
        ),
    ) == [1]
    baseline = base / "baseline.json"
    with _ledger_env(checkpoints, key):
        make_checkpoint(url)
        # The reference, in process (no default is set yet).
        exported = CliRunner().invoke(
            app,
            ["export", "--tenant-id", TENANT, "--run-id", TAMPERED, "--out", str(baseline)],
            env={"DATABASE_URL": url.libpq()},
        )
    assert exported.exit_code == 0, exported.output
    bundle = json.loads(baseline.read_text(encoding="utf-8"))
    yield Shared(url, checkpoints, key, bundle, legacy)
    pg_server.drop_database(name)


@contextmanager
def _hostile(url: DatabaseUrl, scope: str, name: str, value: str) -> Iterator[None]:
    _set_default(url, scope, name, value)  # and checks a plain session now sees it
    try:
        yield
    finally:
        _reset_default(url, scope, name)


def _sweep_failures(url: DatabaseUrl) -> dict[str, str]:
    report = run_sweep(url, SweepOptions(full=True, workers=1))
    return {f.run_id: f.first_bad for f in report.failed}


# --- one check per command, each on the shared store under the default ------------------


def _verify(s: Shared, hostile: Any) -> None:
    with hostile(s.url):
        tampered = _cli(s.url, "verify", "--tenant-id", TENANT, "--run-id", TAMPERED, **_keys(s))
        clean = _cli(s.url, "verify", "--tenant-id", TENANT, "--run-id", CLEAN, **_keys(s))
    assert tampered.code == 1, tampered.stderr
    assert "verification_status: FAILED" in tampered.stdout
    [reason] = [x for x in tampered.stdout.splitlines() if x.startswith("failure_reason:")]
    assert "step 1" in reason, reason
    assert clean.code == 0, clean.stderr
    assert "verification_status: VERIFIED" in clean.stdout


def _sweep(s: Shared, hostile: Any) -> None:
    with hostile(s.url):
        ran = _cli(s.url, "sweep", "--full", "--tenant-id", TENANT, "--json", **_keys(s))
    assert ran.code == 1, ran.stderr
    report = json.loads(ran.stdout)
    failed = {f["run_id"]: f["first_bad"] for f in report["failed_runs"]}
    assert failed == {TAMPERED: "step 1"}, report
    assert report["runs"] >= 2


def _export(s: Shared, hostile: Any, tmp_path: Path) -> None:
    out = tmp_path / "bundle.json"
    with hostile(s.url):
        ran = _cli(
            s.url,
            "export",
            "--tenant-id",
            TENANT,
            "--run-id",
            TAMPERED,
            "--out",
            str(out),
            **_keys(s),
        )
    assert ran.code == 0, ran.stderr
    bundle = json.loads(out.read_text(encoding="utf-8"))
    # Exactly what is stored, rendered as without the default (timestamps, 5.49, text).
    assert {**bundle, "exported_at": None} == {**s.bundle, "exported_at": None}
    assert bundle["steps"][1]["cost_cents"] == 5.49


def _checkpoint_create(s: Shared, hostile: Any) -> None:
    with hostile(s.url):
        ran = _cli(s.url, "checkpoint", "create", **_keys(s))
    assert ran.code == 0, ran.stderr
    with _ledger_env(s.checkpoints, s.key):
        report = audit(s.url)  # with no default: the new checkpoint signs the true head
    assert report.ok, report.problems
    assert f"root_hash: {report.root.hex()}" in ran.stdout
    assert report.checkpoint_size == report.size


def _checkpoint_verify(s: Shared, hostile: Any) -> None:
    with hostile(s.url):
        ran = _cli(s.url, "checkpoint", "verify", **_keys(s))
    assert ran.code == 0, ran.stderr
    assert "ledger consistent with the signed checkpoint" in ran.stdout
    assert "INCONSISTENT" not in ran.stdout
    with _ledger_env(s.checkpoints, s.key):
        report = audit(s.url)  # the same ledger, read with no default
    assert f"ledger_size: {report.size}" in ran.stdout.splitlines()
    assert f"ledger_root: {report.root.hex()}" in ran.stdout.splitlines()


def _adopt(s: Shared, hostile: Any, case: tuple[str, str]) -> None:
    run_id = s.legacy[case]
    kind = "SELECT chain_format, adopted_at FROM aos_traces WHERE run_id = %s"
    assert one(s.url, "SELECT count(*) FROM aos_traces WHERE run_id = %s", (run_id,)) == 1
    assert _row(s.url, kind, (run_id,)) == (None, None)  # legacy: not yet adopted
    with hostile(s.url):
        ran = _cli(s.url, "adopt", "--run-id", run_id, **_keys(s))
    assert ran.code == 0, ran.stderr
    assert "1 adopted, 0 skipped" in ran.stdout
    chain_format, adopted_at = _row(s.url, kind, (run_id,))
    assert chain_format == 2 and adopted_at is not None  # adoption is in format v2
    # The hashes adoption computed under the default verify without it.
    with _ledger_env(s.checkpoints, s.key):
        result = prove(s.url, "acme", run_id, coordinator=get_run_proof_coordinator(workers=1))
    assert result.integrity.verification_status == "VERIFIED", result.integrity.failure_reason
    assert result.integrity.chain_length == 2


def _row(url: DatabaseUrl, statement: str, params: tuple[Any, ...]) -> tuple[Any, ...]:
    with psycopg.connect(url.libpq()) as conn:
        row = conn.execute(statement, params).fetchone()
    assert row is not None, params
    return tuple(row)


def _retire(s: Shared, hostile: Any) -> None:
    run_id = f"run-retire-{uuid.uuid4().hex[:8]}"
    record_run(s.url, TENANT, run_id, steps=2, chain_format=1)
    root = one(s.url, "SELECT root_hash FROM aos_traces WHERE run_id = %s", (run_id,))
    with hostile(s.url):
        ran = _cli(s.url, *retire_words(TENANT, run_id), **_keys(s))
    assert ran.code == 0, ran.stderr
    assert f"retired: tenant {TENANT!r}, run {run_id!r}" in ran.stdout and root in ran.stdout
    with _ledger_env(s.checkpoints, s.key):
        report = audit(s.url)  # the tombstone's signature verifies, with no default
    assert report.ok, report.problems
    kinds = one(
        s.url,
        "SELECT array_agg(kind::text ORDER BY seq) FROM run_proof_ledger WHERE run_id = %s",
        (run_id,),
    )
    assert kinds == ["seal", "tombstone"]


def _keys(s: Shared) -> dict[str, Path]:
    return {"checkpoints": s.checkpoints, "key": s.key}


# --- db upgrade and demo: a database of their own --------------------------------------------


def _db_upgrade(pg_server: LocalPostgres, tmp_path: Path, hostile: Any) -> None:
    name = f"hostile_up_{uuid.uuid4().hex[:12]}"
    url = DatabaseUrl.parse(pg_server.create_database(name, exist_ok=False))
    try:
        create_aos_store(url)
        before = all_aos_contents(url)
        with hostile(url):
            ran = _cli(url, "db", "upgrade", checkpoints=tmp_path / "cps", key=tmp_path / "k")
        assert ran.code == 0, ran.stderr
        assert "trace store at revision" in ran.stdout
        assert all_aos_contents(url) == before  # AOS's own columns, as AOS reads them
        # Migrated under the default, the store works without it: a new run verifies.
        record_run(url, TENANT, CLEAN, steps=2, chain_format=1)
        assert prove(url, TENANT, CLEAN).integrity.verification_status == "VERIFIED"
    finally:
        pg_server.drop_database(name)


def _demo(pg_server: LocalPostgres, tmp_path: Path, hostile: Any) -> None:
    name = f"hostile_demo_{uuid.uuid4().hex[:12]}"
    url = DatabaseUrl.parse(pg_server.create_database(name, exist_ok=False))
    try:
        with hostile(url):
            ran = _cli(url, "demo", "--runs", "4", checkpoints=tmp_path / "cps", key=tmp_path / "k")
        assert ran.code == 0, ran.stderr
        assert "seeded 4 traces" in ran.stdout
        # What the recorder wrote under the default verifies without it.
        report = run_sweep(url, SweepOptions(full=True, workers=1))
        assert report.failures == 0 and report.runs == 3  # one of the four is still running
    finally:
        pg_server.drop_database(name)


_MATRIX = [
    pytest.param(
        scope,
        name,
        value,
        command,
        id=f"{command}-{name}-{scope}",
        marks=() if (scope, name, command) in FAST else pytest.mark.slow,
    )
    for command in COMMANDS
    for scope in SCOPES
    for name, value in HOSTILE
]


@pytest.mark.parametrize(("scope", "name", "value", "command"), _MATRIX)
def test_a_hostile_database_default_changes_no_commands_result(
    shared: Shared,
    pg_server: LocalPostgres,
    tmp_path: Path,
    scope: str,
    name: str,
    value: str,
    command: str,
) -> None:
    @contextmanager
    def hostile(url: DatabaseUrl) -> Iterator[None]:
        with _hostile(url, scope, name, value):
            yield

    if command == "db-upgrade":
        _db_upgrade(pg_server, tmp_path, hostile)
    elif command == "demo":
        _demo(pg_server, tmp_path, hostile)
    elif command == "export":
        _export(shared, hostile, tmp_path)
    elif command == "adopt":
        _adopt(shared, hostile, (scope, name))
    else:
        checks = {
            "verify": _verify,
            "sweep": _sweep,
            "checkpoint-create": _checkpoint_create,
            "checkpoint-verify": _checkpoint_verify,
            "retire": _retire,
        }
        checks[command](shared, hostile)
    # Whatever the case did, the store's verdicts without any default are unchanged.
    if command not in ("db-upgrade", "demo"):
        assert _sweep_failures(shared.url) == {TAMPERED: "step 1"}
