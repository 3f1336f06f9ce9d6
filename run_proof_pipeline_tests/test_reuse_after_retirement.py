"""Issue 12: a run retired with a signed tombstone is never recorded again under its ids.

Before migration 0004 the same tenant and run id could be recorded again once the retired
trace was deleted, and every check of the run was then FAILED for good ("sealed more than
once"). Now the database refuses the reuse (SQLSTATE 23505, constraint `run_proof_run_id_used`
or `run_proof_trace_id_used`) whichever client writes, nothing is written, and a reuse the
table owner forces past the guard is FAILED naming the tombstone (docs/ledger-v1.md, "Ids are
recorded once").
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from typer.testing import CliRunner

from run_proof_pipeline.adoption.kinds import count_trace_kinds
from run_proof_pipeline.cli.main import app
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.integrity import genesis_hash, header_record
from run_proof_pipeline.ledger.entry import LedgerEntry
from run_proof_pipeline.ledger.queries import entries_for_run
from run_proof_pipeline.ledger.retirement import (
    Retirement,
    RetirementError,
    audit_reuses,
    retire_run,
    reuse_after_retirement,
)
from run_proof_pipeline.ledger.settings import load_ledger_settings
from run_proof_pipeline.plan.coordinator_checks.fixtures import migrated_copy
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import async_engine
from run_proof_pipeline.store.migrate import current_revision, head_revision, upgrade
from run_proof_pipeline.store.recorder import RecorderError, RunRetired, TraceRecorder
from run_proof_pipeline_tests.support.aos_fixtures import on, sql
from run_proof_pipeline_tests.support.ledger_fixtures import CheckpointEnv
from run_proof_pipeline_tests.support.stores import BASE, make_step, prove, record_run, run
from run_proof_pipeline_tests.support.v1_writer import V1TraceWriter
from run_proof_pipeline_tests.test_ledger_support import (
    RunShape,
    audit,
    make_checkpoint,
    tamper,
)

TENANT = "tenant-acme"
RUN_ID_USED = "run_proof_run_id_used"
TRACE_ID_USED = "run_proof_trace_id_used"
GENESIS = "ab" * 32  # any value: a row with a genesis hash is format v1


def _cli(url: DatabaseUrl, *args: str) -> Any:
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("DATABASE_URL", url.libpq())
        monkeypatch.delenv("USE_POSTGRES_TRACES", raising=False)
        return CliRunner().invoke(app, list(args))


def _retire(url: DatabaseUrl, run_id: str) -> Retirement:
    key = load_ledger_settings().signing_key()

    async def go() -> Retirement:
        engine = async_engine(url)
        try:
            return await retire_run(engine, TENANT, run_id, "GDPR erasure request #17", key)
        finally:
            await engine.dispose()

    return run(go())


def _retired_and_deleted(url: DatabaseUrl, run_id: str) -> int:
    """Record and seal a run, retire it with a signed tombstone, delete its rows (as any
    client may, once retired); the tombstone's ledger entry."""
    record_run(url, TENANT, run_id, steps=2, chain_format=1)
    retirement = _retire(url, run_id)
    assert sql(url, "DELETE FROM aos_traces WHERE run_id = %s RETURNING 1", (run_id,)) == [(1,)]
    return retirement.ledger_seq


@dataclass(frozen=True)
class StoreState:
    ledger: list[tuple[Any, ...]]
    traces: list[tuple[Any, ...]]
    steps: int
    run_ids: list[tuple[Any, ...]]
    retirements: int


def _state(url: DatabaseUrl) -> StoreState:
    return StoreState(
        ledger=sql(url, "SELECT seq, kind, run_id, trace_id, leaf_hash FROM run_proof_ledger"),
        traces=sql(url, "SELECT trace_id, run_id, genesis_hash FROM aos_traces ORDER BY 1"),
        steps=sql(url, "SELECT count(*) FROM aos_trace_steps")[0][0],
        run_ids=sql(url, "SELECT tenant_id, run_id, trace_id FROM run_proof_run_ids ORDER BY 3"),
        retirements=sql(url, "SELECT count(*) FROM run_proof_retirements")[0][0],
    )


def _insert_trace(
    conn: psycopg.Connection[Any],
    *,
    run_id: str,
    trace_id: str,
    genesis: str | None = GENESIS,
    on_conflict: str = "",
) -> None:
    """A finished, unsealed trace row as another client writes it; without a genesis hash, a
    legacy one as AOS writes it (with AOS's own root hash)."""
    aos_root = "cd" * 32 if genesis is None else None
    conn.execute(
        "INSERT INTO aos_traces (trace_id, run_id, tenant_id, status, started_at, completed_at,"
        " genesis_hash, root_hash) VALUES (%s, %s, %s, 'completed', %s, %s, %s, %s)" + on_conflict,
        (trace_id, run_id, TENANT, BASE, BASE + timedelta(hours=1), genesis, aos_root),
    )


def _refused(
    url: DatabaseUrl, act: Callable[[psycopg.Connection], object]
) -> psycopg.errors.UniqueViolation:
    """The unique violation that `act`, run on a new connection of the table owner, raises
    (the test fails if it raises none)."""
    with (
        psycopg.connect(url.libpq()) as conn,
        pytest.raises(psycopg.errors.UniqueViolation) as refused,
    ):
        act(conn)
    return refused.value


def _refused_insert(url: DatabaseUrl, **fields: Any) -> psycopg.errors.UniqueViolation:
    return _refused(url, lambda conn: _insert_trace(conn, **fields))


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0]


def _run_message(run_id: str, tombstone: int) -> str:
    return (
        f"run '{run_id}' of tenant '{TENANT}' was recorded before (trace 'trace-{run_id}') and "
        f"retired (tombstone: ledger entry {tombstone}): a run id is recorded once, even after "
        "its run is retired or removed; record this run under a new run id"
    )


def _trace_message(trace_id: str, tombstone: int) -> str:
    return (
        f"trace id '{trace_id}' was used before by a format-v1 trace that was retired "
        f"(tombstone: ledger entry {tombstone}): a trace id is used once, even after its trace "
        "is retired or removed; give this trace a new trace id"
    )


# --- one database for the refusals (each test its own run ids; none changes the ledger) ----


@pytest.fixture(scope="module")
def retiring(pg_server: LocalPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Checkpoint directory and signing key for the module's shared store."""
    base = tmp_path_factory.mktemp("reuse")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("RUN_PROOF_CHECKPOINT_DIR", str(base / "checkpoints"))
        monkeypatch.setenv("RUN_PROOF_SIGNING_KEY", str(base / "keys" / "ledger.key"))
        for name in ("RUN_PROOF_PUBLIC_KEY", "RUN_PROOF_PUBLIC_KEY_FILE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv("RUN_PROOF_CHECKPOINT_ORIGIN", raising=False)
        yield base


@pytest.fixture(scope="module")
def shared(pg_server: LocalPostgres, retiring: Path) -> DatabaseUrl:
    url = migrated_copy(pg_server, "reuse_shared")
    record_run(url, TENANT, "run-neighbour", steps=1, chain_format=1)
    make_checkpoint(url)  # creates the signing key, outside the database
    return url


def test_the_recorder_refuses_a_retired_run_id_and_writes_nothing(shared: DatabaseUrl) -> None:
    tombstone = _retired_and_deleted(shared, "run-erased")
    before = _state(shared)
    kinds_before = on(shared, count_trace_kinds)

    with pytest.raises(RunRetired) as refused:
        record_run(shared, TENANT, "run-erased", steps=2)

    assert isinstance(refused.value, RecorderError)
    assert str(refused.value) == _run_message("run-erased", tombstone)
    cause = refused.value.__cause__.orig  # type: ignore[union-attr]
    assert isinstance(cause, psycopg.errors.UniqueViolation)
    assert (cause.diag.sqlstate, cause.diag.constraint_name) == ("23505", RUN_ID_USED)
    assert _first_line(cause) == _run_message("run-erased", tombstone)
    # Nothing written: no trace row, no step, no ledger entry, no id claimed.
    assert _state(shared) == before
    # The retired run reads as it did: gone on purpose, and the audit is clean.
    assert prove(shared, TENANT, "run-erased").integrity.failure_reason == "No trace found for run"
    assert on(shared, count_trace_kinds) == kinds_before
    assert kinds_before.retired >= 1 and kinds_before.retired_still_present == 0
    assert audit(shared).problems == []
    # Another run id records as ever.
    record_run(shared, TENANT, "run-erased-2", steps=2)
    assert prove(shared, TENANT, "run-erased-2").integrity.verification_status == "VERIFIED"
    verified = _cli(shared, "checkpoint", "verify")
    assert verified.exit_code == 0, verified.output


@pytest.mark.parametrize(
    ("case", "fields", "constraint"),
    [
        ("same ids", {"trace_id": "trace-run-sql"}, RUN_ID_USED),
        ("same run id, new trace id", {"trace_id": "trace-new"}, RUN_ID_USED),
        (
            "AOS-style INSERT ... ON CONFLICT (trace_id) DO NOTHING",
            {"trace_id": "trace-run-sql", "on_conflict": " ON CONFLICT (trace_id) DO NOTHING"},
            RUN_ID_USED,
        ),
        (
            "new run id, retired trace id",
            {"run_id": "run-other", "trace_id": "trace-run-sql"},
            TRACE_ID_USED,
        ),
        (
            "legacy row (AOS's writer) with the retired trace id",
            {"run_id": "run-other", "trace_id": "trace-run-sql", "genesis": None},
            TRACE_ID_USED,
        ),
    ],
)
def test_any_sql_writer_is_refused_and_nothing_is_written(
    shared: DatabaseUrl, case: str, fields: dict[str, Any], constraint: str
) -> None:
    # One retired run for every case (whichever runs first retires it).
    retired = sql(shared, "SELECT ledger_seq FROM run_proof_retirements WHERE run_id = 'run-sql'")
    tombstone = retired[0][0] if retired else _retired_and_deleted(shared, "run-sql")
    before = _state(shared)

    refused = _refused_insert(shared, **{"run_id": "run-sql", **fields})

    assert (refused.diag.sqlstate, refused.diag.constraint_name) == ("23505", constraint), case
    expected = (
        _run_message("run-sql", tombstone)
        if constraint == RUN_ID_USED
        else _trace_message("trace-run-sql", tombstone)
    )
    assert _first_line(refused) == expected
    assert _state(shared) == before


def test_retention_undone_from_the_archive_is_refused(shared: DatabaseUrl) -> None:
    sql(shared, "CREATE TABLE IF NOT EXISTS aos_traces_archive (LIKE aos_traces)")
    record_run(shared, TENANT, "run-archived", steps=2)
    tombstone = _retire(shared, "run-archived").ledger_seq
    # AOS's retention: copy the row to the archive, delete it (its steps cascade).
    sql(
        shared,
        "INSERT INTO aos_traces_archive SELECT * FROM aos_traces WHERE run_id = %s",
        ("run-archived",),
    )
    sql(shared, "DELETE FROM aos_traces WHERE run_id = %s", ("run-archived",))
    before = _state(shared)

    # The archived row is sealed: restored, it would append a second seal of the run.
    refused = _refused(
        shared,
        lambda conn: conn.execute(
            "INSERT INTO aos_traces SELECT * FROM aos_traces_archive WHERE run_id = %s",
            ("run-archived",),
        ),
    )

    assert refused.diag.constraint_name == RUN_ID_USED
    assert _first_line(refused) == _run_message("run-archived", tombstone)
    assert _state(shared) == before


def _legacy_beside_a_retired_run(
    new_database: Any, run_id: str, legacy_trace_id: str
) -> tuple[DatabaseUrl, int]:
    """A store upgraded to head over revision 0005, where a format-v1 run was recorded,
    retired and deleted, and then AOS's writer, unchanged, inserted a legacy trace of the same
    run id under another trace id (AOS allowed traces to share a run id; since 0006 the same
    INSERT is chained in format v2 and refused); the store and the tombstone's ledger entry."""
    url = DatabaseUrl.parse(new_database("reuse_legacy"))
    upgrade(url, "0005")
    record_run(url, TENANT, run_id, steps=2, chain_format=1)
    # The signed tombstone as retire wrote it then (retire and checkpoint need the head now).
    settings = load_ledger_settings()
    key, _ = settings.ensure_signing_key(settings.origin(str(url.url.database)))
    with psycopg.connect(url.libpq()) as conn:
        tombstone = _retirement_row(conn, run_id, key)
    assert sql(url, "DELETE FROM aos_traces WHERE run_id = %s RETURNING 1", (run_id,)) == [(1,)]
    with psycopg.connect(url.libpq()) as conn:
        _insert_trace(conn, run_id=run_id, trace_id=legacy_trace_id, genesis=None)
    upgrade(url)
    assert sql(
        url, "SELECT genesis_hash, chain_format FROM aos_traces WHERE run_id = %s", (run_id,)
    ) == [(None, None)]
    make_checkpoint(url)
    return url, tombstone


def test_aos_inserting_a_retired_run_id_is_refused_since_0006(shared: DatabaseUrl) -> None:
    """AOS's writer, unchanged (no genesis hash): before 0006 its row was a legacy trace that
    could share a retired run id; now it is chained in format v2 and the reuse is refused."""
    tombstone = _retired_and_deleted(shared, "run-aos-writer")
    before = _state(shared)

    refused = _refused_insert(shared, run_id="run-aos-writer", trace_id="tr-aos-0", genesis=None)

    assert (refused.diag.sqlstate, refused.diag.constraint_name) == ("23505", RUN_ID_USED)
    assert _first_line(refused) == _run_message("run-aos-writer", tombstone)
    assert _state(shared) == before


def test_a_legacy_trace_may_share_a_retired_run_id_but_is_never_adopted_as_it(
    new_database: Any, checkpoint_env: CheckpointEnv
) -> None:
    # The legacy trace of the same run id is AOS's own, unproven row (written before 0006).
    url, tombstone = _legacy_beside_a_retired_run(new_database, "run-shared-id", "tr-aos-1")
    assert prove(url, TENANT, "run-shared-id").integrity.verification_status == "UNSUPPORTED"
    before = _state(url)

    adopted = _cli(url, "adopt", "--tenant-id", TENANT, "--run-id", "run-shared-id")

    # Skipped, naming the earlier run and its tombstone (the database would refuse it too).
    assert adopted.exit_code == 0, adopted.output
    assert (
        f"skipped tenant '{TENANT}', run 'run-shared-id' (trace 'tr-aos-1'): run 'run-shared-id'"
        f" was recorded before (trace 'trace-run-shared-id') (tombstone: ledger "
        f"entry {tombstone}): a run id is recorded once, so this trace cannot be adopted as it"
    ) in adopted.output.splitlines()
    assert _state(url) == before
    assert audit(url).problems == []


def test_a_writers_temporary_table_does_not_stand_in_for_the_record_of_ids(
    shared: DatabaseUrl,
) -> None:
    tombstone = _retired_and_deleted(shared, "run-temp")
    before = _state(shared)

    def insert_behind_temporary_tables(conn: psycopg.Connection) -> None:
        # Unless named, pg_temp is searched first for relations: the guard's functions
        # name it last and qualify their tables.
        conn.execute(
            "CREATE TEMP TABLE run_proof_run_ids (tenant_id text, run_id text, trace_id text,"
            " recorded_at timestamptz DEFAULT now())"
        )
        conn.execute("CREATE TEMP TABLE run_proof_retirements (LIKE public.run_proof_retirements)")
        _insert_trace(conn, run_id="run-temp", trace_id="trace-run-temp")

    refused = _refused(shared, insert_behind_temporary_tables)
    assert _first_line(refused) == _run_message("run-temp", tombstone)
    assert _state(shared) == before


def test_a_clients_temporary_objects_do_not_stand_in_for_the_stores(
    store: DatabaseUrl, checkpoint_env: CheckpointEnv
) -> None:
    # Before 0004 pinned the search path of 0001-0003's functions, each of these worked for
    # any client: pg_temp was searched first (or the caller's search path applied).
    record_run(store, TENANT, "run-sealed", steps=1, chain_format=1)
    make_checkpoint(store)
    record_run(store, TENANT, "run-open", steps=2, seal=False, chain_format=1)
    last_seq = sql(store, "SELECT last_value FROM aos_traces_seal_seq")[0][0]
    root = (
        RunShape.read(store, TENANT, "run-open")
        .chain(sealed_as=("succeeded", BASE + timedelta(hours=1)))
        .root_hash
    )
    with psycopg.connect(store.libpq()) as conn:
        conn.execute("CREATE TEMP SEQUENCE aos_traces_seal_seq START 1000000")
        conn.execute("CREATE TEMP TABLE run_proof_ledger (LIKE public.run_proof_ledger)")
        conn.execute(
            "UPDATE aos_traces SET status = 'succeeded', completed_at = %s, root_hash = %s,"
            " chain_length = 2 WHERE run_id = 'run-open'",
            (BASE + timedelta(hours=1), root),
        )
    # The seal drew from the store's sequence and its entry went to the store's ledger.
    assert sql(store, "SELECT seal_seq FROM aos_traces WHERE run_id = 'run-open'") == [
        (last_seq + 1,)
    ]
    assert prove(store, TENANT, "run-open").integrity.verification_status == "VERIFIED"
    with (
        psycopg.connect(store.libpq()) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="retire it first"),
    ):
        conn.execute("CREATE TEMP TABLE run_proof_retirements (trace_id text)")
        conn.execute("INSERT INTO run_proof_retirements VALUES ('trace-run-sealed')")
        conn.execute("DELETE FROM aos_traces WHERE run_id = 'run-sealed'")
    assert prove(store, TENANT, "run-sealed").integrity.verification_status == "VERIFIED"


def test_a_run_retired_unsealed_and_sealed_afterwards_is_no_reuse(shared: DatabaseUrl) -> None:
    # A writer that seemed dead is retired at its head, then seals: the same trace, first
    # sealed after its tombstone (0003 allows it). Not a reuse; retiring it again says why not.
    record_run(shared, TENANT, "run-late", steps=1, seal=False)
    tombstone = _retire(shared, "run-late").ledger_seq

    async def seal() -> None:
        engine = async_engine(shared)
        try:
            await TraceRecorder(engine).seal(
                TENANT, "run-late", status="succeeded", completed_at=BASE + timedelta(hours=1)
            )
        finally:
            await engine.dispose()

    run(seal())

    assert on(shared, audit_reuses) == []
    with pytest.raises(RetirementError) as refused:
        _retire(shared, "run-late")
    assert str(refused.value) == (
        f"trace 'trace-run-late' was retired before (tombstone: ledger entry {tombstone}), and "
        f"ledger entry {tombstone + 1} records it again after that: it was sealed after its "
        "retirement, and the earlier tombstone does not retire what it holds; see "
        "`run-proof checkpoint verify`"
    )


def _entry(seq: int, kind: str, trace_id: str = "trace-r") -> LedgerEntry:
    return LedgerEntry(
        seq=seq,
        kind=kind,
        tenant_id=TENANT,
        run_id="r",
        trace_id=trace_id,
        chain_length=1,
        root_hash="ab" * 32,
        recorded_at="2026-02-09T10:00:00.000000Z",
    )


@pytest.mark.parametrize(
    ("entries", "reused"),
    [
        ([_entry(1, "seal"), _entry(2, "seal")], False),  # sealed twice, no tombstone
        ([_entry(1, "seal"), _entry(2, "tombstone")], False),  # retired
        ([_entry(1, "tombstone"), _entry(2, "seal")], False),  # retired unsealed, sealed later
        ([_entry(1, "seal"), _entry(2, "tombstone"), _entry(3, "seal")], True),
        ([_entry(1, "seal"), _entry(2, "tombstone"), _entry(3, "adoption", "tr-aos")], True),
        ([_entry(1, "tombstone"), _entry(2, "seal", "trace-other")], True),
    ],
)
def test_reuse_after_retirement_reads_one_runs_entries(
    entries: list[LedgerEntry], reused: bool
) -> None:
    reason = reuse_after_retirement(entries)
    assert (reason is not None) == reused
    if reason is not None:
        assert reason.startswith("the run was recorded again after its retirement (tombstone:")


# --- concurrency: a retirement and a re-insert racing ---------------------------------------


def test_a_stale_repeatable_read_snapshot_is_still_refused(shared: DatabaseUrl) -> None:
    with psycopg.connect(shared.libpq()) as stale:
        stale.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        stale.execute("SELECT count(*) FROM run_proof_run_ids")  # the snapshot is taken here
        # The run's whole life happens after that snapshot: recorded, sealed, retired, deleted.
        _retired_and_deleted(shared, "run-stale")
        before = _state(shared)
        assert stale.execute(
            "SELECT count(*) FROM run_proof_run_ids WHERE run_id = 'run-stale'"
        ).fetchone() == (0,)

        with pytest.raises(psycopg.errors.UniqueViolation) as refused:
            _insert_trace(stale, run_id="run-stale", trace_id="trace-run-stale-2")
        stale.rollback()

    # The claim is not in the writer's snapshot; the unique constraint refuses it anyway.
    assert refused.value.diag.constraint_name == RUN_ID_USED
    assert 'duplicate key value violates unique constraint "run_proof_run_id_used"' in str(
        refused.value
    )
    assert _state(shared) == before


def test_a_re_insert_racing_a_retirement_waits_for_it_then_is_refused(
    shared: DatabaseUrl,
) -> None:
    record_run(shared, TENANT, "run-race", steps=2, chain_format=1)
    key = load_ledger_settings().signing_key()
    outcome: dict[str, BaseException | None] = {}

    def re_insert() -> None:
        try:
            with psycopg.connect(shared.libpq()) as conn:
                conn.execute("SET application_name = 'reuse-racer'")
                _insert_trace(conn, run_id="run-race", trace_id="trace-run-race-2")
            outcome["error"] = None
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    with psycopg.connect(shared.libpq()) as retiring:
        # Retire and delete in one transaction, not yet committed.
        retirement = _retirement_row(retiring, "run-race", key)
        retiring.execute("DELETE FROM aos_traces WHERE run_id = 'run-race'")
        racer = threading.Thread(target=re_insert)
        racer.start()
        _wait_until_blocked(shared, "reuse-racer")
        assert racer.is_alive()
        retiring.commit()
    racer.join(timeout=30)

    error = outcome["error"]
    assert isinstance(error, psycopg.errors.UniqueViolation), error
    assert error.diag.constraint_name == RUN_ID_USED
    assert _first_line(error) == _run_message("run-race", retirement)
    assert sql(shared, "SELECT count(*) FROM aos_traces WHERE run_id = 'run-race'") == [(0,)]


def _retirement_row(conn: psycopg.Connection[Any], run_id: str, key: Any) -> int:
    """The INSERT retire_run makes (signed), inside the caller's open transaction."""
    import base64

    from run_proof_pipeline.ledger.retirement import Tombstone

    root, length = conn.execute(
        "SELECT root_hash, chain_length FROM aos_traces WHERE run_id = %s", (run_id,)
    ).fetchone()  # type: ignore[misc]
    tombstone = Tombstone(
        tenant_id=TENANT,
        run_id=run_id,
        trace_id=f"trace-{run_id}",
        chain_length=length,
        root_hash=root,
        reason="retention",
    )
    verifier = key.verifier()
    row = conn.execute(
        "INSERT INTO run_proof_retirements (tenant_id, run_id, trace_id, chain_length,"
        " root_hash, reason, signer, signature) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " RETURNING ledger_seq",
        (
            *tombstone.model_dump().values(),
            f"{verifier.name}+{verifier.id.hex()}",
            base64.b64encode(key.sign(tombstone.message())).decode(),
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _wait_until_blocked(url: DatabaseUrl, application: str) -> None:
    for _ in range(200):
        waiting = sql(
            url,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
            " AND wait_event_type = 'Lock'",
            (application,),
        )
        if waiting == [(1,)]:
            return
        threading.Event().wait(0.05)
    raise AssertionError(f"{application} never waited for the retirement's lock")


# --- a reuse forced by the table owner: FAILED, saying so -----------------------------------


def _force_second_life(url: DatabaseUrl, run_id: str, *, trace_id: str | None = None) -> None:
    """The owner slips a new trace row past the guard (every trigger off, `tamper`); the
    writer then appends and seals as usual, so the seal trigger appends a second seal. The
    row is the one the format-v1 insert trigger would have made (chain_format 1 since 0006)."""
    trace_id = trace_id or f"trace-{run_id}"
    header = header_record(
        tenant_id=TENANT,
        run_id=run_id,
        trace_id=trace_id,
        agent_id="agent-7",
        plan_id="plan-42",
        plan={"goal": "fetch and summarize"},
        started_at=BASE,
    )
    touched = tamper(
        url,
        (
            "INSERT INTO aos_traces (trace_id, run_id, tenant_id, agent_id, plan_id, plan,"
            " status, started_at, genesis_hash, correlation_id, chain_format)"
            " VALUES (%s, %s, %s, 'agent-7', 'plan-42', %s, 'running', %s, %s, %s, 1)",
            (
                trace_id,
                run_id,
                TENANT,
                Jsonb({"goal": "fetch and summarize"}),
                BASE,
                genesis_hash(header).hex(),
                run_id,
            ),
        ),
    )
    assert touched == [1]

    async def go() -> None:
        engine = async_engine(url)
        try:
            recorder = V1TraceWriter(engine)
            for index in range(2):
                await recorder.append_step(
                    TENANT, run_id, make_step(index, at=BASE + timedelta(seconds=index))
                )
            await recorder.seal(
                TENANT, run_id, status="succeeded", completed_at=BASE + timedelta(hours=1)
            )
        finally:
            await engine.dispose()

    run(go())


def test_a_reuse_forced_by_the_owner_is_failed_naming_the_tombstone(
    store: DatabaseUrl, checkpoint_env: CheckpointEnv
) -> None:
    tombstone = _retired_and_deleted_with_checkpoint(store, "run-forced")
    make_checkpoint(store)
    assert audit(store).problems == []

    _force_second_life(store, "run-forced")

    kinds = [row[1] for row in sql(store, "SELECT seq, kind FROM run_proof_ledger ORDER BY seq")]
    assert kinds == ["seal", "tombstone", "seal"]
    integrity = prove(store, TENANT, "run-forced").integrity
    assert integrity.verification_status == "FAILED"
    assert integrity.failure is not None and integrity.failure.location == "ledger"
    assert integrity.failure.rule == 5
    # proof/anchors.py names the tombstone and both seals: a reused id, not a rewritten seal.
    assert (integrity.failure_reason or "").startswith(
        f"ledger: the run was recorded again after its retirement (tombstone: ledger entry "
        f"{tombstone}; seals and adoptions: ledger entries 1, 3)"
    )
    reuse = (
        f"ledger entry 3 (tenant '{TENANT}', run 'run-forced'): seal of trace 'trace-run-forced' "
        f"after the run's tombstone (ledger entry {tombstone}): the retired run id was recorded "
        "again, past the reuse guard of migration 0004 (only the table owner can disable it), "
        "so the ledger no longer says which run the id names"
    )
    problems = audit(store).problems
    assert reuse in problems
    assert f"tenant '{TENANT}', run 'run-forced': sealed more than once (ledger entries 1, 3)" in (
        problems
    )
    verified = _cli(store, "checkpoint", "verify")
    assert verified.exit_code == 1
    assert f"INCONSISTENT: {reuse}" in verified.output.splitlines()
    # What proof/anchors.py would say with reuse_after_retirement (see its docstring).
    entries = on(store, lambda conn: entries_for_run(conn, TENANT, "run-forced"))
    assert reuse_after_retirement(entries) == (
        f"the run was recorded again after its retirement (tombstone: ledger entry {tombstone}; "
        "seals and adoptions: ledger entries 1, 3): its id was reused past the reuse guard of "
        "migration 0004 (only the table owner can disable it), so the ledger no longer says "
        "which run the id names"
    )
    # The second life cannot be retired under the first one's tombstone.
    retired = _cli(
        store, "retire", "--tenant-id", TENANT, "--run-id", "run-forced", "--reason", "x"
    )
    assert retired.exit_code == 4
    said = [line for line in retired.output.splitlines() if line.startswith("run-proof:")]
    assert said == [
        f"run-proof: trace 'trace-run-forced' was retired before (tombstone: ledger entry "
        f"{tombstone}), and ledger entry 3 records it again after that: its ids were reused, "
        "which only the table owner can do (past migration 0004), and the earlier tombstone "
        "does not retire what it holds; see `run-proof checkpoint verify`"
    ]
    assert sql(store, "SELECT count(*) FROM run_proof_retirements") == [(1,)]


def test_a_retired_trace_id_forced_onto_another_run_is_failed(
    store: DatabaseUrl, checkpoint_env: CheckpointEnv
) -> None:
    tombstone = _retired_and_deleted_with_checkpoint(store, "run-first")

    _force_second_life(store, "run-second", trace_id="trace-run-first")

    # The new run's own chain and entry hold; the ledger's ids do not.
    assert prove(store, TENANT, "run-second").integrity.verification_status == "VERIFIED"
    assert on(store, audit_reuses) == [
        f"ledger entry 3 (tenant '{TENANT}', run 'run-second'): seal of trace "
        f"'trace-run-first', whose id was retired with another run (tombstone: ledger entry "
        f"{tombstone}): a retired trace id was used again, past the reuse guard of migration "
        "0004 (only the table owner can disable it), so the ledger no longer says which run "
        "the id names"
    ]
    assert audit(store).problems == on(store, audit_reuses)
    with pytest.raises(RetirementError, match="with another run"):
        _retire(store, "run-second")


@contextmanager
def _owner_disables(url: DatabaseUrl, trigger: str) -> Iterator[None]:
    with psycopg.connect(url.libpq(), autocommit=True) as conn:
        conn.execute(f"ALTER TABLE aos_traces DISABLE TRIGGER {trigger}")
        try:
            yield
        finally:
            conn.execute(f"ALTER TABLE aos_traces ENABLE ALWAYS TRIGGER {trigger}")


def test_an_adoption_forced_after_the_tombstone_is_failed(
    new_database: Any, checkpoint_env: CheckpointEnv
) -> None:
    store, tombstone = _legacy_beside_a_retired_run(new_database, "run-adopted", "tr-aos-2")

    # The owner forces it: the record of used ids loses the run (adopt would skip it), and
    # the guard on adoption is off while adopt runs.
    with psycopg.connect(store.libpq()) as conn:
        conn.execute("ALTER TABLE run_proof_run_ids DISABLE TRIGGER ALL")
        removed = conn.execute(
            "DELETE FROM run_proof_run_ids WHERE tenant_id = %s AND run_id = %s",
            (TENANT, "run-adopted"),
        ).rowcount
        conn.execute("ALTER TABLE run_proof_run_ids ENABLE TRIGGER ALL")
    assert removed == 1
    with _owner_disables(store, "aos_traces_ids_once_on_adoption"):
        adopted = _cli(store, "adopt", "--tenant-id", TENANT, "--run-id", "run-adopted")
    assert adopted.exit_code == 0, adopted.output
    assert "1 adopted, 0 skipped, 0 adopted before" in adopted.output.splitlines()

    kinds = [row[0] for row in sql(store, "SELECT kind FROM run_proof_ledger ORDER BY seq")]
    assert kinds == ["seal", "tombstone", "adoption"]
    # Only seals are counted by "sealed more than once": the reuse check names this one.
    assert audit(store).problems == [
        f"ledger entry 3 (tenant '{TENANT}', run 'run-adopted'): adoption of trace 'tr-aos-2' "
        f"after the run's tombstone (ledger entry {tombstone}): the retired run id was recorded "
        "again, past the reuse guard of migration 0004 (only the table owner can disable it), "
        "so the ledger no longer says which run the id names"
    ]
    assert prove(store, TENANT, "run-adopted").integrity.verification_status == "FAILED"


def _retired_and_deleted_with_checkpoint(url: DatabaseUrl, run_id: str) -> int:
    record_run(url, TENANT, run_id, steps=2, chain_format=1)
    make_checkpoint(url)
    tombstone = _retire(url, run_id).ledger_seq
    sql(url, "DELETE FROM aos_traces WHERE run_id = %s", (run_id,))
    return tombstone


# --- the migration ---------------------------------------------------------------------------


def test_the_bug_on_revision_0003_and_the_upgrade_over_it(
    new_database: Any, checkpoint_env: CheckpointEnv
) -> None:
    url = DatabaseUrl.parse(new_database("reuse0003"))
    upgrade(url, "0003")
    record_run(url, TENANT, "run-old", steps=2, chain_format=1)
    # The signed tombstone as retire wrote it then (retire, checkpoint and the proof read the
    # columns of 0006 now, so they run on the head only).
    settings = load_ledger_settings()
    key, _ = settings.ensure_signing_key(settings.origin(str(url.url.database)))
    with psycopg.connect(url.libpq()) as conn:
        tombstone = _retirement_row(conn, "run-old", key)
    sql(url, "DELETE FROM aos_traces WHERE run_id = 'run-old'")

    # Before 0004 the reuse was written: a second seal after the tombstone.
    record_run(url, TENANT, "run-old", steps=2, chain_format=1)
    assert sql(url, "SELECT seq, kind FROM run_proof_ledger ORDER BY seq") == [
        (1, "seal"),
        (tombstone, "tombstone"),
        (3, "seal"),
    ]
    assert tombstone == 2

    upgrade(url)

    assert current_revision(url) == head_revision()
    make_checkpoint(url)
    # ... and it FAILED the run for good, over the upgrade too.
    reason = prove(url, TENANT, "run-old").integrity.failure_reason or ""
    assert reason.startswith(
        "ledger: the run was recorded again after its retirement (tombstone: ledger entry 2; "
        "seals and adoptions: ledger entries 1, 3)"
    )
    # The ids are claimed once, from the ledger; the alarm stays and says what happened.
    assert sql(url, "SELECT tenant_id, run_id, trace_id FROM run_proof_run_ids") == [
        (TENANT, "run-old", "trace-run-old")
    ]
    assert any("the retired run id was recorded again" in p for p in audit(url).problems)
    record_run(url, TENANT, "run-new", steps=1, chain_format=1)
    assert prove(url, TENANT, "run-new").integrity.verification_status == "VERIFIED"


def test_downgrade_to_0003_and_upgrade_again(
    store: DatabaseUrl, checkpoint_env: CheckpointEnv
) -> None:
    tombstone = _retired_and_deleted_with_checkpoint(store, "run-down")
    record_run(store, TENANT, "run-live", steps=1, seal=False)

    from alembic import command

    from run_proof_pipeline.store.migrate import _config

    command.downgrade(_config(store), "0003")
    assert current_revision(store) == "0003"
    assert sql(store, "SELECT to_regclass('run_proof_run_ids') IS NULL") == [(True,)]
    guards = ["aos_traces_ids_once_on_insert", "aos_traces_ids_once_on_adoption"]
    assert sql(store, "SELECT count(*) FROM pg_trigger WHERE tgname = ANY(%s)", (guards,)) == [(0,)]

    upgrade(store)

    # Rebuilt from the ledger (the retired run) and the format-v1 traces (the unsealed one).
    assert sql(store, "SELECT run_id FROM run_proof_run_ids ORDER BY run_id") == [
        ("run-down",),
        ("run-live",),
    ]
    refused = _refused_insert(store, run_id="run-down", trace_id="trace-run-down")
    assert _first_line(refused) == _run_message("run-down", tombstone)


def test_another_tenants_retired_trace_id_is_refused_without_saying_it_was_retired(
    shared: DatabaseUrl,
) -> None:
    """A writer of another tenant learns only that the trace id is taken (which it chose),
    never that or where the other tenant's run was retired (docs/threat-model.md)."""
    _retired_and_deleted(shared, "run-other-tenant")
    before = _state(shared)

    refused = _refused(
        shared,
        lambda conn: conn.execute(
            "INSERT INTO aos_traces (trace_id, run_id, tenant_id, status, started_at,"
            " genesis_hash) VALUES ('trace-run-other-tenant', 'run-b', 'tenant-b', 'running', %s,"
            " %s)",
            (BASE, GENESIS),
        ),
    )

    assert refused.diag.constraint_name == "run_proof_trace_id_used"
    assert _first_line(refused) == (
        "trace id 'trace-run-other-tenant' was used before by a format-v1 trace: a trace id is "
        "used once, even after its trace is retired or removed; give this trace a new trace id"
    )
    assert _state(shared) == before
