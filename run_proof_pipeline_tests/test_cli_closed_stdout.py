"""Issue 12: a closed standard output or a broken pipe is never "database unreachable".

Real `run-proof` processes whose stdout is a pipe nobody reads (its read end closed before
the start: every write is EPIPE, as `run-proof retire ... | true`), closed (`>&-`), or
/dev/full. The command completes: `retire` commits its tombstone, `verify` keeps its
verdict's exit code, and one line on stderr says the output was lost (and, for retire, that
the tombstone is committed). Run with and without PYTHONUNBUFFERED: unbuffered, the first
print fails mid-command; buffered, Python's own flush at exit would (Python's `signal`
docs, "Note on SIGPIPE"). Why it holds: run_proof_pipeline/cli/errors.py.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.ledger.keys import generate_signing_key, write_signing_key
from run_proof_pipeline.ledger.settings import default_origin
from run_proof_pipeline.plan.coordinator_checks.fixtures import migrated_copy
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.migrate import head_revision
from run_proof_pipeline_tests.support.cli_process import CLI, retire_words
from run_proof_pipeline_tests.support.stores import record_run
from run_proof_pipeline_tests.test_ledger_support import one, tamper

TENANT = "tenant-s"
CLEAN, TAMPERED = "run-clean", "run-tampered"
_CLEARED = (
    "USE_POSTGRES_TRACES",
    "PYTHONUNBUFFERED",
    "RUN_PROOF_CHECKPOINT_DIR",
    "RUN_PROOF_PUBLIC_KEY",
    "RUN_PROOF_PUBLIC_KEY_FILE",
    "RUN_PROOF_CHECKPOINT_ORIGIN",
)


@dataclass(frozen=True)
class Store:
    url: DatabaseUrl
    key: Path  # RUN_PROOF_SIGNING_KEY, named by the store's origin


@pytest.fixture(scope="module")
def closed_store(
    pg_server: LocalPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    name = f"closed_{uuid.uuid4().hex[:12]}"
    url = migrated_copy(pg_server, name)
    record_run(url, TENANT, CLEAN, steps=3)
    record_run(url, TENANT, TAMPERED, steps=3)
    touched = tamper(
        url,
        (
            "UPDATE aos_trace_steps SET skill_name = 'evil' WHERE trace_id = %s AND step_index = 1",
            (f"trace-{TAMPERED}",),
        ),
    )
    assert touched == [1]
    key = tmp_path_factory.mktemp("closed-keys") / "ledger.key"
    write_signing_key(key, generate_signing_key(default_origin(name)))
    yield Store(url, key)
    pg_server.drop_database(name)


@dataclass(frozen=True)
class Ran:
    code: int
    stderr: str


def _run(store: Store, *args: str, stdout: str, unbuffered: bool = True) -> Ran:
    """`run-proof ARGS` with stdout as `stdout` says: "broken-pipe", "closed", "both-closed"
    (stderr too) or "dev-full"."""
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.update(DATABASE_URL=store.url.libpq(), RUN_PROOF_SIGNING_KEY=str(store.key))
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    closed = {"closed": (1,), "both-closed": (1, 2)}.get(stdout, ())
    target: Any = None
    read_end = None
    if stdout == "broken-pipe":
        read_end, target = os.pipe()
        os.close(read_end)  # nobody will ever read: each write gets EPIPE
    elif stdout == "dev-full":
        target = os.open("/dev/full", os.O_WRONLY)

    def close_fds() -> None:
        for fd in closed:
            os.close(fd)

    try:
        process = subprocess.Popen(
            [CLI, *args],
            env=env,
            stdout=target,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=close_fds if closed else None,  # the child's own fds
        )
    finally:
        if isinstance(target, int):
            os.close(target)
    _, stderr = process.communicate(timeout=180)
    return Ran(process.returncode, stderr or "")


def _retire(store: Store, run_id: str, *, stdout: str, unbuffered: bool = True) -> Ran:
    record_run(store.url, TENANT, run_id, steps=2)
    return _run(store, *retire_words(TENANT, run_id), stdout=stdout, unbuffered=unbuffered)


def _tombstone_seq(store: Store, run_id: str) -> int | None:
    return one(
        store.url,
        "SELECT seq FROM run_proof_ledger WHERE kind = 'tombstone' AND run_id = %s",
        (run_id,),
    )


def _no_noise(ran: Ran) -> None:
    for noise in ("Traceback", "Exception ignored", "database unreachable", "BrokenPipeError"):
        assert noise not in ran.stderr, ran.stderr


def _slow(*values: object, id: str) -> Any:  # `id`: pytest.param's own name
    return pytest.param(*values, id=id, marks=pytest.mark.slow)


@pytest.mark.parametrize(
    ("stdout", "unbuffered", "why"),
    [
        pytest.param(
            "broken-pipe",
            True,
            "standard output is a broken pipe (its reader exited)",
            id="broken-pipe-unbuffered",
        ),
        pytest.param(
            "broken-pipe",
            False,
            "standard output is a broken pipe (its reader exited)",
            id="broken-pipe-buffered",
        ),
        _slow("closed", True, "standard output is closed", id="closed"),
        _slow("dev-full", False, "standard output: No space left on device", id="dev-full"),
    ],
)
def test_retire_commits_and_says_so_when_its_output_is_lost(
    closed_store: Store, stdout: str, unbuffered: bool, why: str
) -> None:
    run_id = f"run-retire-{uuid.uuid4().hex[:8]}"

    ran = _retire(closed_store, run_id, stdout=stdout, unbuffered=unbuffered)

    seq = _tombstone_seq(closed_store, run_id)
    assert seq is not None  # the tombstone IS committed
    assert ran.code == 0, ran.stderr
    assert ran.stderr.splitlines() == [
        f"run-proof: the tombstone of tenant {TENANT!r}, run {run_id!r} is committed as "
        f"ledger entry {seq}; only the output was lost: {why}"
    ]
    _no_noise(ran)


@pytest.mark.slow
def test_retire_with_stdout_and_stderr_closed_commits_and_exits_quietly(
    closed_store: Store,
) -> None:
    run_id = f"run-quiet-{uuid.uuid4().hex[:8]}"

    ran = _retire(closed_store, run_id, stdout="both-closed")

    assert _tombstone_seq(closed_store, run_id) is not None
    assert ran.code == 0
    assert ran.stderr == ""  # the pipe given as stderr was closed in the child: nothing read


@pytest.mark.parametrize(
    ("run_id", "stdout", "code", "why"),
    [
        pytest.param(TAMPERED, "closed", 1, "standard output is closed", id="tampered-closed"),
        _slow(CLEAN, "closed", 0, "standard output is closed", id="clean-closed"),
        _slow(
            TAMPERED,
            "broken-pipe",
            1,
            "standard output is a broken pipe (its reader exited)",
            id="tampered-broken-pipe",
        ),
        _slow(CLEAN, "dev-full", 0, "standard output: No space left on device", id="dev-full"),
    ],
)
def test_verify_with_its_output_lost_keeps_the_verdicts_exit_code(
    closed_store: Store, run_id: str, stdout: str, code: int, why: str
) -> None:
    ran = _run(closed_store, "verify", "--tenant-id", TENANT, "--run-id", run_id, stdout=stdout)

    assert ran.code == code, ran.stderr
    assert ran.stderr.splitlines() == [
        f"run-proof: the command finished with exit code {code}; only its output was lost: {why}"
    ]
    _no_noise(ran)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stdout", "line"),
    [
        ("closed", "run-proof: the bundle cannot be written: standard output is closed"),
        ("broken-pipe", "run-proof: the bundle was not written whole: standard output is a"),
    ],
    ids=["closed", "broken-pipe"],
)
def test_export_to_a_lost_stdout_is_a_failure_to_export(
    closed_store: Store, stdout: str, line: str
) -> None:
    # The bundle is export's output: losing it is exit 2, not an output merely lost.
    ran = _run(closed_store, "export", "--tenant-id", TENANT, "--run-id", CLEAN, stdout=stdout)

    assert ran.code == 2, ran.stderr
    last = ran.stderr.splitlines()[-1]
    assert last.startswith(line) and last.endswith("; write it to a file with --out FILE")
    # Before it, at most the banner, which export prints on stderr (stdout is the bundle's).
    assert all(x.startswith("Using ") for x in ran.stderr.splitlines()[:-1])
    _no_noise(ran)


def test_db_upgrade_with_its_output_lost_says_the_store_is_migrated(closed_store: Store) -> None:
    ran = _run(closed_store, "db", "upgrade", stdout="broken-pipe")

    assert ran.code == 0, ran.stderr
    assert ran.stderr.splitlines() == [
        f"run-proof: the trace store is migrated to revision {head_revision()}; only the output "
        "was lost: standard output is a broken pipe (its reader exited)"
    ]
    _no_noise(ran)
