"""Issue 12: JSON nested deeper than format v1 allows (docs/json-nesting.md).

The limit is MAX_JSON_DEPTH (128) levels for `plan`, `params` and `outcome_data`. Every case
sits at the border (128 accepted, 129 refused) or far beyond it (2,000 to 100,000 levels,
deeper than Python's own parser reads). The writer refuses and writes nothing; a value the
owner stores directly is FAILED at its step (or the header), named with its depth, by every
proof path: one stream, segment workers, the sweep and `run-proof verify` as a process.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import rfc8785

from run_proof_pipeline.coordinator import RunProofResult, get_run_proof_coordinator
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.integrity import (
    CanonicalizationError,
    canonicalize,
    compute_chain,
    header_record,
    seal_record,
    step_canonical_bytes,
    step_record,
)
from run_proof_pipeline.integrity.canonical import (
    MAX_JSON_DEPTH,
    UnrepresentableNesting,
    canonicalize_stored_json,
    json_depth,
    json_text_depth,
    parse_stored_json,
)
from run_proof_pipeline.integrity.vectors import (
    MAX_VECTORS_FILE_DEPTH,
    InvalidVectorsFile,
    check_vectors,
)
from run_proof_pipeline.plan.coordinator_checks.fixtures import migrated_copy
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import async_engine
from run_proof_pipeline.store.recorder import (
    InvalidRecord,
    StepAppend,
    TraceStart,
)
from run_proof_pipeline.store.step_rows import StepLineDecoder, StepRowDecoder
from run_proof_pipeline.sweep import SweepOptions, run_sweep
from run_proof_pipeline_tests.support.cli_process import CLI, run_process, verify_run
from run_proof_pipeline_tests.support.stores import BASE, make_step, prove, record_run, run
from run_proof_pipeline_tests.support.v1_writer import V1TraceWriter
from run_proof_pipeline_tests.test_ledger_support import one, tamper

LIMIT = MAX_JSON_DEPTH
TENANT = "tenant-n"
TENANT_DEEP_PLAN = "tenant-deep-plan"
STEPS = 4


def nested(depth: int, leaf: Any = 1) -> Any:
    """A value `depth` levels deep, arrays and objects taking turns (both count)."""
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def nested_text(depth: int) -> str:
    return "[" * depth + "]" * depth


def too_deep(field: str, depth: int) -> str:
    return (
        f"{field}: JSON nested {depth} levels deep, more than the {LIMIT} levels format v1"
        " allows (docs/json-nesting.md)"
    )


def step_failure(index: int, field: str, depth: int) -> str:
    return (
        f"step {index}: stored values cannot be hashed (step {index}: stored value is not"
        f" representable in format v1: {too_deep(field, depth)})"
    )


def header_failure(depth: int) -> str:
    return f"header: stored values cannot be hashed ({too_deep('plan', depth)})"


# --- the rule itself (no database) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ('"[[["', 0),
        ("[]", 1),
        ("{}", 1),
        ("[1, 2, {}]", 2),
        ('{"a": [1]}', 2),
        ('["]", "\\"[[", {"s": "}}}"}]', 2),
        ('{"s": "' + "[" * 200 + '"}', 1),
        (nested_text(LIMIT), LIMIT),
        (json.dumps(nested(LIMIT + 1)), LIMIT + 1),
    ],
)
def test_depth_counts_arrays_and_objects_never_brackets_in_strings(text: str, depth: int) -> None:
    assert json_text_depth(text) == depth
    assert json_text_depth(text.encode()) == depth
    assert json_depth(json.loads(text)) == depth


@pytest.mark.parametrize("strict", [True, False], ids=["write", "read"])
def test_canonicalize_takes_the_limit_and_refuses_one_level_more(strict: bool) -> None:
    at_limit = {"params": nested(LIMIT, 1.5), "v": 1}
    assert canonicalize(at_limit, strict=strict) == rfc8785.dumps(at_limit)

    for field in ("params", "outcome_data", "plan"):
        with pytest.raises(CanonicalizationError) as refused:
            canonicalize({field: nested(LIMIT + 1), "v": 1}, strict=strict)
        assert str(refused.value) == too_deep(field, LIMIT + 1)


def test_no_value_reaches_the_recursion_limit_or_depends_on_the_callers_stack() -> None:
    # Far beyond Python's recursion limit: refused by depth, not by a RecursionError.
    with pytest.raises(CanonicalizationError, match="JSON nested 100000 levels deep"):
        canonicalize({"params": nested(100_000)})
    # A value that contains itself has no depth (and used to hang the diagnosis walk).
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(CanonicalizationError, match="more than 100000 levels deep"):
        canonicalize({"params": looped})
    # The same bytes at the limit with little stack left to the encoder (two frames a
    # level): an astral key forces the pure-Python encoder, which recurses once per level.
    value = {"params": nested(LIMIT - 1, {"\U0001f600": 1, "a": 2.0})}
    expected = rfc8785.dumps(value)

    def at_depth(frames: int) -> bytes:
        return at_depth(frames - 1) if frames else canonicalize(value, strict=False)

    assert at_depth(sys.getrecursionlimit() - _stack_depth() - 2 * LIMIT) == expected


def _stack_depth() -> int:
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1  # type: ignore[assignment]
    return depth


def test_stored_text_beyond_the_limit_is_never_parsed() -> None:
    assert parse_stored_json(nested_text(LIMIT)) == json.loads(nested_text(LIMIT))
    assert canonicalize_stored_json(nested_text(LIMIT)) == nested_text(LIMIT).encode()
    for depth in (LIMIT + 1, 100_000):
        stored = parse_stored_json(nested_text(depth).encode())
        assert isinstance(stored, UnrepresentableNesting)
        assert stored.problem == too_deep("params", depth).removeprefix("params: ")
        with pytest.raises(CanonicalizationError) as refused:
            canonicalize_stored_json(nested_text(depth))
        assert str(refused.value) == stored.problem
        with pytest.raises(CanonicalizationError) as named:
            step_canonical_bytes(**_step_fields(params=stored))
        assert str(named.value) == too_deep("params", depth)


def _step_fields(**overrides: Any) -> dict[str, Any]:
    step = make_step(1).model_dump()
    step["timestamp"] = "2026-02-09T10:00:01.123456Z"
    return {"tenant_id": TENANT, "run_id": "run-x", "step_index": 1, **step, **overrides}


def _copy_row(params: str, outcome_data: str) -> tuple[str | None, ...]:
    """A step row as COPY sends it (text values), hashes left blank."""
    f = _step_fields()
    return (
        "1",
        TENANT,
        "run-x",
        f["skill_id"],
        f["skill_name"],
        params,
        f["status"],
        f["outcome_category"],
        f["outcome_code"],
        outcome_data,
        "0.5",
        "227.6",
        "0",
        "2026-02-09 10:00:01.123456+00",
        "0" * 64,
        "1" * 64,
    )


@pytest.mark.parametrize("field", ["params", "outcome_data"])
@pytest.mark.parametrize("depth", [LIMIT, LIMIT + 1, 5_000])
def test_both_step_decoders_take_the_limit_and_fail_one_level_more(field: str, depth: int) -> None:
    deep = nested_text(depth)
    row = _copy_row(deep if field == "params" else "{}", deep if field == "outcome_data" else "{}")
    line = "\t".join(row).encode() + b"\n"
    by_line, by_row = StepLineDecoder().decode(line), StepRowDecoder().decode(row)
    if depth <= LIMIT:
        payloads = {"params": {}, "outcome_data": {}, field: json.loads(deep)}
        expected = canonicalize(step_record(**_step_fields(**payloads)), strict=False)
        assert by_line.error is None and by_line.canonical == expected
        assert by_row.error is None and by_row.canonical == expected
        return
    for decoded in (by_line, by_row):
        assert decoded.canonical is None
        assert decoded.error == (
            f"step 1: stored value is not representable in format v1: {too_deep(field, depth)}"
        )
        # The summary shows the refusal instead of the value (it never parses it).
        shown = decoded.params if field == "params" else decoded.outcome_data
        assert isinstance(shown, UnrepresentableNesting)


# --- the writer -----------------------------------------------------------------------------


async def _append(url: DatabaseUrl, run_id: str, step: StepAppend) -> Any:
    engine = async_engine(url)
    try:
        return await V1TraceWriter(engine).append_step(TENANT, run_id, step)
    finally:
        await engine.dispose()


async def _start(url: DatabaseUrl, run_id: str, plan: Any, tenant_id: str = TENANT) -> None:
    engine = async_engine(url)
    try:
        await V1TraceWriter(engine).start_trace(
            TraceStart(tenant_id=tenant_id, run_id=run_id, plan=plan, started_at=BASE)
        )
    finally:
        await engine.dispose()


def _head(url: DatabaseUrl, run_id: str) -> tuple[int, str]:
    with psycopg.connect(url.libpq()) as conn:
        row = conn.execute(
            "SELECT count(*), (SELECT step_hash FROM aos_trace_steps WHERE run_id = %s"
            " ORDER BY step_index DESC LIMIT 1) FROM aos_trace_steps WHERE run_id = %s",
            (run_id, run_id),
        ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


@pytest.mark.parametrize(
    ("field", "depth"),
    [("params", LIMIT + 1), ("params", 300), ("params", 2_000), ("outcome_data", LIMIT + 1)],
)
def test_the_recorder_refuses_one_level_more_and_writes_nothing(
    store: DatabaseUrl, field: str, depth: int
) -> None:
    record_run(store, TENANT, "run-open", steps=1, seal=False, chain_format=1)
    before = _head(store, "run-open")

    with pytest.raises(InvalidRecord) as refused:
        run(_append(store, "run-open", make_step(1, **{field: nested(depth)})))

    assert str(refused.value) == f"step 1: {too_deep(field, depth)}"
    assert _head(store, "run-open") == before  # no row, the chain head unchanged
    # The chain goes on where it was: the next step is 1, linked to the old head.
    written = run(_append(store, "run-open", make_step(1, params=nested(LIMIT))))
    assert (written.step_index, written.prev_hash) == (1, before[1])


@pytest.mark.parametrize("depth", [LIMIT + 1, 2_000])
def test_the_recorder_refuses_a_deep_plan_and_writes_no_trace(
    store: DatabaseUrl, depth: int
) -> None:
    with pytest.raises(InvalidRecord) as refused:
        run(_start(store, "run-deep-plan", nested(depth)))

    assert str(refused.value) == f"trace header: {too_deep('plan', depth)}"
    assert one(store, "SELECT count(*) FROM aos_traces WHERE run_id = 'run-deep-plan'") == 0


# --- values the owner stores directly: every proof path --------------------------------------

AT_LIMIT, PARAMS_129, OUTCOME_5000, PLAN_129, PLAN_5000 = (
    "run-at-limit",
    "run-params-129",
    "run-outcome-5000",
    "run-plan-129",
    "run-plan-5000",
)
# run id -> (first bad, failure reason)
EXPECTED = {
    PARAMS_129: ("step 1", step_failure(1, "params", LIMIT + 1)),
    OUTCOME_5000: ("step 2", step_failure(2, "outcome_data", 5_000)),
    PLAN_129: ("header", header_failure(LIMIT + 1)),
}


async def _record_at_limit(url: DatabaseUrl) -> None:
    """A sealed run whose plan, params and outcome_data are exactly LIMIT levels deep."""
    engine = async_engine(url)
    try:
        recorder = V1TraceWriter(engine)
        await recorder.start_trace(
            TraceStart(tenant_id=TENANT, run_id=AT_LIMIT, plan=nested(LIMIT), started_at=BASE)
        )
        for index in range(STEPS):
            step = make_step(
                index,
                at=BASE + timedelta(seconds=index),
                params=nested(LIMIT, index),
                outcome_data=nested(LIMIT, "ok"),
            )
            await recorder.append_step(TENANT, AT_LIMIT, step)
        await recorder.seal(
            TENANT, AT_LIMIT, status="succeeded", completed_at=BASE + timedelta(hours=1)
        )
    finally:
        await engine.dispose()


_SET_PLAN = "UPDATE aos_traces SET plan = %s::jsonb WHERE run_id = %s"


@pytest.fixture(scope="module")
def nesting_store(pg_server: LocalPostgres) -> Iterator[DatabaseUrl]:
    name = f"nesting_{uuid.uuid4().hex[:12]}"
    url = migrated_copy(pg_server, name)
    run(_record_at_limit(url))
    for run_id in (PARAMS_129, OUTCOME_5000, PLAN_129):
        record_run(url, TENANT, run_id, steps=STEPS, chain_format=1)
    record_run(url, TENANT_DEEP_PLAN, PLAN_5000, steps=STEPS, chain_format=1)
    touched = tamper(
        url,
        (
            "UPDATE aos_trace_steps SET params = %s::jsonb WHERE run_id = %s AND step_index = 1",
            (json.dumps(nested(LIMIT + 1)), PARAMS_129),
        ),
        (
            "UPDATE aos_trace_steps SET outcome_data = %s::jsonb"
            " WHERE run_id = %s AND step_index = 2",
            (nested_text(5_000), OUTCOME_5000),
        ),
        ("UPDATE aos_traces SET plan = %s::jsonb WHERE run_id = %s", (nested_text(129), PLAN_129)),
        (
            "UPDATE aos_traces SET plan = %s::jsonb WHERE run_id = %s",
            (nested_text(5000), PLAN_5000),
        ),
    )
    assert touched == [1, 1, 1, 1]
    yield url
    pg_server.drop_database(name)


def _outcome(result: RunProofResult) -> tuple[str, str | None]:
    integrity = result.integrity
    return integrity.verification_status, integrity.failure_reason


@pytest.mark.parametrize("run_id", [AT_LIMIT, *EXPECTED])
def test_one_stream_fails_a_deep_value_where_it_is_stored(
    nesting_store: DatabaseUrl, run_id: str
) -> None:
    coordinator = get_run_proof_coordinator(workers=1)
    result = prove(nesting_store, TENANT, run_id, coordinator=coordinator)

    if run_id == AT_LIMIT:
        assert _outcome(result) == ("VERIFIED", None)
        return
    assert _outcome(result) == ("FAILED", EXPECTED[run_id][1])


@pytest.mark.parametrize("run_id", [AT_LIMIT, PARAMS_129, OUTCOME_5000])
def test_segment_workers_fail_a_deep_value_where_it_is_stored(
    nesting_store: DatabaseUrl, run_id: str
) -> None:
    coordinator = get_run_proof_coordinator(workers=2, parallel_min_steps=1)
    result = prove(
        nesting_store,
        TENANT,
        run_id,
        coordinator=coordinator,
        step_summary_limit=10,
        include_payloads=True,
    )

    assert result.segment_workers == 2
    result.model_dump_json()  # the summaries serialize (nothing deeper than the limit)
    if run_id == AT_LIMIT:
        assert _outcome(result) == ("VERIFIED", None)
        shown = [s.params for s in result.aos_trace_steps]
        assert shown == [nested(LIMIT, i) for i in range(STEPS)]
        return
    assert _outcome(result) == ("FAILED", EXPECTED[run_id][1])
    # Summaries up to the failing step; that step shows the refusal, not the value.
    bad = int(EXPECTED[run_id][0].removeprefix("step "))
    summary = result.aos_trace_steps[bad]
    shown = summary.params if run_id == PARAMS_129 else summary.outcome_data
    assert isinstance(shown, str) and shown.startswith("(not read: JSON nested ")


def test_the_sweep_lists_each_deep_run_at_its_first_bad_place(nesting_store: DatabaseUrl) -> None:
    report = run_sweep(nesting_store, SweepOptions(full=True, workers=1, tenant_id=TENANT))

    assert report.runs == 1 + len(EXPECTED) and report.verified == 1
    assert {f.run_id: (f.first_bad, f.reason) for f in report.failed} == EXPECTED


@pytest.mark.parametrize(
    "run_id",
    [PARAMS_129, pytest.param(OUTCOME_5000, marks=pytest.mark.slow), PLAN_129],
)
def test_run_proof_verify_exits_1_naming_the_field_without_a_traceback(
    nesting_store: DatabaseUrl, run_id: str
) -> None:
    completed = verify_run(nesting_store.libpq(), TENANT, run_id)

    assert completed.returncode == 1, completed.stderr
    assert "verification_status: FAILED" in completed.stdout
    assert f"failure_reason: {EXPECTED[run_id][1]}" in completed.stdout.splitlines()
    assert completed.stderr == ""


# psycopg's own json.loads cannot parse 5,000 levels; begin_snapshot() makes the connection
# read `plan` as the step columns are (store.snapshot.decode_json_as_stored).
def test_a_plan_deeper_than_python_parses_fails_the_header_in_one_stream(
    nesting_store: DatabaseUrl,
) -> None:
    coordinator = get_run_proof_coordinator(workers=1)
    result = prove(nesting_store, TENANT_DEEP_PLAN, PLAN_5000, coordinator=coordinator)
    assert _outcome(result) == ("FAILED", header_failure(5_000))


def test_a_plan_deeper_than_python_parses_fails_the_header_in_the_sweep(
    nesting_store: DatabaseUrl,
) -> None:
    options = SweepOptions(full=True, workers=1, tenant_id=TENANT_DEEP_PLAN)
    report = run_sweep(nesting_store, options)
    assert [(f.first_bad, f.reason) for f in report.failed] == [("header", header_failure(5_000))]


# --- `run-proof vectors` ---------------------------------------------------------------------


def _vectors_case(params_depth: int) -> dict[str, Any]:
    """A valid vectors case (expected values computed) whose step params nest this deep."""
    header = {
        "tenant_id": TENANT,
        "run_id": "run-v",
        "trace_id": "trace-v",
        "agent_id": None,
        "plan_id": None,
        "plan": None,
        "started_at": "2026-02-09T10:00:00.000000Z",
    }
    step = _step_fields(params=nested(params_depth))
    del step["tenant_id"], step["run_id"]
    step["step_index"] = 0
    seal = {"status": "succeeded", "completed_at": "2026-02-09T11:00:00.000000Z"}
    ids = {"tenant_id": TENANT, "run_id": "run-v"}
    chain = compute_chain(
        header_record(**header),
        [step_record(**ids, **step)],
        seal_record(**ids, chain_length=1, **seal),
    )
    return {
        "name": f"params {params_depth} deep",
        "header": header,
        "steps": [step],
        "seal": seal,
        "expected": {
            "canonical_header": chain.canonical_header,
            "genesis_hash": chain.genesis_hash,
            "canonical_steps": list(chain.canonical_steps),
            "step_hashes": list(chain.step_hashes),
            "head_hash": chain.head_hash,
            "canonical_seal": chain.canonical_seal,
            "root_hash": chain.root_hash,
        },
    }


def test_a_vectors_file_at_the_limit_is_read_and_one_level_more_is_not(tmp_path: Path) -> None:
    at_limit = tmp_path / "at-limit.json"
    at_limit.write_text(json.dumps({"cases": [_vectors_case(LIMIT)]}), encoding="utf-8")
    assert json_text_depth(at_limit.read_text(encoding="utf-8")) == MAX_VECTORS_FILE_DEPTH
    report = check_vectors(at_limit)
    assert (report.ok, report.cases_checked) == (True, 1)

    deeper = tmp_path / "deeper.json"
    case = _vectors_case(LIMIT)
    case["steps"][0]["params"] = nested(LIMIT + 1)
    deeper.write_text(json.dumps({"cases": [case]}), encoding="utf-8")
    with pytest.raises(InvalidVectorsFile, match=f"nested deeper than {MAX_VECTORS_FILE_DEPTH}"):
        check_vectors(deeper)


def test_run_proof_vectors_on_a_file_deeper_than_python_parses_is_one_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000, encoding="utf-8")

    completed = run_process([CLI, "vectors", str(path)], os.environ)

    assert completed.returncode == 2
    assert completed.stderr.splitlines() == [
        f"run-proof: {path} is not a v1 vectors file: JSON nested deeper than"
        f" {MAX_VECTORS_FILE_DEPTH} levels (100000; a case's values nest at most {LIMIT},"
        " docs/json-nesting.md)"
    ]
    assert completed.stdout == ""


@pytest.mark.parametrize(
    ("tenant_id", "run_id", "where"),
    [
        (TENANT, PARAMS_129, "step 1: params"),
        (TENANT, OUTCOME_5000, "step 2: outcome_data"),
        (TENANT_DEEP_PLAN, PLAN_5000, "header: plan"),
    ],
)
def test_export_refuses_a_value_it_cannot_represent_and_writes_no_bundle(
    nesting_store: DatabaseUrl,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    tenant_id: str,
    run_id: str,
    where: str,
) -> None:
    """A bundle with a stand-in for the stored value would not be the stored run."""
    from typer.testing import CliRunner

    from run_proof_pipeline.cli.main import app

    monkeypatch.setenv("DATABASE_URL", nesting_store.libpq())
    out = tmp_path / "bundle.json"
    args = ["export", "--tenant-id", tenant_id, "--run-id", run_id, "--out", str(out)]

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("run-proof:")]
    assert len(lines) == 1 and lines[0].startswith(f"run-proof: {where}: ")
    assert "levels deep" in lines[0] and lines[0].endswith("the bundle was not written")
    assert not out.exists() and list(tmp_path.iterdir()) == []
