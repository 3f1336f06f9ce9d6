"""AOS's archival of a format-v1 run (issue 13, item 5; migration 0005): `archived_at` from NULL
to a timestamp on the trace and its steps, every other column as it was, passes the guards and
leaves the proof as it was; un-archiving, archiving again, and archiving with another change
are refused.

Two stores, one per module fixture:
- `native`: the project's own schema at 0004, with the `archived_at` columns AOS's revision 080
  adds (the project's schema has none, docs/existing-aos-database.md), a run recorded and sealed
  there; `db upgrade --check` is read, then the store goes to head. Sealed runs are archived
  here: on AOS as deployed run-proof cannot seal yet (AOS's trace trigger refuses the seal).
- `deployed`: AOS as deployed (aos_deployed.create_aos_deployed_store, AOS's own triggers),
  upgraded by `run-proof db upgrade`; the recorder's run stays unsealed there (checked), and is
  archived by AOS's own statements (aos_deployed.archive_trace).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import async_engine
from run_proof_pipeline.store.migrate import current_revision, head_revision, upgrade
from run_proof_pipeline_tests.support.aos_deployed import archive_trace, create_aos_deployed_store
from run_proof_pipeline_tests.support.stores import BASE, record_run, run
from run_proof_pipeline_tests.support.v1_writer import V1TraceWriter
from run_proof_pipeline_tests.test_ledger_support import audit, make_checkpoint

TENANT = "tenant-arch"
ADD_ARCHIVED_AT = (
    "ALTER TABLE aos_traces ADD COLUMN archived_at timestamptz;"
    " ALTER TABLE aos_trace_steps ADD COLUMN archived_at timestamptz"
)
GUARDS = ("run_proof_guard_step_change", "run_proof_guard_trace_change")


def cli(url: DatabaseUrl, *args: str, env: dict[str, str] | None = None) -> Any:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATABASE_URL", url.libpq())
        patch.delenv("USE_POSTGRES_TRACES", raising=False)
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        return CliRunner().invoke(app_(), list(args))


def app_() -> Any:
    from run_proof_pipeline.cli.main import app

    return app


def sql(url: DatabaseUrl, statement: str, params: tuple[Any, ...] = ()) -> int:
    with psycopg.connect(url.libpq(), autocommit=True) as conn:
        return conn.execute(statement, params).rowcount


def rows(url: DatabaseUrl, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url.libpq()) as conn:
        return conn.execute(statement, params).fetchall()


def refusal(url: DatabaseUrl, statement: str, params: tuple[Any, ...] = ()) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as caught:
        sql(url, statement, params)
    return caught.value


def dump(url: DatabaseUrl, trace_id: str) -> list[Any]:
    """The trace row and its step rows, every column, as the database holds them."""
    return [
        r[0]
        for r in rows(
            url,
            "SELECT to_jsonb(t)::text FROM aos_traces t WHERE trace_id = %s UNION ALL"
            " SELECT s FROM (SELECT to_jsonb(s)::text AS s FROM aos_trace_steps s"
            " WHERE trace_id = %s ORDER BY step_index) ordered",
            (trace_id, trace_id),
        )
    ]


def guard_definitions(url: DatabaseUrl) -> list[tuple[Any, ...]]:
    return rows(
        url,
        "SELECT p.proname, p.prosrc, p.proconfig, p.prosecdef, pg_get_functiondef(p.oid)"
        " FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace"
        " AND p.proname = ANY(%s) ORDER BY p.proname",
        (list(GUARDS),),
    )


@dataclass(frozen=True)
class Native:
    url: DatabaseUrl
    check_output: str
    check_exit: int
    revision_after_check: str | None
    refused_at_0004: str
    guards_at_0004: list[tuple[Any, ...]]


@pytest.fixture(scope="module")
def native(pg_server: LocalPostgres) -> Iterator[Native]:
    name = f"arch_{uuid.uuid4().hex[:12]}"
    url = DatabaseUrl.parse(pg_server.create_database(name, exist_ok=False))
    try:
        upgrade(url, "0004")
        sql(url, ADD_ARCHIVED_AT)
        record_run(url, TENANT, "run-before", steps=2, chain_format=1)
        refused = refusal(
            url, "UPDATE aos_traces SET archived_at = now() WHERE trace_id = 'trace-run-before'"
        )
        guards = guard_definitions(url)
        check = cli(url, "db", "upgrade", "--check")
        revision_after_check = current_revision(url)
        upgraded = cli(url, "db", "upgrade")
        assert upgraded.exit_code == 0, upgraded.output
        yield Native(url, check.output, check.exit_code, revision_after_check, str(refused), guards)
    finally:
        pg_server.drop_database(name)


@pytest.fixture(scope="module")
def deployed(pg_server: LocalPostgres) -> Iterator[DatabaseUrl]:
    name = f"archdep_{uuid.uuid4().hex[:12]}"
    url = DatabaseUrl.parse(pg_server.create_database(name, exist_ok=False))
    try:
        create_aos_deployed_store(url)
        upgraded = cli(url, "db", "upgrade")
        assert upgraded.exit_code == 0, upgraded.output
        yield url
    finally:
        pg_server.drop_database(name)


def aos_archive(url: DatabaseUrl, trace_id: str) -> tuple[int, int]:
    with psycopg.connect(url.libpq(), autocommit=True) as conn:
        return archive_trace(conn, trace_id)


def verdict(url: DatabaseUrl, run_id: str) -> tuple[int, str]:
    result = cli(url, "verify", "--tenant-id", TENANT, "--run-id", run_id)
    return result.exit_code, result.output


def test_at_0004_archival_was_refused_and_check_describes_the_change(native: Native) -> None:
    assert "trace trace-run-before is sealed: UPDATE rejected" in native.refused_at_0004
    assert native.check_exit == 0, native.check_output
    out = native.check_output
    assert f"from 0004 to {head_revision()}" in out
    assert "revision 0005: Archival of format-v1 traces and steps" in out
    for table in ("aos_traces", "aos_trace_steps"):
        assert (
            f"{table} has archived_at (AOS's archival): a format-v1 row of it may be archived"
            in out
        )
    assert "replace functions run_proof_guard_step_change, run_proof_guard_trace_change" in out
    # 0006 (the head) follows, described ahead from the store at 0004, its summary whole.
    assert (
        "revision 0006: Chaining in the database (format v2): every trace and step any client"
        " inserts is hashed by PostgreSQL at insert, and the format's seal lives in columns of"
        " ours.\n"
    ) in out
    assert "aos_traces: add column seal_hash text (run-proof's format-v2 column)" in out
    assert out.index("revision 0005: ") < out.index("revision 0006: ")
    assert "nothing was changed (--check)" in out
    assert native.revision_after_check == "0004"
    assert current_revision(native.url) == head_revision() == "0006"


def test_a_sealed_run_archived_the_aos_way_still_verifies(
    native: Native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = native.url
    record_run(url, TENANT, "run-arch", steps=3, chain_format=1)
    before = dump(url, "trace-run-arch")
    assert verdict(url, "run-arch")[0] == 0
    # The run sealed at 0004 is archived too: the revision changed no row of it.
    assert aos_archive(url, "trace-run-before") == (1, 2)
    assert aos_archive(url, "trace-run-arch") == (1, 3)

    after = dump(url, "trace-run-arch")
    archived = rows(
        url,
        "SELECT count(*) FILTER (WHERE archived_at IS NOT NULL), count(*) FROM ("
        " SELECT archived_at FROM aos_traces WHERE trace_id = 'trace-run-arch' UNION ALL"
        " SELECT archived_at FROM aos_trace_steps WHERE trace_id = 'trace-run-arch') a",
    )
    assert archived == [(4, 4)]
    # Nothing but archived_at moved: every other column of every row is as it was.
    strip = rows(
        url,
        "SELECT (a::jsonb - 'archived_at') = (b::jsonb - 'archived_at')"
        " FROM unnest(%s::text[], %s::text[]) AS x(a, b)",
        (before, after),
    )
    assert strip == [(True,)] * 4 and before != after
    for run_id in ("run-arch", "run-before"):
        code, output = verdict(url, run_id)
        assert code == 0 and "VERIFIED" in output, output
    swept = cli(url, "sweep", "--full")
    assert swept.exit_code == 0 and "FAILED" not in swept.output, swept.output

    monkeypatch.setenv("RUN_PROOF_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("RUN_PROOF_SIGNING_KEY", str(tmp_path / "keys" / "ledger.key"))
    for name in (
        "RUN_PROOF_PUBLIC_KEY",
        "RUN_PROOF_PUBLIC_KEY_FILE",
        "RUN_PROOF_CHECKPOINT_ORIGIN",
    ):
        monkeypatch.delenv(name, raising=False)
    make_checkpoint(url)
    report = audit(url)
    assert report.ok, report.problems
    checked = cli(
        url,
        "checkpoint",
        "verify",
        env={
            "RUN_PROOF_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
            "RUN_PROOF_SIGNING_KEY": str(tmp_path / "keys" / "ledger.key"),
        },
    )
    assert checked.exit_code == 0, checked.output


@pytest.mark.parametrize(
    ("case", "statement", "message"),
    [
        (
            "un-archive the trace",
            "UPDATE aos_traces SET archived_at = NULL WHERE trace_id = %s",
            "trace {trace} was archived at",
        ),
        (
            "archive the trace again",
            "UPDATE aos_traces SET archived_at = archived_at + interval '1 day'"
            " WHERE trace_id = %s",
            "trace {trace} was archived at",
        ),
        (
            "un-archive a step",
            "UPDATE aos_trace_steps SET archived_at = NULL WHERE trace_id = %s AND step_index = 1",
            "step 1 of trace {trace} was archived at",
        ),
        (
            "archive a step again",
            "UPDATE aos_trace_steps SET archived_at = now() + interval '1 hour'"
            " WHERE trace_id = %s AND step_index = 0",
            "step 0 of trace {trace} was archived at",
        ),
    ],
)
def test_an_archival_is_not_undone_or_redone(
    native: Native, case: str, statement: str, message: str
) -> None:
    run_id = f"run-twice-{uuid.uuid4().hex[:8]}"
    trace = record_run(native.url, TENANT, run_id, steps=2, chain_format=1)
    assert aos_archive(native.url, trace) == (1, 2)
    before = dump(native.url, trace)

    error = refusal(native.url, statement, (trace,))

    assert message.format(trace=trace) in str(error), case
    assert "archived_at is set once; un-archiving or archiving it again is rejected" in str(error)
    assert error.sqlstate == "42501"
    assert dump(native.url, trace) == before
    # AOS's own statement finds nothing left to archive (its WHERE archived_at IS NULL).
    assert aos_archive(native.url, trace) == (0, 0)
    assert verdict(native.url, run_id)[0] == 0


@pytest.mark.parametrize(
    ("case", "statement", "message"),
    [
        (
            "archive the trace and change its status",
            "UPDATE aos_traces SET archived_at = now(), status = 'failed' WHERE trace_id = %s",
            "archiving trace {trace} may set archived_at only",
        ),
        (
            "archive the trace and change its plan (a hashed column)",
            'UPDATE aos_traces SET archived_at = now(), plan = \'{"goal": "x"}\''
            " WHERE trace_id = %s",
            "archiving trace {trace} may set archived_at only",
        ),
        (
            "archive the trace and move its seal_seq (not hashed)",
            "UPDATE aos_traces SET archived_at = now(), seal_seq = seal_seq + 1000"
            " WHERE trace_id = %s",
            "archiving trace {trace} may set archived_at only",
        ),
        (
            "archive a step and change its cost",
            "UPDATE aos_trace_steps SET archived_at = now(), cost_cents = cost_cents + 1"
            " WHERE trace_id = %s AND step_index = 1",
            "archiving step 1 of trace {trace} may set archived_at only",
        ),
        (
            "archive a step and write its cost as -0 for 0 (equal as numbers)",
            "UPDATE aos_trace_steps SET archived_at = now(), cost_cents = -0.0::float8"
            " WHERE trace_id = %s AND step_index = 0",
            "archiving step 0 of trace {trace} may set archived_at only",
        ),
        (
            "archive a step and change its step hash",
            "UPDATE aos_trace_steps SET archived_at = now(), step_hash = repeat('0', 64)"
            " WHERE trace_id = %s AND step_index = 0",
            "archiving step 0 of trace {trace} may set archived_at only",
        ),
    ],
)
def test_an_archival_that_changes_anything_else_is_refused(
    native: Native, case: str, statement: str, message: str
) -> None:
    run_id = f"run-more-{uuid.uuid4().hex[:8]}"
    trace = record_run(
        native.url,
        TENANT,
        run_id,
        steps=2,
        step_fields=lambda i: {"cost_cents": 0.0} if i == 0 else {},
        chain_format=1,
    )
    before = dump(native.url, trace)

    error = refusal(native.url, statement, (trace,))

    assert message.format(trace=trace) in str(error), case
    assert "every other column must stay as it is (UPDATE rejected)" in str(error)
    assert error.sqlstate == "42501"
    assert dump(native.url, trace) == before
    assert verdict(native.url, run_id)[0] == 0


def test_other_updates_are_refused_as_before(native: Native) -> None:
    trace = record_run(
        native.url, TENANT, f"run-other-{uuid.uuid4().hex[:8]}", steps=1, chain_format=1
    )
    sealed = refusal(native.url, "UPDATE aos_traces SET status = 'x' WHERE trace_id = %s", (trace,))
    step = refusal(
        native.url, "UPDATE aos_trace_steps SET status = 'x' WHERE trace_id = %s", (trace,)
    )
    same = refusal(
        native.url, "UPDATE aos_trace_steps SET archived_at = NULL WHERE trace_id = %s", (trace,)
    )
    assert f"trace {trace} is sealed: UPDATE rejected" in str(sealed)
    assert (
        f"aos_trace_steps is append-only: UPDATE rejected (trace {trace} is in format v1)"
        in str(step)
    )
    # archived_at NULL -> NULL is no archival: a plain UPDATE of the step, refused as before.
    assert "aos_trace_steps is append-only: UPDATE rejected" in str(same)


def test_a_hostile_float_setting_does_not_hide_a_change(native: Native) -> None:
    """extra_float_digits = -15 prints 0.1 and 0.1000000000000001 alike: the guard compares
    binary images, not text."""
    run_id = f"run-float-{uuid.uuid4().hex[:8]}"
    trace = record_run(
        native.url,
        TENANT,
        run_id,
        steps=1,
        step_fields=lambda i: {"cost_cents": 0.1},
        chain_format=1,
    )
    before = dump(native.url, trace)
    with psycopg.connect(native.url.libpq(), autocommit=True) as conn:
        conn.execute("SET extra_float_digits = -15")
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(
                "UPDATE aos_trace_steps SET archived_at = now(),"
                " cost_cents = 0.1000000000000001::float8 WHERE trace_id = %s",
                (trace,),
            )
    assert "may set archived_at only" in str(caught.value)
    assert dump(native.url, trace) == before


def test_an_unsealed_run_may_be_archived_and_sealed_after(native: Native) -> None:
    run_id = f"run-open-{uuid.uuid4().hex[:8]}"
    trace = record_run(native.url, TENANT, run_id, steps=2, seal=False, chain_format=1)
    assert aos_archive(native.url, trace) == (1, 2)
    assert verdict(native.url, run_id)[0] == 3  # UNSEALED

    async def seal() -> None:
        engine = async_engine(native.url)
        try:
            await V1TraceWriter(engine).seal(
                TENANT, run_id, status="succeeded", completed_at=BASE + timedelta(hours=1)
            )
        finally:
            await engine.dispose()

    # The archived trace still takes its seal (archived_at unchanged by it).
    run(seal())
    code, output = verdict(native.url, run_id)
    assert code == 0 and "VERIFIED" in output, output
    assert rows(
        native.url, "SELECT archived_at IS NOT NULL FROM aos_traces WHERE trace_id = %s", (trace,)
    ) == [(True,)]


def test_on_aos_as_deployed_archival_passes_both_guards(deployed: DatabaseUrl) -> None:
    url = deployed
    trace = record_run(url, TENANT, "run-dep", steps=2, seal=False, chain_format=1)
    # AOS's trace trigger refuses run-proof's seal on this database (issue 13, item 2).
    with pytest.raises(Exception, match="S6_IMMUTABILITY_VIOLATION") as refused_seal:
        record_run(url, TENANT, "run-dep-sealed", steps=1, chain_format=1)
    assert "S6_IMMUTABILITY_VIOLATION" in str(refused_seal.value)
    before = dump(url, trace)
    unsealed = verdict(url, "run-dep")

    assert aos_archive(url, trace) == (1, 2)

    after = dump(url, trace)
    same = rows(
        url,
        "SELECT (a::jsonb - 'archived_at') = (b::jsonb - 'archived_at')"
        " FROM unnest(%s::text[], %s::text[]) AS x(a, b)",
        (before, after),
    )
    assert same == [(True,)] * 3 and before != after
    assert unsealed[0] == 3 and verdict(url, "run-dep") == unsealed
    again = refusal(
        url, "UPDATE aos_trace_steps SET archived_at = NULL WHERE trace_id = %s", (trace,)
    )
    assert f"step 0 of trace {trace} was archived at" in str(again)
    assert dump(url, trace) == after
    # Archiving together with another change, on a trace not archived yet: refused by
    # run-proof's guard (AOS's own trigger would let a change of metadata through).
    other = record_run(url, TENANT, "run-dep-other", steps=1, seal=False, chain_format=1)
    untouched = dump(url, other)
    more = refusal(
        url,
        "UPDATE aos_traces SET archived_at = now(), metadata = '{}' WHERE trace_id = %s",
        (other,),
    )
    step = refusal(
        url,
        "UPDATE aos_trace_steps SET archived_at = now(), run_id = 'run-elsewhere'"
        " WHERE trace_id = %s",
        (other,),
    )
    assert f"archiving trace {other} may set archived_at only" in str(more)
    assert f"archiving step 0 of trace {other} may set archived_at only" in str(step)
    assert dump(url, other) == untouched


def test_the_downgrade_restores_the_0004_guards_exactly(native: Native, new_database: Any) -> None:
    from alembic import command

    from run_proof_pipeline.store.migrate import _config

    url = DatabaseUrl.parse(new_database("archdown"))
    upgrade(url)
    assert guard_definitions(url) != native.guards_at_0004
    command.downgrade(_config(url), "0004")
    assert current_revision(url) == "0004"
    assert guard_definitions(url) == native.guards_at_0004
    upgrade(url)
    upgrade(url)  # idempotent: a second upgrade at head changes nothing
    assert guard_definitions(url) == guard_definitions(native.url)
