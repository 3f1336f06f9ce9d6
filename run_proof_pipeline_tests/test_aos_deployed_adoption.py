"""`run-proof adopt` on AOS as deployed (issue 13 item 4): legacy traces written by AOS's own
statements, `db upgrade`, then adoption into format v2 under AOS's four triggers, which stay
on. Adoption changes no AOS column of any row (`root_hash` included): its hashes go into
columns of ours on the trace row and into run_proof_adopted_steps; the run verifies, says
since when, and passes the seed's plan; an owner's edit of an adopted step and a step AOS
adds after the adoption are caught.

One database for the module (aos_deployed.create_aos_deployed_store), upgraded and adopted
once through the CLI by the module fixture; the tests that write use runs of their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import psycopg.sql
import pytest
from typer.testing import CliRunner

from run_proof_pipeline.cli.main import app
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.integrity import (
    header_canonical_v2,
    parse_stored_json_v2,
    seal_canonical_v2,
    sha256,
)
from run_proof_pipeline.ledger.queries import ledger_trace_mismatches
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.aos_deployed import (
    AOS_TRIGGERS,
    aos_trigger_definitions,
    connect,
    record_step,
    row_dumps,
    store_trace,
)
from run_proof_pipeline_tests.support.aos_deployed import (
    create_aos_deployed_store as create_store,
)
from run_proof_pipeline_tests.support.aos_fixtures import on
from run_proof_pipeline_tests.support.plan_runs import (
    PLAN_STEPS,
    plan_config,
    run_plan,
    succeeded_steps,
    trace_store,
)
from run_proof_pipeline_tests.support.stores import prove
from run_proof_pipeline_tests.test_ledger_support import tamper

# Of the fixture's legacy traces: finished, one trace per run id (tenant, run, steps).
ADOPTED = {
    ("acme", "run-done"): 3,
    ("globex", "run-aborted"): 1,
    ("initech", "run-synth"): 1,
    ("acme", "run-archived"): 1,
    ("acme", "run-trace_ancient"): 1,
    ("acme", "run-trace_old_0"): 1,
    ("acme", "run-trace_old_1"): 1,
    ("acme", "run-whole"): 2,
}
Dumps = dict[str, dict[str, dict[str, Any]]]


@dataclass(frozen=True)
class Adopted:
    url: DatabaseUrl
    dumps_before: Dumps
    dumps_after: Dumps
    triggers_before: list[tuple[str, str, str, str, str]]
    triggers_after: list[tuple[str, str, str, str, str]]
    adopt_output: str
    ahead: datetime


def cli(url: DatabaseUrl, *args: str) -> Any:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATABASE_URL", url.libpq())
        patch.delenv("USE_POSTGRES_TRACES", raising=False)
        return CliRunner().invoke(app, list(args))


def rows(url: DatabaseUrl, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url.libpq()) as conn:
        return conn.execute(statement, params).fetchall()


def _stored_whole(conn: psycopg.Connection[Any]) -> None:
    """Two legacy runs by AOS's store_trace, no completion time: one with the two steps its
    trace lists, one whose second step had no step_index (AOS writes 0: ON CONFLICT skips
    it), so that only one of its two listed steps is in."""
    # 2^64 + 1: not a double (v1 would hash 2^64); format v2 covers it exactly.
    steps = [
        {"step_index": 0, "skill_name": "a"},
        {"step_index": 1, "skill_name": "b", "params": {"n": 2**64 + 1}},
    ]
    store_trace(
        conn,
        {"run_id": "run-whole", "trace_id": "trace_whole", "root_hash": "e" * 64, "steps": steps},
        "acme",
    )
    partial = [{"skill_name": "a"}, {"skill_name": "b"}]
    # A header format v2 cannot represent: a start time of 'infinity' (docs/hash-chain-v2.md
    # "Primitives"); skipped, said why.
    conn.execute(
        "INSERT INTO aos_traces (trace_id, run_id, correlation_id, tenant_id, root_hash, plan,"
        " trace, schema_version, status, started_at, completed_at) VALUES ('trace_inf',"
        " 'run-inf', 'corr-inf', 'acme', %s, '[]', '{}', '1.0', 'completed', 'infinity', now())",
        ("c" * 64,),
    )
    store_trace(
        conn,
        {
            "run_id": "run-partial",
            "trace_id": "trace_partial",
            "root_hash": "d" * 64,
            "steps": partial,
        },
        "acme",
    )


@pytest.fixture(scope="module")
def adopted(pg_server: LocalPostgres) -> Iterator[Adopted]:
    url = DatabaseUrl.parse(pg_server.create_database(f"aosadopt_{uuid.uuid4().hex[:12]}"))
    create_store(url)
    with connect(url) as conn:
        _stored_whole(conn)
    dumps_before, triggers_before = row_dumps(url), aos_trigger_definitions(url)
    upgraded = cli(url, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    ahead = datetime.now(UTC)
    adopt = cli(url, "adopt", "--batch-size", "4")
    assert adopt.exit_code == 0, adopt.output
    yield Adopted(
        url=url,
        dumps_before=dumps_before,
        dumps_after=row_dumps(url),
        triggers_before=triggers_before,
        triggers_after=aos_trigger_definitions(url),
        adopt_output=adopt.output,
        ahead=ahead,
    )


def test_adopt_reports_what_it_adopted_and_skipped(adopted: Adopted) -> None:
    out = adopted.adopt_output
    assert "batch 1: 4 traces examined" in out and "batch 4: 1 traces examined" in out
    assert "8 adopted, 5 skipped, 0 adopted before" in out
    assert (
        "(trace 'trace_partial'): it has no completion time and 1 of the 2 steps its trace lists"
    ) in out
    assert "(trace 'trace_run-live'): it is still running" in out
    assert "run 'run-shared' has 2 traces and a format run has one" in out
    assert (
        "(trace 'trace_inf'): its header cannot be hashed in format v2 (timestamp 'infinity'"
    ) in out
    seals = dict(rows(adopted.url, "SELECT run_id, seal_hash FROM aos_traces"))
    for (tenant, run_id), steps in ADOPTED.items():
        assert (
            f"adopted tenant {tenant!r}, run {run_id!r}: {steps} steps, seal {seals[run_id]}" in out
        )


def test_adoption_changes_no_aos_column_of_any_row(adopted: Adopted) -> None:
    before, after = adopted.dumps_before, adopted.dumps_after
    for table in before:
        assert after[table].keys() == before[table].keys(), table
        for row_id, old in before[table].items():
            new = after[table][row_id]
            # Every column AOS's chain created, root_hash included, as AOS left it.
            assert {c: new[c] for c in old} == old, (table, row_id)
    traces = {r["trace_id"]: r for r in after["aos_traces"].values()}
    assert {r["root_hash"] for r in traces.values()} >= {"pending"}
    for trace in traces.values():
        chosen = (trace["tenant_id"], trace["run_id"]) in ADOPTED
        assert (trace["chain_format"], trace["adopted_at"] is not None) == (
            (2, True) if chosen else (None, False)
        ), trace["trace_id"]
        # Format v2 never writes aos_root_hash (format v1's adoption did).
        assert trace["aos_root_hash"] is None
    for step in after["aos_trace_steps"].values():
        assert (step["prev_hash"], step["step_hash"], step["chain_position"]) == (None,) * 3


def test_aos_triggers_stay_in_force_with_the_same_definitions(adopted: Adopted) -> None:
    assert adopted.triggers_after == adopted.triggers_before
    assert [(t[0], t[1]) for t in adopted.triggers_after] == sorted(
        (table, name) for table, name, _ in AOS_TRIGGERS
    )
    assert all(t[3] == "O" for t in adopted.triggers_after)  # enabled
    # AOS's step trigger refuses an UPDATE of an adopted step row by itself: with every
    # trigger of ours off (in a transaction rolled back), AOS's says S6_IMMUTABILITY_VIOLATION.
    aos_names = [name for _, name, _ in AOS_TRIGGERS]
    with psycopg.connect(adopted.url.libpq()) as conn:
        ours = conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'aos_trace_steps'::regclass"
            " AND NOT tgisinternal AND NOT (tgname = ANY(%s))",
            (aos_names,),
        ).fetchall()
        assert ours
        for (name,) in ours:
            conn.execute(
                psycopg.sql.SQL("ALTER TABLE aos_trace_steps DISABLE TRIGGER {}").format(
                    psycopg.sql.Identifier(name)
                )
            )
        with pytest.raises(psycopg.errors.RaiseException, match="S6_IMMUTABILITY_VIOLATION"):
            conn.execute(
                "UPDATE aos_trace_steps SET params = '{}' WHERE trace_id = 'trace_run-done'"
            )
        conn.rollback()
    assert aos_trigger_definitions(adopted.url) == adopted.triggers_before


def test_adopted_runs_verify_and_say_since_when(adopted: Adopted) -> None:
    for (tenant, run_id), steps in ADOPTED.items():
        result = prove(adopted.url, tenant, run_id)
        integrity = result.integrity
        assert integrity.verification_status == "VERIFIED", (run_id, integrity.failure_reason)
        assert integrity.model == "HASH_CHAIN"
        assert integrity.chain_length == result.steps_read == steps
        assert integrity.adopted_at is not None and integrity.adopted_at >= adopted.ahead
    # The ledger has one adoption per run, naming the seal; it agrees with the traces.
    entries = rows(
        adopted.url,
        "SELECT l.tenant_id, l.run_id, l.root_hash = t.seal_hash, l.chain_length = t.chain_length"
        " FROM run_proof_ledger l JOIN aos_traces t USING (trace_id) WHERE l.kind = 'adoption'",
    )
    assert sorted((t, r) for t, r, _, _ in entries) == sorted(ADOPTED)
    assert all(same_root and same_length for _, _, same_root, same_length in entries)
    assert on(adopted.url, ledger_trace_mismatches) == []
    # The step hashes are in the table of ours, at positions 0..n-1; the chain is sealed.
    counts = dict(
        rows(
            adopted.url,
            "SELECT t.run_id, count(a.*) FILTER (WHERE a.chain_position = a.step_index)"
            " FROM aos_traces t LEFT JOIN run_proof_adopted_steps a USING (trace_id)"
            " WHERE t.chain_format = 2 GROUP BY t.run_id",
        )
    )
    assert counts == {run_id: steps for (_, run_id), steps in ADOPTED.items()}
    heads = rows(
        adopted.url,
        "SELECT h.next_position = t.chain_length, h.sealed FROM run_proof_chain_heads h"
        " JOIN aos_traces t USING (trace_id) WHERE t.adopted_at IS NOT NULL",
    )
    assert heads == [(True, True)] * len(ADOPTED)


def test_the_header_and_seal_are_the_spec_records_of_the_row(adopted: Adopted) -> None:
    """Recomputed here from the row's own values (docs/hash-chain-v2.md "Records"): the
    header covers AOS's root_hash as aos_root_hash, the seal covers metadata."""
    [row] = rows(
        adopted.url,
        "SELECT tenant_id, run_id, trace_id, agent_id, plan_id, plan::text, started_at,"
        " created_at, correlation_id, seed, frozen_timestamp, plan_hash, schema_version,"
        " trace::text, stored_by, checksum, incident_id, is_synthetic, synthetic_scenario_id,"
        " root_hash, status, completed_at, metadata::text, genesis_hash, seal_hash,"
        " chain_length FROM aos_traces WHERE trace_id = 'trace_old_0'",
    )
    (tenant, run, trace, agent, plan_id, plan, started, created, corr, seed, frozen) = row[:11]
    (plan_hash, schema, trace_json, stored_by, checksum, incident, synthetic) = row[11:18]
    (scenario, root, status, completed, metadata, genesis, seal, length) = row[18:]
    header = header_canonical_v2(
        tenant_id=tenant,
        run_id=run,
        trace_id=trace,
        agent_id=agent,
        plan_id=plan_id,
        plan=parse_stored_json_v2(plan),
        started_at=started,
        created_at=created,
        correlation_id=corr,
        seed=seed,
        frozen_timestamp=frozen,
        plan_hash=plan_hash,
        schema_version=schema,
        trace=parse_stored_json_v2(trace_json),
        stored_by=stored_by,
        checksum=checksum,
        incident_id=incident,
        is_synthetic=synthetic,
        synthetic_scenario_id=scenario,
        aos_root_hash=root,
    )
    assert root == "a" * 64 and b'"aos_root_hash":"' + root.encode() in header
    assert b'"budget":1e+21' in header  # the trace column's number, exact and JCS
    assert sha256(header).hex() == genesis
    [(head,)] = rows(
        adopted.url,
        "SELECT step_hash FROM run_proof_adopted_steps WHERE trace_id = 'trace_old_0'"
        " AND chain_position = 0",
    )
    sealed = seal_canonical_v2(
        tenant_id=tenant,
        run_id=run,
        trace_id=trace,
        status=status,
        completed_at=completed,
        chain_length=length,
        metadata=parse_stored_json_v2(metadata),
    )
    assert b'"metadata":{"source":"aos"}' in sealed
    assert sha256(bytes.fromhex(head) + sealed).hex() == seal


def test_verify_plain_output_says_the_run_was_adopted(adopted: Adopted) -> None:
    adopted_at = prove(adopted.url, "acme", "run-done").integrity.adopted_at
    assert adopted_at is not None

    result = cli(adopted.url, "verify", "--tenant-id", "acme", "--run-id", "run-done")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "verification_status: VERIFIED" in lines
    assert (
        f"adoption: adopted at {adopted_at.isoformat()}: proves no change since adoption, "
        "not since the run"
    ) in lines


def test_adoption_is_idempotent(adopted: Adopted) -> None:
    seals = rows(adopted.url, "SELECT trace_id, seal_hash, adopted_at FROM aos_traces ORDER BY 1")

    again = cli(adopted.url, "adopt")

    assert again.exit_code == 0, again.output
    assert "0 adopted, 5 skipped, 8 adopted before" in again.output
    assert rows(
        adopted.url, "SELECT trace_id, seal_hash, adopted_at FROM aos_traces ORDER BY 1"
    ) == (seals)
    assert rows(adopted.url, "SELECT count(*) FROM run_proof_ledger WHERE kind = 'adoption'") == [
        (len(ADOPTED),)
    ]


def test_an_owner_edit_of_an_adopted_step_is_caught(adopted: Adopted) -> None:
    assert prove(adopted.url, "initech", "run-synth").integrity.verification_status == "VERIFIED"
    # Past every trigger (AOS's and ours), as the table owner could.
    [touched] = tamper(
        adopted.url,
        (
            'UPDATE aos_trace_steps SET params = \'{"prompt": "bye"}\''
            " WHERE trace_id = 'trace_run-synth' AND step_index = 0",
            (),
        ),
    )
    assert touched == 1

    integrity = prove(adopted.url, "initech", "run-synth").integrity

    assert integrity.verification_status == "FAILED"
    assert "step 0" in (integrity.failure_reason or ""), integrity.failure_reason


def test_a_step_aos_adds_after_the_adoption_fails_the_run(adopted: Adopted) -> None:
    assert prove(adopted.url, "globex", "run-aborted").integrity.verification_status == "VERIFIED"
    with connect(adopted.url) as conn:
        # AOS's own record_step: stored without an error, chained after the seal.
        record_step(
            conn, "trace_run-aborted", 1, "http_call", {"late": True}, "success", "SUCCESS",
            None, None, 0.0, 1.0, 0,
        )  # fmt: skip
    [(position,)] = rows(
        adopted.url,
        "SELECT chain_position FROM aos_trace_steps"
        " WHERE trace_id = 'trace_run-aborted' AND step_index = 1",
    )
    assert position == 1

    integrity = prove(adopted.url, "globex", "run-aborted").integrity

    assert integrity.verification_status == "FAILED"
    assert "step 1" in (integrity.failure_reason or ""), integrity.failure_reason


@pytest.mark.slow
def test_the_seed_plan_passes_on_an_adopted_run(
    adopted: Adopted, monkeypatch: pytest.MonkeyPatch, dagster_instance: Any, tmp_path: Path
) -> None:
    monkeypatch.setenv("RUN_PROOF_REPORT_DIR", str(tmp_path))
    config = plan_config(tmp_path, run_id="run-done", tenant_id="acme")

    result = run_plan(dagster_instance, trace_store(adopted.url), config)

    assert result.success
    assert succeeded_steps(dagster_instance, result.run_id) == PLAN_STEPS
    proof = result.output_for_node("step_3_coordinator_proof")
    assert proof.proof.integrity.verification_status == "VERIFIED"
    assert proof.proof.integrity.adopted_at is not None
    assert proof.proof.integrity.chain_length == 3
    report = Path(result.output_for_node("output_report")).read_text(encoding="utf-8")
    assert "adopted at " in report and "not since the run" in report


def test_an_adopted_number_is_covered_exactly(adopted: Adopted) -> None:
    assert prove(adopted.url, "acme", "run-whole").integrity.verification_status == "VERIFIED"
    # 2^64 + 1 -> 2^64: the same double, a different stored value; format v2 tells them apart.
    [touched] = tamper(
        adopted.url,
        (
            "UPDATE aos_trace_steps SET params = '{\"n\": 18446744073709551616}'"
            " WHERE trace_id = 'trace_whole' AND step_index = 1",
            (),
        ),
    )
    assert touched == 1

    integrity = prove(adopted.url, "acme", "run-whole").integrity

    assert integrity.verification_status == "FAILED"
    assert "step 1" in (integrity.failure_reason or ""), integrity.failure_reason
