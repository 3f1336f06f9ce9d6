"""`run-proof db upgrade` on AOS as deployed (issue 13, item 1): AOS's whole migration chain,
its four immutability triggers and legacy rows written by its own statements. The upgrade
changes no AOS column of any row, leaves AOS's triggers in force with the same definitions,
`--check` names them and changes nothing, and every writer pattern of AOS keeps working.

One database for the module (aos_deployed.create_aos_deployed_store), upgraded once by the
module fixture through the CLI; the tests that write use run ids of their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from run_proof_pipeline.cli.main import app
from run_proof_pipeline.coordinator.run_proof import LEGACY_REASON
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.migrate import current_revision, head_revision
from run_proof_pipeline_tests.support.aos_deployed import (
    ANCIENT_CREATED,
    AOS_TRIGGERS,
    LEGACY_CREATED,
    LegacyRun,
    aos_trigger_definitions,
    archive_trace,
    cleanup_old_traces,
    complete_trace,
    connect,
    create_aos_deployed_store,
    mark_trace_aborted,
    record_step,
    retention_days_before,
    row_dumps,
    start_trace,
    store_trace,
)
from run_proof_pipeline_tests.support.stores import prove

# Columns the upgrade adds; everything else in a row is AOS's and must not change.
OURS = {"genesis_hash", "chain_length", "seal_seq", "adopted_at", "aos_root_hash"}
# Migration 0006 (format v2): the format and seal of a trace, the chain position of a step.
OURS_V2 = {"chain_format", "seal_hash", "chain_problem"}
ADDED = {
    "aos_traces": OURS | OURS_V2,
    "aos_trace_steps": {
        "run_id",
        "tenant_id",
        "prev_hash",
        "step_hash",
        "chain_position",
        "chain_problem",
    },  # fmt: skip
    # The archive also gets the five columns AOS's later revisions added to aos_traces only.
    "aos_traces_archive": OURS
    | OURS_V2
    | {
        "checksum",
        "incident_id",
        "is_synthetic",
        "synthetic_scenario_id",
        "archived_at",
    },
}
Dumps = dict[str, dict[str, dict[str, Any]]]


@dataclass(frozen=True)
class Deployed:
    url: DatabaseUrl
    legacy: list[LegacyRun]
    retention_before: str
    check_output: str
    check_exit: int
    dumps_before: Dumps
    dumps_after_check: Dumps
    dumps_after: Dumps
    triggers_before: list[tuple[str, str, str, str, str]]
    triggers_after_check: list[tuple[str, str, str, str, str]]
    triggers_after: list[tuple[str, str, str, str, str]]
    revision_after_check: str | None
    upgrade_exit: int


def cli(url: DatabaseUrl, *args: str) -> Any:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATABASE_URL", url.libpq())
        return CliRunner().invoke(app, list(args))


def _retention_error(url: DatabaseUrl) -> str:
    """AOS's retention before the upgrade: its archive lacks five columns of aos_traces."""
    with connect(url) as conn:
        try:
            cleanup_old_traces(conn, retention_days_before(ANCIENT_CREATED + timedelta(days=2)))
        except psycopg.Error as exc:
            return str(exc)
    return ""


@pytest.fixture(scope="module")
def deployed(pg_server: LocalPostgres) -> Iterator[Deployed]:
    url = DatabaseUrl.parse(pg_server.create_database(f"aosdep_{uuid.uuid4().hex[:12]}"))
    legacy = create_aos_deployed_store(url)
    retention_before = _retention_error(url)
    dumps_before, triggers_before = row_dumps(url), aos_trigger_definitions(url)
    check = cli(url, "db", "upgrade", "--check")
    dumps_after_check, triggers_after_check = row_dumps(url), aos_trigger_definitions(url)
    revision_after_check = current_revision(url)
    upgraded = cli(url, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    yield Deployed(
        url=url,
        legacy=legacy,
        retention_before=retention_before,
        check_output=check.output,
        check_exit=check.exit_code,
        dumps_before=dumps_before,
        dumps_after_check=dumps_after_check,
        dumps_after=row_dumps(url),
        triggers_before=triggers_before,
        triggers_after_check=triggers_after_check,
        triggers_after=aos_trigger_definitions(url),
        revision_after_check=revision_after_check,
        upgrade_exit=upgraded.exit_code,
    )


def rows(url: DatabaseUrl, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url.libpq()) as conn:
        return conn.execute(statement, params).fetchall()


def test_the_fixture_is_aos_as_deployed(deployed: Deployed) -> None:
    before = deployed.dumps_before
    # Every column of the list, the four triggers, rows of every kind.
    trace = next(iter(before["aos_traces"].values()))
    assert {"checksum", "incident_id", "is_synthetic", "synthetic_scenario_id"} <= set(trace)
    assert "archived_at" in trace
    step = next(iter(before["aos_trace_steps"].values()))
    assert {"source", "level", "is_synthetic", "synthetic_scenario_id", "archived_at"} <= set(step)
    assert [(t[0], t[1]) for t in deployed.triggers_before] == sorted(
        (table, name) for table, name, _ in AOS_TRIGGERS
    )
    assert all(t[3] == "O" for t in deployed.triggers_before)
    assert len(before["aos_traces"]) == len(deployed.legacy) == 10
    assert len(before["aos_trace_steps"]) == 14
    assert [r["trace_id"] for r in before["aos_traces_archive"].values()] == ["trace_gone"]
    assert {r["root_hash"] for r in before["aos_traces"].values()} >= {"pending"}
    assert any(r["archived_at"] for r in before["aos_trace_steps"].values())
    # AOS's retention fails on AOS's own chain: the archive has the first migration's columns.
    assert "INSERT has more expressions than target columns" in deployed.retention_before


def test_check_names_aos_triggers_and_changes_nothing(deployed: Deployed) -> None:
    out = deployed.check_output
    assert deployed.check_exit == 0, out
    for table, name, _ in AOS_TRIGGERS:
        assert f"found trigger {name} on {table} (ENABLE): AOS's" in out
    assert "refuses a change to any other AOS column, root_hash included: kept in force" in out
    assert (
        "aos_trace_steps: lift trigger prevent_trace_step_update for the backfill below only,"
        " inside this revision's transaction" in out
    )
    assert "fill run_id and tenant_id of 14 existing steps" in out
    assert (
        "aos_trace_steps: restore trigger prevent_trace_step_update as it was (ENABLE),"
        " before this revision commits" in out
    )
    # The lift is the only trigger statement of the plan besides run-proof's own triggers.
    assert out.count("lift trigger") == 1
    assert "aos_traces_archive: add column checksum character varying(64)" in out
    assert "nothing was changed (--check)" in out
    assert deployed.dumps_after_check == deployed.dumps_before
    assert deployed.triggers_after_check == deployed.triggers_before
    assert deployed.revision_after_check is None


def test_upgrade_changes_no_aos_column_of_any_row(deployed: Deployed) -> None:
    before, after = deployed.dumps_before, deployed.dumps_after
    assert deployed.upgrade_exit == 0
    for table in before:
        assert after[table].keys() == before[table].keys(), table
        for row_id, old in before[table].items():
            new = after[table][row_id]
            assert set(new) - set(old) == ADDED[table], table
            assert {c: new[c] for c in old} == old, (table, row_id)
    # What the upgrade did write: the steps' run and tenant, from their trace; nothing else.
    traces = {r["trace_id"]: r for r in after["aos_traces"].values()}
    for step in after["aos_trace_steps"].values():
        parent = traces[step["trace_id"]]
        assert (step["run_id"], step["tenant_id"]) == (parent["run_id"], parent["tenant_id"])
        assert step["prev_hash"] is None and step["step_hash"] is None
    for table in ("aos_traces", "aos_traces_archive"):
        for row in after[table].values():
            assert {c: row[c] for c in ADDED["aos_traces"]} == dict.fromkeys(ADDED["aos_traces"])
    assert current_revision(deployed.url) == head_revision()


def test_aos_triggers_are_identical_after_the_upgrade(deployed: Deployed) -> None:
    # Same definitions, same functions, same enabled state ('O'): the lift left no trace.
    assert deployed.triggers_after == deployed.triggers_before
    assert len(deployed.triggers_after) == 4


def test_aos_step_trigger_is_really_back_on(deployed: Deployed) -> None:
    url = deployed.url
    for statement in (
        "UPDATE aos_trace_steps SET skill_name = 'evil' WHERE trace_id = 'trace_run-done'",
        # Nothing of ours can go into an existing step row either (issue 13, item 1).
        "UPDATE aos_trace_steps SET step_hash = 'x' WHERE trace_id = 'trace_run-done'",
    ):
        with pytest.raises(psycopg.errors.RaiseException, match="S6_IMMUTABILITY_VIOLATION"):
            rows(url, statement + " RETURNING id")
    with pytest.raises(psycopg.errors.RaiseException, match="S6_IMMUTABILITY_VIOLATION"):
        rows(url, "UPDATE aos_traces SET root_hash = 'x' WHERE trace_id = 'trace_run-done'")
    with pytest.raises(psycopg.errors.RaiseException, match="direct DELETE not allowed"):
        rows(url, "DELETE FROM aos_trace_steps WHERE trace_id = 'trace_run-done'")
    with pytest.raises(psycopg.errors.RaiseException, match="Archive first"):
        rows(url, "DELETE FROM aos_traces WHERE trace_id = 'trace_run-done'")
    assert rows(url, "SELECT skill_name FROM aos_trace_steps WHERE trace_id = 'trace_run-done'")
    assert {r[0] for r in rows(url, "SELECT step_hash FROM aos_trace_steps")} == {None}


def _legacy_verdict(url: DatabaseUrl, tenant_id: str, run_id: str) -> None:
    """A trace AOS wrote before the upgrade stays legacy, whatever AOS adds to it later."""
    integrity = prove(url, tenant_id, run_id).integrity
    assert integrity.verification_status == "UNSUPPORTED"
    assert integrity.failure_reason == LEGACY_REASON


def _v2_verdict(url: DatabaseUrl, tenant_id: str, run_id: str, steps: int) -> None:
    """A run AOS writes after the upgrade is chained and sealed by the database (format v2):
    VERIFIED, with no adopt and nothing of ours in AOS's write path."""
    integrity = prove(url, tenant_id, run_id).integrity
    assert integrity.verification_status == "VERIFIED", integrity.failure_reason
    assert integrity.chain_length == steps
    [(seal_hash, chain_format)] = rows(
        url,
        "SELECT seal_hash, chain_format FROM aos_traces WHERE tenant_id = %s AND run_id = %s",
        (tenant_id, run_id),
    )
    assert chain_format == 2
    assert integrity.root_hash == seal_hash


def test_start_record_complete_after_the_upgrade(deployed: Deployed) -> None:
    url = deployed.url
    with connect(url) as conn:
        trace_id = start_trace(conn, "run-new", "corr-new", "acme", "agent-1", [{"s": 1}])
        # ON CONFLICT (trace_id) DO NOTHING: AOS's retry of start_trace.
        assert start_trace(conn, "run-new", "corr-other", "acme", None, []) == trace_id
        for index in range(3):
            record_step(
                conn, trace_id, index, "http_call", {"i": index}, "success", "SUCCESS",
                "200", {"ok": index} if index else None, 0.5, 12.5, 0,
            )  # fmt: skip
        # ON CONFLICT (trace_id, step_index) DO NOTHING: a step recorded twice.
        record_step(conn, trace_id, 1, "other", {}, "failure", "F", None, None, 0, 0, 0)
        with pytest.raises(ValueError, match="orphan steps forbidden"):
            record_step(conn, "trace_nope", 0, "x", {}, "success", "S", None, None, 0, 0, 0)
        assert complete_trace(conn, "run-new", "completed", {"total_cost_cents": 1.5}) == 1

    [(correlation_id, root_hash, status, metadata, genesis_hash)] = rows(
        url,
        "SELECT correlation_id, root_hash, status, metadata, genesis_hash FROM aos_traces"
        " WHERE trace_id = %s",
        (trace_id,),
    )
    # AOS's values as AOS wrote them; the genesis is the database's, in a column of ours.
    assert (correlation_id, root_hash, status, metadata) == (
        "corr-new", "pending", "completed", {"total_cost_cents": 1.5},
    )  # fmt: skip
    assert genesis_hash is not None and len(genesis_hash) == 64
    steps = rows(
        url,
        "SELECT step_index, skill_name, run_id, tenant_id, level FROM aos_trace_steps"
        " WHERE trace_id = %s ORDER BY step_index",
        (trace_id,),
    )
    assert steps == [(i, "http_call", "run-new", "acme", "INFO") for i in range(3)]
    # The seed's Step 2 counts AOS's new steps by run id.
    assert rows(url, "SELECT count(*) FROM aos_trace_steps WHERE run_id = 'run-new'") == [(3,)]
    _v2_verdict(url, "acme", "run-new", 3)


def test_a_step_into_a_trace_running_since_before_the_upgrade(deployed: Deployed) -> None:
    url = deployed.url
    with connect(url) as conn:
        record_step(conn, "trace_run-live", 2, "llm", {}, "retry", "S", None, None, 1, 2, 1)
        assert complete_trace(conn, "run-live", "completed", None) == 1
    assert rows(
        url, "SELECT count(*), min(run_id) FROM aos_trace_steps WHERE trace_id = 'trace_run-live'"
    ) == [(3, "run-live")]
    assert rows(url, "SELECT status FROM aos_traces WHERE trace_id = 'trace_run-live'") == [
        ("completed",)
    ]
    _legacy_verdict(url, "acme", "run-live")


def test_mark_trace_aborted_after_the_upgrade(deployed: Deployed) -> None:
    url = deployed.url
    with connect(url) as conn:
        trace_id = start_trace(conn, "run-abort-new", "c", "globex", None, [])
        record_step(conn, trace_id, 0, "x", {}, "success", "S", None, None, 0, 0, 0)
        assert mark_trace_aborted(conn, "run-abort-new", "worker died") == 1
        # Only a running trace is aborted: a second call changes nothing.
        assert mark_trace_aborted(conn, "run-abort-new", "again") == 0
    assert rows(
        url, "SELECT status, metadata, completed_at IS NOT NULL FROM aos_traces WHERE run_id = %s",
        ("run-abort-new",),
    ) == [("aborted", {"abort_reason": "worker died"}, True)]  # fmt: skip
    _v2_verdict(url, "globex", "run-abort-new", 1)


def test_store_trace_after_the_upgrade(deployed: Deployed) -> None:
    url = deployed.url
    whole = {
        "run_id": "run-stored-new",
        "root_hash": "9" * 64,
        "plan": [{"skill": "a"}],
        "steps": [
            {"skill_name": "a", "params": {"n": 1}},  # no step_index: written as 0
            {"step_index": 1, "skill_name": "b", "status": "failure", "outcome_data": {"e": 2}},
        ],
    }
    with connect(url) as conn:
        trace_id = store_trace(conn, whole, "acme", stored_by="sdk")
        # Stored again under the same id: both statements hit ON CONFLICT DO NOTHING.
        assert store_trace(conn, dict(whole, trace_id=trace_id), "acme") == trace_id
    assert trace_id.startswith("trace_")
    assert rows(
        url,
        "SELECT status, completed_at, root_hash, trace -> 'steps' -> 1 ->> 'skill_name'"
        " FROM aos_traces WHERE trace_id = %s",
        (trace_id,),
    ) == [("completed", None, "9" * 64, "b")]
    assert rows(
        url,
        "SELECT step_index, level, run_id FROM aos_trace_steps WHERE trace_id = %s"
        " ORDER BY step_index",
        (trace_id,),
    ) == [(0, "INFO", "run-stored-new"), (1, "ERROR", "run-stored-new")]
    # Sealed by the database once the two steps its `trace` lists were chained.
    _v2_verdict(url, "acme", "run-stored-new", 2)


def test_complete_trace_of_a_run_id_two_traces_share(deployed: Deployed) -> None:
    with connect(deployed.url) as conn:
        assert complete_trace(conn, "run-shared", "completed", {"n": 2}) == 2
    assert rows(deployed.url, "SELECT metadata FROM aos_traces WHERE run_id = 'run-shared'") == [
        ({"n": 2},),
        ({"n": 2},),
    ]


def test_archival_after_the_upgrade(deployed: Deployed) -> None:
    with connect(deployed.url) as conn:
        trace_id = start_trace(conn, "run-sdsr", "c", "acme", None, [])
        record_step(conn, trace_id, 0, "x", {}, "success", "S", None, None, 0, 0, 0)
        assert archive_trace(conn, trace_id) == (1, 1)
        assert archive_trace(conn, "trace_run-done") == (1, 3)


def test_retention_after_the_upgrade(deployed: Deployed) -> None:
    url = deployed.url
    ancient = next(
        r for r in deployed.dumps_before["aos_traces"].values() if r["trace_id"] == "trace_ancient"
    )
    with connect(url) as conn:
        # A copy already there: the retention's INSERT takes its ON CONFLICT path for it.
        conn.execute("INSERT INTO aos_traces_archive SELECT * FROM aos_traces WHERE run_id = %s",
                     ("run-trace_old_0",))  # fmt: skip
        days = retention_days_before(LEGACY_CREATED + timedelta(days=1))
        assert cleanup_old_traces(conn, days) == 2
        # Nothing older is left: a second run is a no-op, not an error.
        assert cleanup_old_traces(conn, days) == 0
    archived = {
        r[0]["trace_id"]: r[0] for r in rows(url, "SELECT to_jsonb(a) FROM aos_traces_archive a")
    }
    assert set(archived) == {"trace_gone", "trace_ancient", "trace_old_0"}
    assert {c: archived["trace_ancient"][c] for c in ancient} == ancient
    assert rows(
        url,
        "SELECT count(*) FROM aos_trace_steps WHERE trace_id IN ('trace_ancient', 'trace_old_0')",
    ) == [(0,)]
    assert rows(url, "SELECT count(*) FROM aos_traces WHERE trace_id = 'trace_old_1'") == [(1,)]


def test_a_second_upgrade_changes_nothing(deployed: Deployed) -> None:
    url = deployed.url
    dumps, triggers = row_dumps(url), aos_trigger_definitions(url)

    again = cli(url, "db", "upgrade")
    check = cli(url, "db", "upgrade", "--check")

    assert again.exit_code == 0, again.output
    assert row_dumps(url) == dumps
    assert aos_trigger_definitions(url) == triggers == deployed.triggers_before
    assert check.exit_code == 0
    assert f"nothing to do: the trace store is at revision {head_revision()}" in check.output


def test_an_upgrade_refused_inside_the_lift_leaves_aos_trigger_on(new_database: Any) -> None:
    """The lift is inside the revision's transaction: when the backfill itself is refused
    (here by someone else's trigger, which the upgrade never lifts), the upgrade stops with
    AOS's trigger on, as it was, and no row changed."""
    url = DatabaseUrl.parse(new_database("aosdep_fail"))
    create_aos_deployed_store(url)
    with psycopg.connect(url.libpq()) as conn:
        conn.execute(
            "CREATE FUNCTION audit_no_update() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'audit: steps are not updated here'; END $$;"
            " CREATE TRIGGER audit_no_update BEFORE UPDATE ON aos_trace_steps"
            " FOR EACH ROW EXECUTE FUNCTION audit_no_update()"
        )
    dumps, triggers = row_dumps(url), aos_trigger_definitions(url)

    check = cli(url, "db", "upgrade", "--check")
    result = cli(url, "db", "upgrade")

    assert check.exit_code == 0, check.output
    assert (
        "found trigger audit_no_update on aos_trace_steps (ENABLE): not run-proof's: kept in"
        " force, with the same definition; it fires on the backfill's UPDATE of 14 steps, and"
        " if it refuses it the upgrade stops and changes nothing"
    ) in check.output
    assert check.output.count("lift trigger") == 1
    assert result.exit_code != 0
    assert "audit: steps are not updated here" in result.output
    assert aos_trigger_definitions(url) == triggers
    assert row_dumps(url) == dumps
    assert current_revision(url) is None
    # Without the other trigger (it fires first, by name), AOS's own refuses.
    with psycopg.connect(url.libpq()) as conn:
        conn.execute("DROP TRIGGER audit_no_update ON aos_trace_steps")
    with pytest.raises(psycopg.errors.RaiseException, match="S6_IMMUTABILITY_VIOLATION"):
        rows(url, "UPDATE aos_trace_steps SET level = 'ERROR' RETURNING id")
