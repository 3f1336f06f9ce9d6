"""The tamper matrix (issue 4, item 5): each case is done with SQL as the table owner or a
superuser, with every protective trigger off, asserting exactly which rows it touched; each is
detected, naming the first bad step (or header, seal, ledger).

Rows that pass rules 1-4 (a run rewritten with recomputed hashes, a tail cut with the seal
rewritten) are caught by the ledger (rule 5); rows that also rewrite the ledger (rolled back,
entry rewritten, entries renumbered) are caught only by the signed checkpoint, as
docs/threat-model.md says.

The runs are format v1 (record_run(..., chain_format=1)); since migration 0006 a format-v1 seal
is in both root_hash and seal_hash, so an attacker rewriting or clearing the seal does so in
both columns (rewriting root_hash alone is the "hash-only-root_hash" case).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from psycopg import sql

from run_proof_pipeline.coordinator import RunProofCoordinator
from run_proof_pipeline.coordinator import run_proof as coordinator_module
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.integrity import canonicalize, step_hash, step_record
from run_proof_pipeline.plan.coordinator_checks.fixtures import migrated_copy
from run_proof_pipeline.proof import stream as stream_module
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.native_line import native_enabled
from run_proof_pipeline_tests.support.marks import slow_after
from run_proof_pipeline_tests.support.stores import prove, record_run
from run_proof_pipeline_tests.test_ledger_support import (
    RunShape,
    Statement,
    audit,
    make_checkpoint,
    one,
    tamper,
)

TENANT = "tenant-m"
STEPS = 5
TARGET = 2  # the step most cases touch


def _step_update(column: str, value: Any, cast: str = "") -> Callable[[RunShape], list[Statement]]:
    def build(run: RunShape) -> list[Statement]:
        query = sql.SQL(
            "UPDATE aos_trace_steps SET {} = %s{} WHERE run_id = %s AND step_index = %s"
        )
        return [(query.format(sql.Identifier(column), sql.SQL(cast)), (value, run.run_id, TARGET))]

    return build


def _trace_update(assignments: str, *values: Any) -> Callable[[RunShape], list[Statement]]:
    def build(run: RunShape) -> list[Statement]:
        return [(f"UPDATE aos_traces SET {assignments} WHERE run_id = %s", (*values, run.run_id))]

    return build


def _delete_middle(run: RunShape) -> list[Statement]:
    return [
        (
            "DELETE FROM aos_trace_steps WHERE run_id = %s AND step_index = %s",
            (run.run_id, TARGET),
        )
    ]


def _cut_tail_and_reseal(run: RunShape) -> list[Statement]:
    shorter = run.chain(length=3)
    return [
        ("DELETE FROM aos_trace_steps WHERE run_id = %s AND step_index >= 3", (run.run_id,)),
        (
            "UPDATE aos_traces SET chain_length = 3, root_hash = %s, seal_hash = %s"
            " WHERE run_id = %s",
            (shorter.root_hash, shorter.root_hash, run.run_id),
        ),
    ]


def _append_extra(run: RunShape) -> list[Statement]:
    chain = run.chain()
    ids = {"tenant_id": run.tenant_id, "run_id": run.run_id}
    extra = step_record(**ids, step_index=STEPS, **run.step_fields(STEPS - 1))
    digest = step_hash(bytes.fromhex(chain.head_hash), canonicalize(extra)).hex()
    return [
        (
            "INSERT INTO aos_trace_steps (trace_id, run_id, tenant_id, step_index, skill_id,"
            " skill_name, params, status, outcome_category, outcome_code, outcome_data,"
            ' cost_cents, duration_ms, retry_count, "timestamp", prev_hash, step_hash)'
            " SELECT trace_id, run_id, tenant_id, %s, skill_id, skill_name, params, status,"
            " outcome_category, outcome_code, outcome_data, cost_cents, duration_ms,"
            ' retry_count, "timestamp", step_hash, %s FROM aos_trace_steps'
            " WHERE run_id = %s AND step_index = %s",
            (STEPS, digest, run.run_id, STEPS - 1),
        )
    ]


def _swap(run: RunShape) -> list[Statement]:
    move = "UPDATE aos_trace_steps SET step_index = %s WHERE run_id = %s AND step_index = %s"
    return [(move, (-1, run.run_id, 1)), (move, (1, run.run_id, 2)), (move, (2, run.run_id, -1))]


def _move_from_other_tenant(run: RunShape) -> list[Statement]:
    donor = f"donor-{run.run_id}"
    return [
        _delete_middle(run)[0],
        (
            "UPDATE aos_trace_steps SET trace_id = %s, run_id = %s, tenant_id = %s"
            " WHERE run_id = %s AND step_index = %s",
            (f"trace-{run.run_id}", run.run_id, run.tenant_id, donor, TARGET),
        ),
    ]


def _rewrite_with_recomputed_hashes(run: RunShape) -> list[Statement]:
    forged = run.chain({1: {"outcome_data": {"forged": True}}})
    rows = [
        (i, forged.genesis_hash if i == 0 else forged.step_hashes[i - 1], forged.step_hashes[i])
        for i in range(STEPS)
    ]
    values = sql.SQL(", ").join(sql.SQL("(%s, %s, %s)") for _ in rows)
    return [
        (
            "UPDATE aos_trace_steps SET outcome_data = %s::jsonb"
            " WHERE run_id = %s AND step_index = 1",
            ('{"forged": true}', run.run_id),
        ),
        (
            sql.SQL(
                "UPDATE aos_trace_steps s SET prev_hash = v.prev, step_hash = v.hash"
                " FROM (VALUES {}) AS v(i, prev, hash) WHERE s.run_id = %s AND s.step_index = v.i"
            ).format(values),
            (*[x for row in rows for x in row], run.run_id),
        ),
        (
            "UPDATE aos_traces SET root_hash = %s, seal_hash = %s WHERE run_id = %s",
            (forged.root_hash, forged.root_hash, run.run_id),
        ),
    ]


def _clear_seal(run: RunShape) -> list[Statement]:
    return [
        (
            "UPDATE aos_traces SET root_hash = NULL, seal_hash = NULL, chain_length = NULL,"
            " completed_at = NULL, status = 'running' WHERE run_id = %s",
            (run.run_id,),
        )
    ]


@dataclass(frozen=True)
class Case:
    name: str
    tamper: Callable[[RunShape], list[Statement]]
    rowcounts: list[int]
    location: str
    step: int | None = None
    # Which rule catches it: "chain" (1-4) or "ledger" (5, no checkpoint needed)
    caught_by: str = "chain"
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


_STEP_FIELDS: list[tuple[str, Any, str]] = [
    ("skill_id", "skill.forged", ""),
    ("skill_name", "forged", ""),
    ("params", '{"url": "https://attacker.invalid"}', "::jsonb"),
    ("status", "failed", ""),
    ("outcome_category", "error", ""),
    ("outcome_code", "500", ""),
    ("outcome_data", '{"bytes": 0}', "::jsonb"),
    ("cost_cents", 0.01, ""),
    ("duration_ms", 1.0, ""),
    ("retry_count", 3, ""),
    ("timestamp", "2030-01-01T00:00:00Z", "::timestamptz"),
]

CASES = [
    *(
        Case(f"step-field-{column}", _step_update(column, value, cast), [1], "step", TARGET)
        for column, value, cast in _STEP_FIELDS
    ),
    Case("step-field-step_index", _step_update("step_index", 9), [1], "step", TARGET),
    Case("hash-only-step_hash", _step_update("step_hash", "0" * 64), [1], "step", TARGET),
    Case("hash-only-prev_hash", _step_update("prev_hash", "0" * 64), [1], "step", TARGET),
    Case("hash-only-genesis_hash", _trace_update("genesis_hash = %s", "0" * 64), [1], "header"),
    Case("hash-only-root_hash", _trace_update("root_hash = %s", "0" * 64), [1], "seal"),
    Case("header-agent_id", _trace_update("agent_id = %s", "agent-evil"), [1], "header"),
    Case("header-plan_id", _trace_update("plan_id = %s", "plan-evil"), [1], "header"),
    Case("header-plan", _trace_update("plan = %s::jsonb", '{"goal": "x"}'), [1], "header"),
    Case(
        "header-started_at",
        _trace_update("started_at = %s::timestamptz", "2020-01-01T00:00:00Z"),
        [1],
        "header",
    ),
    Case("seal-status", _trace_update("status = %s", "failed"), [1], "seal"),
    Case(
        "seal-completed_at",
        _trace_update("completed_at = %s::timestamptz", "2031-01-01T00:00:00Z"),
        [1],
        "seal",
    ),
    Case("seal-chain_length", _trace_update("chain_length = %s", STEPS - 1), [1], "seal"),
    Case("step-deleted-in-the-middle", _delete_middle, [1], "step", TARGET),
    Case(
        "tail-cut-seal-rewritten",
        _cut_tail_and_reseal,
        [2, 1],
        "ledger",
        caught_by="ledger",
        reason="root_hash mismatch",
    ),
    Case("extra-step-inserted", _append_extra, [1], "step", STEPS),
    Case("two-steps-swapped", _swap, [1, 1, 1], "step", 1),
    Case("step-moved-from-another-tenant", _move_from_other_tenant, [1, 1], "step", TARGET),
    Case(
        "whole-run-rewritten-hashes-recomputed",
        _rewrite_with_recomputed_hashes,
        [1, STEPS, 1],
        "ledger",
        caught_by="ledger",
        reason="root_hash mismatch",
    ),
    Case(
        "seal-columns-cleared",
        _clear_seal,
        [1],
        "ledger",
        caught_by="ledger",
        reason="seal columns are cleared",
    ),
]


@pytest.fixture(scope="module")
def shared_store(pg_server: LocalPostgres) -> Iterator[DatabaseUrl]:
    """One migrated database for the cases that touch a single run (each its own run)."""
    name = f"tamper_{uuid.uuid4().hex[:12]}"
    url = migrated_copy(pg_server, name)
    yield url
    pg_server.drop_database(name)


# Each case is proved three ways: by the default coordinator (one in-process stream), the
# same reading through a joined connection (what a long run does), and by segment workers.
# With STEPS = 5 and 3 workers the ranges are [..1), [1, 3), [3, ..): TARGET sits inside the
# middle segment, and a deleted or moved row changes the segment borders.
PATHS: dict[str, Callable[[], dict[str, Any]]] = {
    "stream": lambda: {},
    # In process, the lines read through a second connection joining the snapshot.
    # (a summary limit: the rows after it take the compiled walk, which this reading is for).
    "stream-joined": lambda: {
        "coordinator": RunProofCoordinator(sync_read_min_steps=1),
        "step_summary_limit": 2,
    },
    "segments": lambda: {
        "coordinator": RunProofCoordinator(workers=3, parallel_min_steps=1),
        "step_summary_limit": 0,  # a small limit: the segment path is taken
    },
}


async def _no_in_process_stream(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the segments path proved the run in process")


# The segment path starts 3 worker processes per proof: with the whole suite only.
@pytest.mark.parametrize("path", slow_after(PATHS))
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_tamper_is_detected_at_the_first_bad_place(
    shared_store: DatabaseUrl, case: Case, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if path == "segments":
        monkeypatch.setattr(coordinator_module, "prove_trace", _no_in_process_stream)
    joined: list[str] = []
    read_joined = stream_module._read_joined
    monkeypatch.setattr(
        stream_module,
        "_read_joined",
        lambda *args: joined.append(args[2].trace_id) or read_joined(*args),
    )
    run_id = f"run-{case.name}-{path}"
    record_run(shared_store, TENANT, run_id, steps=STEPS, chain_format=1)
    record_run(shared_store, "tenant-other", f"donor-{run_id}", steps=STEPS, chain_format=1)
    run = RunShape.read(shared_store, TENANT, run_id)
    stored_root = one(
        shared_store, "SELECT root_hash FROM aos_traces WHERE run_id = %s", (run.run_id,)
    )
    assert run.chain().root_hash == stored_root  # the attacker's arithmetic is the recorder's
    before = prove(shared_store, TENANT, run.run_id, **PATHS[path]())
    assert before.integrity.verification_status == "VERIFIED"
    assert before.steps_read == STEPS
    # The joined reader is the compiled walk's (proof/stream.py): taken where it is built.
    expected = [run.header["trace_id"]] if path == "stream-joined" and native_enabled() else []
    assert joined == expected

    touched = tamper(shared_store, *case.tamper(run))

    assert touched == case.rowcounts
    integrity = prove(shared_store, TENANT, run.run_id, **PATHS[path]()).integrity
    assert integrity.verification_status == "FAILED"
    failure = integrity.failure
    assert failure is not None
    assert (failure.location, failure.step_index) == (case.location, case.step), failure.reason
    assert failure.rule == 5 if case.caught_by == "ledger" else failure.rule in (1, 2, 3, 4)
    assert case.reason in failure.reason


def test_whole_run_deleted_is_named_by_the_ledger_audit(shared_store: DatabaseUrl) -> None:
    run_id = "run-deleted"
    record_run(shared_store, TENANT, run_id, steps=STEPS)

    touched = tamper(shared_store, ("DELETE FROM aos_traces WHERE run_id = %s", (run_id,)))

    assert touched == [1]
    assert (
        one(shared_store, "SELECT count(*) FROM aos_trace_steps WHERE run_id = %s", (run_id,)) == 0
    )
    assert prove(shared_store, TENANT, run_id).integrity.failure_reason == "No trace found for run"
    problems = [p for p in audit(shared_store).problems if repr(run_id) in p]
    assert len(problems) == 1 and "gone from aos_traces (deleted)" in problems[0]
    assert problems[0].startswith("ledger entry ")


# --- rows only the signed checkpoint catches: each in its own database -------------------


@pytest.fixture
def three_runs(store: DatabaseUrl, checkpoint_env: Any) -> DatabaseUrl:
    for run_id in ("run-1", "run-2", "run-3"):
        record_run(store, TENANT, run_id, steps=STEPS, chain_format=1)
    return store


def test_ledger_rolled_back_is_caught_only_by_the_checkpoint(
    three_runs: DatabaseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_checkpoint(three_runs)
    # A restore of the database to before run-3: its trace, steps and ledger entry are gone.
    touched = tamper(
        three_runs,
        ("DELETE FROM aos_traces WHERE run_id = %s", ("run-3",)),
        ("DELETE FROM run_proof_ledger WHERE run_id = %s", ("run-3",)),
    )

    assert touched == [1, 1]
    rolled_back = [p for p in audit(three_runs).problems if "rolled back" in p]
    assert len(rolled_back) == 1 and "the ledger has 2 entries" in rolled_back[0]
    assert prove(three_runs, TENANT, "run-3").integrity.failure_reason == "No trace found for run"
    monkeypatch.delenv("RUN_PROOF_CHECKPOINT_DIR")
    assert audit(three_runs).problems == []  # without the checkpoint nothing is amiss


def test_ledger_entry_rewritten_to_match_a_rewritten_run_is_caught_only_by_the_checkpoint(
    three_runs: DatabaseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    signed_root = make_checkpoint(three_runs).signed.checkpoint.root.hex()
    run = RunShape.read(three_runs, TENANT, "run-2")
    # A proof before the change: the signed tree is rebuilt once and then remembered.
    assert prove(three_runs, TENANT, "run-2").integrity.verification_status == "VERIFIED"
    forged_root = run.chain({1: {"outcome_data": {"forged": True}}}).root_hash

    touched = tamper(
        three_runs,
        *_rewrite_with_recomputed_hashes(run),
        (
            "UPDATE run_proof_ledger SET root_hash = %s, leaf_hash = run_proof_ledger_leaf("
            "kind, tenant_id, run_id, trace_id, chain_length, %s, recorded_at)"
            " WHERE run_id = %s",
            (forged_root, forged_root, run.run_id),
        ),
    )

    assert touched == [1, STEPS, 1, 1]
    problems = audit(three_runs).problems
    assert len(problems) == 1 and "no longer hash to the root signed" in problems[0]
    assert f"the checkpoint holds {signed_root})" in problems[0]  # and the recomputed one
    integrity = prove(three_runs, TENANT, "run-2").integrity
    assert integrity.verification_status == "FAILED"
    assert integrity.failure is not None and integrity.failure.location == "ledger"
    assert "is not the entry signed at index 1" in integrity.failure_reason
    # Recomputed from the entry as it is now (expected) against the leaf signed (found).
    failure = integrity.failure
    assert failure.expected is not None and failure.found not in (None, failure.expected)
    assert (
        f"(recomputed {failure.expected}, the signed tree holds {failure.found})"
        in integrity.failure_reason
    )
    # Without the checkpoint, rules 1-5 all hold: this row needs the signed checkpoint.
    monkeypatch.delenv("RUN_PROOF_CHECKPOINT_DIR")
    assert prove(three_runs, TENANT, "run-2").integrity.verification_status == "VERIFIED"
    assert audit(three_runs).problems == []


def test_run_and_entry_erased_and_entries_renumbered_is_caught_only_by_the_checkpoint(
    three_runs: DatabaseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_checkpoint(three_runs)

    touched = tamper(
        three_runs,
        ("DELETE FROM aos_traces WHERE run_id = %s", ("run-2",)),
        ("DELETE FROM run_proof_ledger WHERE run_id = %s", ("run-2",)),
        ("UPDATE run_proof_ledger SET seq = seq - 1 WHERE seq > 2", ()),
    )

    assert touched == [1, 1, 1]
    problems = audit(three_runs).problems
    assert len(problems) == 1 and "rolled back" in problems[0]
    monkeypatch.delenv("RUN_PROOF_CHECKPOINT_DIR")
    assert audit(three_runs).problems == []
    assert prove(three_runs, TENANT, "run-3").integrity.verification_status == "VERIFIED"
