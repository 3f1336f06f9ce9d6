"""Proof bundles of format-v2 runs (`run-proof-bundle/v2`, docs/ledger-v1.md "Proof bundle"):
`export` writes every field of the v2 header, step and seal records as stored, the chain
columns of ours and the ledger part; `verify-bundle` proves it with no database; every
tampered field fails, naming where; exact numbers survive the bundle. A v1 bundle of the
same store keeps its format and verifies.

The run is written with plain SQL, no hash supplied (the database chains and seals it), with
numbers no double holds: 2^64 + 1, 0.10000000000000001, 1e400, a bigint seed of 2^63 - 1.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from run_proof_pipeline.bundle.verify import verify_bundle_text
from run_proof_pipeline.cli.main import app
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.integrity.canonical_v2 import parse_stored_json_v2
from run_proof_pipeline.ledger.keys import SigningKey, VerifierKey
from run_proof_pipeline.plan.coordinator_checks.fixtures import migrated_copy
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.ledger_fixtures import checkpoint_env_in
from run_proof_pipeline_tests.support.stores import BASE, record_run
from run_proof_pipeline_tests.test_ledger_support import make_checkpoint

TENANT = "tenant-a"
RUN = "run-exact"
TRACE = f"trace_{RUN}"
BIG = 2**64 + 1
SEED = 2**63 - 1
# Stored by jsonb as exact numerics; a double reader would make them 2^64, 0.1 and inf.
PARAMS = '{"big": 18446744073709551617, "tiny": 0.10000000000000001, "huge": 1e400}'
METADATA = '{"abort_reason": null, "tokens": 9007199254740993}'


def _insert_exact_run(url: DatabaseUrl, steps: int) -> None:
    with psycopg.connect(url.libpq(), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO aos_traces (trace_id, run_id, correlation_id, tenant_id, agent_id,"
            " plan_id, seed, root_hash, plan, trace, schema_version, status, started_at,"
            " created_at, checksum, incident_id, synthetic_scenario_id)"
            " VALUES (%s, %s, 'corr-1', %s, 'agent-7', 'plan-42', %s, 'pending', %s::jsonb,"
            " '{\"steps\": []}', '1.0', 'running', %s, %s, 'sum-1', 'inc-9', NULL)",
            (TRACE, RUN, TENANT, SEED, '{"goal": "exact"}', BASE, BASE),
        )
        for index in range(steps):
            conn.execute(
                "INSERT INTO aos_trace_steps (trace_id, step_index, skill_id, skill_name,"
                " params, status, outcome_category, outcome_code, outcome_data, cost_cents,"
                " duration_ms, retry_count, input_hash, idempotency_key, replay_behavior,"
                " timestamp) VALUES (%s, %s, 'http', 'http', %s::jsonb, 'succeeded',"
                " 'SUCCESS', 'OK', %s::jsonb, 0.1, 12.25, 0, %s, %s, 'execute', %s)",
                (
                    TRACE,
                    index,
                    PARAMS,
                    None if index else '{"n": 1.50}',
                    f"in-{index}",
                    f"idem-{index}",
                    BASE + timedelta(seconds=index),
                ),
            )
        conn.execute(
            "UPDATE aos_traces SET status = 'completed', completed_at = %s,"
            " metadata = %s::jsonb WHERE run_id = %s",
            (BASE + timedelta(minutes=5), METADATA, RUN),
        )


def _export(url: DatabaseUrl, out: Path, run_id: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        app,
        ["export", "--tenant-id", TENANT, "--run-id", run_id, "--out", str(out)],
        env={"DATABASE_URL": url.libpq()},
    )
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Exported:
    v2: Path
    v1: Path
    key: VerifierKey
    origin: str
    seal_hash: str
    genesis_hash: str


@pytest.fixture(scope="module")
def exported(
    pg_server: LocalPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Exported]:
    """One store, checkpoint and two exports (the v2 run, a v1 run) for the module."""
    base = tmp_path_factory.mktemp("bundle_v2")
    name = f"bundle_v2_{uuid.uuid4().hex[:12]}"
    url = migrated_copy(pg_server, name)
    with pytest.MonkeyPatch.context() as patch:
        env = checkpoint_env_in(base, patch)
        record_run(url, TENANT, "run-v1", steps=2, chain_format=1)
        _insert_exact_run(url, steps=3)
        make_checkpoint(url)
        _export(url, base / "v2.json", RUN)
        _export(url, base / "v1.json", "run-v1")
    with psycopg.connect(url.libpq()) as conn:
        seal_hash, genesis_hash = conn.execute(
            "SELECT seal_hash, genesis_hash FROM aos_traces WHERE trace_id = %s", (TRACE,)
        ).fetchone()
    key = SigningKey.parse(env.signing_key.read_text()).verifier()
    yield Exported(
        base / "v2.json", base / "v1.json", key, f"run-proof.local/{name}", seal_hash, genesis_hash
    )
    pg_server.drop_database(name)


def _data(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def test_a_v2_bundle_carries_the_v2_records_and_verifies(exported: Exported) -> None:
    data = _data(exported.v2)
    assert data["format"] == "run-proof-bundle/v2"
    trace = data["trace"]
    assert (trace["chain_format"], trace["trace_id"], trace["chain_length"]) == (2, TRACE, 3)
    assert (trace["seal_hash"], trace["genesis_hash"]) == (
        exported.seal_hash,
        exported.genesis_hash,
    )
    assert trace["aos_root_hash"] == "pending"  # AOS's column, not the seal
    assert (trace["correlation_id"], trace["checksum"], trace["incident_id"]) == (
        "corr-1",
        "sum-1",
        "inc-9",
    )
    assert trace["is_synthetic"] is False and trace["status"] == "completed"
    assert [s["chain_position"] for s in data["steps"]] == [0, 1, 2]
    assert [s["idempotency_key"] for s in data["steps"]] == ["idem-0", "idem-1", "idem-2"]
    assert {(s["source"], s["level"]) for s in data["steps"]} == {("engine", "INFO")}
    assert data["ledger"]["entry"]["root_hash"] == exported.seal_hash

    report = verify_bundle_text(exported.v2.read_text(), exported.key, origin=exported.origin)

    assert report.status == "VERIFIED", report.failures
    chain = next(c for c in report.checks if c.name == "hash chain")
    assert chain.detail == f"format v2: rules 1-4 hold, seal {exported.seal_hash}"


def test_exact_numbers_survive_the_bundle(exported: Exported) -> None:
    raw = exported.v2.read_text(encoding="utf-8")
    data = json.loads(raw)
    step = data["steps"][0]
    # The stored text, digit for digit: no reader of the bundle's JSON can round it.
    params = parse_stored_json_v2(step["params"])
    assert params == {"big": BIG, "tiny": Decimal("0.10000000000000001"), "huge": 10**400}
    assert "18446744073709551617" in step["params"]
    assert "0.10000000000000001" in step["params"]
    assert parse_stored_json_v2(step["outcome_data"]) == {"n": Decimal("1.5")}
    assert data["trace"]["seed"] == str(SEED)
    assert parse_stored_json_v2(data["trace"]["metadata"])["tokens"] == 2**53 + 1
    assert step["cost_cents"] == "0.1" and step["duration_ms"] == "12.25"
    # The same digits as plain JSON numbers would not survive a double reader.
    assert json.loads('{"big": 18446744073709551617.0}')["big"] != BIG


def _step(index: int, field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["steps"][index][field] = value

    return change


def _trace(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["trace"][field] = value

    return change


def _swap_positions(data: dict[str, Any]) -> None:
    steps = data["steps"]
    steps[1]["chain_position"], steps[2]["chain_position"] = 2, 1


def _drop_last(data: dict[str, Any]) -> None:
    del data["steps"][-1]


def _entry_root(data: dict[str, Any]) -> None:
    data["ledger"]["entry"]["root_hash"] = "0" * 64


ONE_LESS = PARAMS.replace("18446744073709551617", "18446744073709551616")
ROUNDED = PARAMS.replace("0.10000000000000001", "0.1")


@pytest.mark.parametrize(
    ("change", "check", "detail"),
    [
        (_step(0, "params", ONE_LESS), "hash chain", "step 0"),
        (_step(1, "params", ROUNDED), "hash chain", "step 1"),
        (_step(2, "source", "sdk"), "hash chain", "step 2"),
        (_step(1, "idempotency_key", "idem-x"), "hash chain", "step 1"),
        (_step(0, "cost_cents", "0.2"), "hash chain", "step 0"),
        (_step(1, "is_synthetic", True), "hash chain", "step 1"),
        (_step(0, "cost_cents", "1_0"), "hash chain", "double precision"),
        (_step(0, "params", '{"a": NaN}'), "hash chain", "step 0"),
        (_swap_positions, "hash chain", "out of order"),
        (_step(1, "chain_position", None), "hash chain", "no chain position"),
        (_drop_last, "hash chain", "chain_length"),
        (_trace("correlation_id", "corr-2"), "hash chain", "header"),
        (_trace("aos_root_hash", "forged"), "hash chain", "header"),
        (_trace("seed", str(SEED - 1)), "hash chain", "header"),
        (_trace("seed", "9" * 40), "hash chain", "bigint"),
        (_trace("metadata", METADATA.replace("993", "992")), "hash chain", "seal"),
        (_trace("status", "failed"), "hash chain", "seal"),
        (_trace("seal_hash", "f" * 64), "hash chain", "seal"),
        (_trace("chain_format", 1), "bundle", "chain_format"),
        (_step(0, "params", {"big": BIG}), "bundle", "params"),
        (_entry_root, "ledger entry", "leaf_hash mismatch"),
    ],
    ids=[
        "big-int-one-less",
        "decimal-rounded",
        "step-source",
        "step-idempotency-key",
        "step-double",
        "step-is-synthetic",
        "double-not-pg-text",
        "params-nan",
        "positions-swapped",
        "position-missing",
        "step-dropped",
        "header-correlation-id",
        "header-aos-root-hash",
        "header-seed",
        "seed-not-bigint",
        "seal-metadata",
        "seal-status",
        "seal-hash",
        "format-changed",
        "json-not-text",
        "entry-root",
    ],
)
def test_a_tampered_v2_bundle_names_what_failed(
    exported: Exported, change: Callable[[dict[str, Any]], None], check: str, detail: str
) -> None:
    data = _data(exported.v2)
    change(data)

    report = verify_bundle_text(json.dumps(data), exported.key, origin=exported.origin)

    assert report.status == "FAILED"
    first = report.failures[0]
    assert first.name == check and detail in first.detail, report.failures


def test_verify_bundle_cli_verifies_v2_and_v1_bundles(exported: Exported) -> None:
    assert _data(exported.v1)["format"] == "run-proof-bundle/v1"
    for path, form in ((exported.v2, "run-proof-bundle/v2"), (exported.v1, "run-proof-bundle/v1")):
        result = CliRunner().invoke(
            app,
            [
                "verify-bundle",
                str(path),
                "--public-key",
                exported.key.text(),
                "--origin",
                exported.origin,
            ],
            # No database: the URL points nowhere.
            env={"DATABASE_URL": "postgresql://x:y@127.0.0.1:1/none"},
        )
        assert result.exit_code == 0, result.output
        assert "verification_status: VERIFIED" in result.output
        assert f"({form})" in result.output
