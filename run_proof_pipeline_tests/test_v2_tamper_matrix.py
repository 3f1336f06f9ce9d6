"""The tamper matrix of format v2 (docs/hash-chain-v2.md "Verification"): runs inserted with
plain SQL and chained by the database, then edited as the table owner with the store's
guards off (test_ledger_support.tamper, as test_tamper_matrix.py does for v1); every covered
header, step and seal field, every hash and chain column, and the row-level attacks are
FAILED at the first bad place, naming it.

Writes that need no owner power (a step inserted out of order, a gap, a step after the seal)
go through the ordinary INSERT path: stored without error, never VERIFIED.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql

from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.integrity.canonical_v2 import parse_stored_json_v2
from run_proof_pipeline.integrity.records_v2 import (
    HEADER_V2_FIELDS,
    SEAL_V2_FIELDS,
    STEP_V2_FIELDS,
    header_canonical_v2,
    seal_canonical_v2,
    step_canonical_v2,
)
from run_proof_pipeline.plan.coordinator_checks.fixtures import migrated_copy
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.stores import prove
from run_proof_pipeline_tests.test_ledger_support import Statement, tamper
from run_proof_pipeline_tests.test_v2_proof import (
    SEGMENTS,
    TENANT,
    add_steps,
    complete_v2,
    start_v2,
    trace_id_of,
    v2_run,
)

STEPS = 5
TARGET = 2  # the step most cases touch

Build = Callable[[str], list[Statement]]


def _trace_set(column: str, value: Any, cast: str = "") -> Build:
    def build(run_id: str) -> list[Statement]:
        query = sql.SQL("UPDATE aos_traces SET {} = %s{} WHERE run_id = %s").format(
            sql.Identifier(column), sql.SQL(cast)
        )
        return [(query, (value, run_id))]

    return build


def _step_set(column: str, value: Any, cast: str = "", index: int = TARGET) -> Build:
    def build(run_id: str) -> list[Statement]:
        query = sql.SQL(
            "UPDATE aos_trace_steps SET {} = %s{} WHERE trace_id = %s AND step_index = %s"
        ).format(sql.Identifier(column), sql.SQL(cast))
        return [(query, (value, trace_id_of(run_id), index))]

    return build


# A new value for every covered column, of the column's type (docs/hash-chain-v2.md
# "Records"); tenant_id, run_id and trace_id are the run's identity: cases of their own.
HEADER_EDITS: dict[str, tuple[Any, str]] = {
    "agent_id": ("agent-evil", ""),
    "plan_id": ("plan-evil", ""),
    "plan": ('{"goal": "steal"}', "::jsonb"),
    "started_at": ("2020-01-01T00:00:00Z", "::timestamptz"),
    "created_at": ("2020-01-01T00:00:00Z", "::timestamptz"),
    "correlation_id": ("corr-evil", ""),
    "seed": (8, ""),
    "frozen_timestamp": ("2030-01-01", ""),
    "plan_hash": ("f" * 64, ""),
    "schema_version": ("9.9", ""),
    "trace": ('{"steps": [{"forged": true}]}', "::jsonb"),
    "stored_by": ("evil", ""),
    "checksum": ("c" * 64, ""),
    "incident_id": ("incident-evil", ""),
    "is_synthetic": (True, ""),
    "synthetic_scenario_id": ("scenario-evil", ""),
}
# aos_root_hash is AOS's root_hash column (docs/hash-chain-v2.md "Records").
HEADER_COLUMN = {name: name for name in HEADER_EDITS} | {"aos_root_hash": "root_hash"}
HEADER_EDITS["aos_root_hash"] = ("forged-root", "")

STEP_EDITS: dict[str, tuple[Any, str]] = {
    "skill_id": ("skill.forged", ""),
    "skill_name": ("forged", ""),
    "params": ('{"url": "https://attacker.invalid"}', "::jsonb"),
    "status": ("failed", ""),
    "outcome_category": ("error", ""),
    "outcome_code": ("500", ""),
    "outcome_data": ('{"bytes": 0}', "::jsonb"),
    "cost_cents": (0.01, ""),
    "duration_ms": (1.0, ""),
    "retry_count": (3, ""),
    "timestamp": ("2030-01-01T00:00:00Z", "::timestamptz"),
    "input_hash": ("i" * 64, ""),
    "output_hash": ("o" * 64, ""),
    "rng_state_before": ("rng-evil", ""),
    "idempotency_key": ("key-evil", ""),
    "replay_behavior": ("skip", ""),
    "source": ("forged-source", ""),
    "level": ("DEBUG", ""),
    "is_synthetic": (True, ""),
    "synthetic_scenario_id": ("scenario-evil", ""),
}
SEAL_EDITS: dict[str, tuple[Any, str]] = {
    "status": ("failed", ""),
    "completed_at": ("2031-01-01T00:00:00Z", "::timestamptz"),
    "chain_length": (STEPS - 1, ""),
    "metadata": ('{"total_cost_cents": 0}', "::jsonb"),
}


def test_the_matrix_covers_every_field_of_the_format() -> None:
    """Every record field of docs/hash-chain-v2.md has its edit case below."""
    identity = {"tenant_id", "run_id", "trace_id"}
    assert set(HEADER_V2_FIELDS) == set(HEADER_EDITS) | identity
    assert set(STEP_V2_FIELDS) == set(STEP_EDITS) | identity | {"step_index"}
    assert set(SEAL_V2_FIELDS) == set(SEAL_EDITS) | identity


@dataclass(frozen=True)
class Case:
    name: str
    tamper: Build
    location: str
    step: int | None = None
    says: str = ""  # a part of the failure's reason
    rule: int | None = None
    # The ids the run is proved by after the change, when the change moved it.
    tenant_id: str = TENANT
    run_id: str | None = None


def _moved_trace_id(run_id: str) -> list[Statement]:
    """trace_id of the trace and its steps, as one owner's edit (FK checks off)."""
    old, new = trace_id_of(run_id), f"{trace_id_of(run_id)}-moved"
    return [
        ("SET LOCAL session_replication_role = replica", ()),
        ("UPDATE aos_traces SET trace_id = %s WHERE trace_id = %s", (new, old)),
        ("UPDATE aos_trace_steps SET trace_id = %s WHERE trace_id = %s", (new, old)),
    ]


def _delete_step(run_id: str) -> list[Statement]:
    return [
        (
            "DELETE FROM aos_trace_steps WHERE trace_id = %s AND step_index = %s",
            (trace_id_of(run_id), TARGET),
        )
    ]


def _swap(run_id: str) -> list[Statement]:
    move = "UPDATE aos_trace_steps SET step_index = %s WHERE trace_id = %s AND step_index = %s"
    trace_id = trace_id_of(run_id)
    return [(move, (-1, trace_id, 1)), (move, (1, trace_id, 2)), (move, (2, trace_id, -1))]


def _move_step_out(run_id: str) -> list[Statement]:
    """The step row moved to another (empty) trace: this run loses it."""
    donor = f"{run_id}-donor"
    return [
        (
            "UPDATE aos_trace_steps SET trace_id = %s WHERE trace_id = %s AND step_index = %s",
            (trace_id_of(donor), trace_id_of(run_id), TARGET),
        )
    ]


CASES: list[Case] = [
    *(
        Case(
            f"header-{field}",
            _trace_set(HEADER_COLUMN[field], *HEADER_EDITS[field]),
            "header",
            says="genesis_hash mismatch",
        )
        for field in HEADER_EDITS
    ),
    Case(
        "header-tenant_id",
        _trace_set("tenant_id", "tenant-evil"),
        "header",
        says="genesis_hash mismatch",
        tenant_id="tenant-evil",
    ),
    Case(
        "header-run_id",
        _trace_set("run_id", "RUN"),
        "header",
        says="genesis_hash mismatch",
        run_id="RUN",
    ),
    Case("header-trace_id", _moved_trace_id, "header", says="genesis_hash mismatch"),
    *(
        Case(f"step-{field}", _step_set(field, *STEP_EDITS[field]), "step", TARGET, "step_hash")
        for field in STEP_EDITS
    ),
    Case("step-step_index", _step_set("step_index", 9), "step", TARGET, "step_index gap"),
    Case("step-trace_id", _move_step_out, "step", TARGET, "step_index gap"),
    *(
        Case(f"seal-{field}", _trace_set(field, *SEAL_EDITS[field]), "seal", None, "seal_hash")
        for field in SEAL_EDITS
        if field != "chain_length"
    ),
    Case(
        "seal-chain_length",
        _trace_set("chain_length", STEPS - 1),
        "seal",
        None,
        "chain_length mismatch",
    ),
    Case(
        "chain-chain_position",
        _step_set("chain_position", 7),
        "step",
        TARGET,
        "inserted out of order (chained at position 7, expected 2)",
        rule=2,
    ),
    Case(
        "chain-chain_position-null",
        _step_set("chain_position", None),
        "step",
        TARGET,
        "no chain position",
        rule=2,
    ),
    Case("chain-prev_hash", _step_set("prev_hash", "0" * 64), "step", TARGET, "prev_hash"),
    Case("chain-step_hash", _step_set("step_hash", "0" * 64), "step", TARGET, "step_hash"),
    Case("chain-genesis_hash", _trace_set("genesis_hash", "0" * 64), "header", None, "genesis"),
    Case("chain-seal_hash", _trace_set("seal_hash", "0" * 64), "seal", None, "seal_hash"),
    Case("row-step-deleted", _delete_step, "step", TARGET, "step_index gap"),
    Case(
        "row-two-steps-swapped",
        _swap,
        "step",
        1,
        "inserted out of order (chained at position 2, expected 1)",
        rule=2,
    ),
]


@pytest.fixture(scope="module")
def matrix_store(pg_server: LocalPostgres) -> Iterator[DatabaseUrl]:
    name = f"v2tamper_{uuid.uuid4().hex[:12]}"
    url = migrated_copy(pg_server, name)
    yield url
    pg_server.drop_database(name)


def _failed_at(
    url: DatabaseUrl,
    tenant_id: str,
    run_id: str,
    location: str,
    step: int | None,
    says: str,
    **kwargs: Any,
) -> Any:
    integrity = prove(url, tenant_id, run_id, **kwargs).integrity
    assert integrity.verification_status == "FAILED", integrity
    failure = integrity.failure
    assert failure is not None
    assert (failure.location, failure.step_index) == (location, step), failure.reason
    assert says in failure.reason, failure.reason
    return failure


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_owner_edit_of_a_v2_run_fails_at_the_first_bad_place(
    matrix_store: DatabaseUrl, case: Case
) -> None:
    run_id = f"m-{case.name}"
    v2_run(matrix_store, run_id, STEPS)
    start_v2(matrix_store, f"{run_id}-donor")  # an empty trace a step can be moved to
    assert prove(matrix_store, TENANT, run_id).integrity.verification_status == "VERIFIED"

    touched = tamper(matrix_store, *case.tamper(run_id))

    assert all(count != 0 for count in touched), touched  # every statement hit its row
    failure = _failed_at(
        matrix_store,
        case.tenant_id,
        case.run_id or run_id,
        case.location,
        case.step,
        case.says,
    )
    assert failure.rule == (case.rule or {"header": 1, "step": 3, "seal": 4}[case.location]) or (
        "gap" in case.says and failure.rule == 2
    )


# Segment workers carry the same checks: one case of each kind through them.
SEGMENT_CASES = [
    c
    for c in CASES
    if c.name
    in {
        "header-trace",
        "step-params",
        "chain-chain_position",
        "row-two-steps-swapped",
        "seal-metadata",
        "row-step-deleted",
    }
]


@pytest.mark.slow
@pytest.mark.parametrize("case", SEGMENT_CASES, ids=[c.name for c in SEGMENT_CASES])
def test_segment_workers_fail_v2_edits_at_the_same_place(
    matrix_store: DatabaseUrl, case: Case
) -> None:
    run_id = f"s-{case.name}"
    v2_run(matrix_store, run_id, STEPS)
    start_v2(matrix_store, f"{run_id}-donor")
    tamper(matrix_store, *case.tamper(run_id))
    _failed_at(matrix_store, TENANT, run_id, case.location, case.step, case.says, **SEGMENTS)


# --- recomputed hashes: rules 1-4 hold, the ledger (rule 5) does not -----------------------


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _exact(text: str | None) -> Any:
    return None if text is None else parse_stored_json_v2(text)


_HEADER_SQL = """
SELECT tenant_id, run_id, trace_id, agent_id, plan_id, plan::text, started_at, created_at,
       correlation_id, seed, frozen_timestamp, plan_hash, schema_version, trace::text,
       stored_by, checksum, incident_id, is_synthetic, synthetic_scenario_id,
       root_hash AS aos_root_hash, status, completed_at, metadata::text
FROM aos_traces WHERE run_id = %s
"""
_STEPS_SQL = """
SELECT trace_id, step_index, skill_id, skill_name, params::text, status, outcome_category,
       outcome_code, outcome_data::text, cost_cents, duration_ms, retry_count, "timestamp",
       input_hash, output_hash, rng_state_before, idempotency_key, replay_behavior, source,
       level, is_synthetic, synthetic_scenario_id, prev_hash, step_hash
FROM aos_trace_steps WHERE trace_id = %s ORDER BY step_index
"""


@dataclass(frozen=True)
class Forged:
    genesis: str
    steps: list[tuple[int, str, str]]  # (step_index, prev_hash, step_hash)
    seal_hash: str
    chain_length: int


def recompute(url: DatabaseUrl, run_id: str, *, extra_step: bool = False) -> Forged:
    """The attacker's arithmetic: the whole chain recomputed from the rows as they stand
    (records_v2), optionally with one more step (a copy of the last at the next index)."""
    with psycopg.connect(url.libpq()) as conn:
        cursor = conn.execute(_HEADER_SQL, (run_id,))
        names = [d.name for d in cursor.description or ()]
        header = dict(zip(names, cursor.fetchone() or (), strict=True))
        cursor = conn.execute(_STEPS_SQL, (header["trace_id"],))
        step_names = [d.name for d in cursor.description or ()]
        rows = [dict(zip(step_names, r, strict=True)) for r in cursor.fetchall()]
    ids = {k: header[k] for k in ("tenant_id", "run_id", "trace_id")}
    status, completed_at, metadata = header.pop("status"), header.pop("completed_at"), None
    metadata = _exact(header.pop("metadata"))
    header["plan"], header["trace"] = _exact(header["plan"]), _exact(header["trace"])
    genesis = _h(header_canonical_v2(**header))
    if extra_step:
        rows.append({**rows[-1], "step_index": rows[-1]["step_index"] + 1})
    prev, steps = genesis, []
    for row in rows:
        fields = {k: v for k, v in row.items() if k not in ("prev_hash", "step_hash")}
        fields["params"], fields["outcome_data"] = (
            _exact(fields["params"]),
            _exact(fields["outcome_data"]),
        )
        digest = _h(prev + step_canonical_v2(**{**fields, **ids}))
        steps.append((row["step_index"], prev.hex(), digest.hex()))
        prev = digest
    seal = seal_canonical_v2(
        **ids,
        status=status,
        completed_at=completed_at,
        chain_length=len(rows),
        metadata=metadata,
    )
    return Forged(genesis.hex(), steps, _h(prev + seal).hex(), len(rows))


def _rewrite(run_id: str, forged: Forged) -> list[Statement]:
    trace_id = trace_id_of(run_id)
    statements: list[Statement] = [
        (
            "UPDATE aos_trace_steps SET prev_hash = %s, step_hash = %s, chain_position = %s"
            " WHERE trace_id = %s AND step_index = %s",
            (prev, digest, index, trace_id, index),
        )
        for index, prev, digest in forged.steps
    ]
    statements.append(
        (
            "UPDATE aos_traces SET genesis_hash = %s, seal_hash = %s, chain_length = %s"
            " WHERE trace_id = %s",
            (forged.genesis, forged.seal_hash, forged.chain_length, trace_id),
        )
    )
    return statements


def test_the_attackers_arithmetic_is_the_databases(matrix_store: DatabaseUrl) -> None:
    """recompute() on an untouched run gives exactly the stored hashes: so the cases below
    that pass rules 1-4 do so because the arithmetic is right, not by accident."""
    run_id = "arith"
    v2_run(matrix_store, run_id, STEPS)
    forged = recompute(matrix_store, run_id)
    with psycopg.connect(matrix_store.libpq()) as conn:
        stored_steps = conn.execute(
            "SELECT step_index, prev_hash, step_hash FROM aos_trace_steps WHERE trace_id = %s"
            " ORDER BY step_index",
            (trace_id_of(run_id),),
        ).fetchall()
        genesis, seal_hash = conn.execute(
            "SELECT genesis_hash, seal_hash FROM aos_traces WHERE run_id = %s", (run_id,)
        ).fetchone() or (None, None)
    assert [tuple(s) for s in stored_steps] == forged.steps
    assert (genesis, seal_hash) == (forged.genesis, forged.seal_hash)


def test_a_forged_step_with_recomputed_hashes_is_caught_by_the_ledger(
    matrix_store: DatabaseUrl,
) -> None:
    run_id = "forged-extra"
    v2_run(matrix_store, run_id, STEPS)
    sealed = recompute(matrix_store, run_id).seal_hash  # what the ledger recorded
    forged = recompute(matrix_store, run_id, extra_step=True)
    index, prev, digest = forged.steps[-1]
    insert = (
        "INSERT INTO aos_trace_steps (trace_id, run_id, tenant_id, step_index, skill_id,"
        " skill_name, params, status, outcome_category, outcome_code, outcome_data, cost_cents,"
        ' duration_ms, retry_count, "timestamp", input_hash, output_hash, rng_state_before,'
        " idempotency_key, replay_behavior, source, level, is_synthetic, synthetic_scenario_id,"
        " chain_position, prev_hash, step_hash)"
        " SELECT trace_id, run_id, tenant_id, %s, skill_id, skill_name, params, status,"
        " outcome_category, outcome_code, outcome_data, cost_cents, duration_ms, retry_count,"
        ' "timestamp", input_hash, output_hash, rng_state_before, idempotency_key,'
        " replay_behavior, source, level, is_synthetic, synthetic_scenario_id, %s, %s, %s"
        " FROM aos_trace_steps WHERE trace_id = %s AND step_index = %s"
    )
    touched = tamper(
        matrix_store,
        (insert, (index, index, prev, digest, trace_id_of(run_id), index - 1)),
        (
            "UPDATE aos_traces SET seal_hash = %s, chain_length = %s WHERE run_id = %s",
            (forged.seal_hash, forged.chain_length, run_id),
        ),
    )

    assert touched == [1, 1]
    failure = _failed_at(matrix_store, TENANT, run_id, "ledger", None, "root_hash mismatch")
    assert failure.rule == 5
    # Rules 1-4 recomputed the forged seal (expected); the ledger holds the sealed one (found).
    assert (failure.expected, failure.found) == (forged.seal_hash, sealed)


def test_a_run_rewritten_with_recomputed_hashes_is_caught_by_the_ledger(
    matrix_store: DatabaseUrl,
) -> None:
    run_id = "forged-rewrite"
    v2_run(matrix_store, run_id, STEPS)
    edit = (
        "UPDATE aos_trace_steps SET outcome_data = %s::jsonb WHERE trace_id = %s"
        " AND step_index = 1",
        ('{"forged": true}', trace_id_of(run_id)),
    )
    tamper(matrix_store, edit)
    forged = recompute(matrix_store, run_id)
    touched = tamper(matrix_store, *_rewrite(run_id, forged))

    assert touched == [1] * (STEPS + 1)
    for kwargs in ({}, SEGMENTS):
        failure = _failed_at(
            matrix_store, TENANT, run_id, "ledger", None, "root_hash mismatch", **kwargs
        )
        assert failure.rule == 5


# --- ordinary inserts that break the chain's order: stored, never VERIFIED ----------------


def test_a_step_inserted_out_of_order_is_named(matrix_store: DatabaseUrl) -> None:
    run_id = "order"
    start_v2(matrix_store, run_id)
    add_steps(matrix_store, run_id, [0, 2, 1, 3])  # no error for the writer
    complete_v2(matrix_store, run_id)
    for kwargs in ({}, SEGMENTS):
        failure = _failed_at(
            matrix_store,
            TENANT,
            run_id,
            "step",
            1,
            "inserted out of order (chained at position 2, expected 1)",
            **kwargs,
        )
        assert failure.rule == 2


def test_a_gap_is_named(matrix_store: DatabaseUrl) -> None:
    run_id = "gap"
    start_v2(matrix_store, run_id)
    add_steps(matrix_store, run_id, [0, 1, 3])
    complete_v2(matrix_store, run_id)
    _failed_at(matrix_store, TENANT, run_id, "step", 2, "step_index gap")
    # Still running, the same rows are no better than FAILED.
    run_id = "gap-running"
    start_v2(matrix_store, run_id)
    add_steps(matrix_store, run_id, [0, 1, 3])
    _failed_at(matrix_store, TENANT, run_id, "step", 2, "step_index gap")


def test_a_step_after_the_seal_is_named(matrix_store: DatabaseUrl) -> None:
    run_id = "late"
    v2_run(matrix_store, run_id, STEPS)
    add_steps(matrix_store, run_id, [STEPS])  # stored and chained on, no error

    with psycopg.connect(matrix_store.libpq()) as conn:
        count, chain_length = conn.execute(
            "SELECT (SELECT count(*) FROM aos_trace_steps WHERE trace_id = t.trace_id),"
            " t.chain_length FROM aos_traces t WHERE run_id = %s",
            (run_id,),
        ).fetchone() or (None, None)
    assert (count, chain_length) == (STEPS + 1, STEPS)
    for kwargs in ({}, SEGMENTS):
        _failed_at(
            matrix_store,
            TENANT,
            run_id,
            "step",
            STEPS,
            "extra step beyond the sealed chain",
            **kwargs,
        )
