"""Offline proof bundles: `export` reads the database once; `verify-bundle` needs none, and
names exactly what failed in a mutated bundle."""

from __future__ import annotations

import ast
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from run_proof_pipeline.bundle.verify import verify_bundle_text
from run_proof_pipeline.cli.main import app
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.integrity import Mismatch
from run_proof_pipeline.ledger.checkpoint import SignedCheckpoint
from run_proof_pipeline.ledger.keys import SigningKey, VerifierKey, generate_signing_key
from run_proof_pipeline.plan.coordinator_checks.fixtures import migrated_copy
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.ledger_fixtures import checkpoint_env_in
from run_proof_pipeline_tests.support.stores import record_run
from run_proof_pipeline_tests.test_ledger_support import make_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _export(url: DatabaseUrl, out: Path, run_id: str) -> Any:
    result = CliRunner().invoke(
        app,
        ["export", "--tenant-id", "tenant-a", "--run-id", run_id, "--out", str(out)],
        env={"DATABASE_URL": url.libpq()},
    )
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Exported:
    path: Path  # the bundle of run-2, covered by the checkpoint
    late: dict[str, Any]  # the bundle of run-late, sealed after it
    key: VerifierKey
    origin: str  # the log's origin, which every verification names


@pytest.fixture(scope="module")
def exported(
    pg_server: LocalPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Exported]:
    """One store, checkpoint and export for the whole module: the cases only read them."""
    base = tmp_path_factory.mktemp("bundle")
    name = f"bundle_{uuid.uuid4().hex[:12]}"
    url = migrated_copy(pg_server, name)
    with pytest.MonkeyPatch.context() as patch:
        env = checkpoint_env_in(base, patch)
        for run_id in ("run-0", "run-1", "run-2", "run-3", "run-4"):
            record_run(url, "tenant-a", run_id, steps=3, chain_format=1)
        make_checkpoint(url)
        record_run(url, "tenant-a", "run-late", steps=1, chain_format=1)  # after the checkpoint
        _export(url, base / "bundle.json", "run-2")
        late = _export(url, base / "late.json", "run-late")
    key = SigningKey.parse(env.signing_key.read_text()).verifier()
    yield Exported(base / "bundle.json", late, key, f"run-proof.local/{name}")
    pg_server.drop_database(name)


def test_verify_bundle_needs_no_database(exported: Exported) -> None:
    path, key = exported.path, exported.key
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": f"postgresql://x:y@127.0.0.1:{closed}/none"}
    for setting in ("RUN_PROOF_PUBLIC_KEY", "RUN_PROOF_PUBLIC_KEY_FILE"):
        env.pop(setting, None)
    env["RUN_PROOF_CHECKPOINT_ORIGIN"] = exported.origin  # the setting, not the option

    completed = subprocess.run(
        [
            str(Path(sys.executable).with_name("run-proof")),
            "verify-bundle",
            str(path),
            "--public-key",
            key.text(),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert completed.returncode == 0, completed.stderr
    assert "verification_status: VERIFIED" in completed.stdout
    assert f"origin: {exported.origin}\n" in completed.stdout
    assert f"public_key: key id {key.id.hex()} (from --public-key)" in completed.stdout
    for check in ("bundle", "origin", "hash chain", "ledger entry", "checkpoint", "inclusion"):
        assert f"{check}: ok" in completed.stdout
    assert f"signed by key id {key.id.hex()} at tree size 5" in completed.stdout
    assert completed.stderr == ""


def _imports_of(module: str) -> set[str]:
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.is_file():
        path = ROOT / module.replace(".", "/") / "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.startswith("run_proof_pipeline")}


def test_the_verifier_imports_nothing_from_the_store() -> None:
    # Statically, module by module: the package's own __init__ (which re-exports the seed's
    # production-path names) is not part of what the verifier's code depends on.
    seen: set[str] = set()
    todo = ["run_proof_pipeline.bundle.verify"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(_imports_of(module))

    assert "run_proof_pipeline.ledger.checkpoint" in seen
    assert sorted(m for m in seen if m.startswith("run_proof_pipeline.store")) == []


def _mutate(path: Path, change: Callable[[dict[str, Any]], None]) -> str:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    return json.dumps(data)


def _set_step(data: dict[str, Any]) -> None:
    data["steps"][1]["outcome_data"] = {"forged": True}


def _drop_step(data: dict[str, Any]) -> None:
    del data["steps"][1]


def _entry_root(data: dict[str, Any]) -> None:
    data["ledger"]["entry"]["root_hash"] = "0" * 64


def _checkpoint_size(data: dict[str, Any]) -> None:
    data["ledger"]["checkpoint"] = data["ledger"]["checkpoint"].replace("\n5\n", "\n6\n", 1)


def _proof_node(data: dict[str, Any]) -> None:
    data["ledger"]["inclusion_proof"][0] = "f" * 64


def _seal_status(data: dict[str, Any]) -> None:
    data["trace"]["status"] = "failed"


def _not_json(data: dict[str, Any]) -> None:
    data["steps"] = "nope"


@pytest.mark.parametrize(
    ("change", "check", "detail"),
    [
        (_set_step, "hash chain", "step 1: step_hash mismatch"),
        (_drop_step, "hash chain", "step 1: step_index gap"),
        (_seal_status, "hash chain", "seal: root_hash mismatch"),
        (_entry_root, "ledger entry", "leaf_hash mismatch"),
        (_checkpoint_size, "checkpoint", "does not verify"),
        (_proof_node, "inclusion", "not included under the signed head"),
        (_not_json, "bundle", "steps: Input should be a valid array"),
    ],
    ids=[
        "step-edited",
        "step-dropped",
        "seal-edited",
        "entry-edited",
        "checkpoint-edited",
        "proof-edited",
        "malformed",
    ],
)
def test_a_mutated_bundle_names_exactly_what_failed(
    exported: Exported, change: Any, check: str, detail: str
) -> None:
    path, key = exported.path, exported.key

    report = verify_bundle_text(_mutate(path, change), key, origin=exported.origin)

    assert report.status == "FAILED"
    failed = report.failures
    assert failed[0].name == check and detail in failed[0].detail, failed


def _bundle_field(path: Path, *keys: str | int) -> Any:
    value: Any = json.loads(path.read_text(encoding="utf-8"))
    for key in keys:
        value = value[key]
    return value


def test_a_failed_hash_comparison_carries_the_bundles_value_as_stored(
    exported: Exported,
) -> None:
    """The checks that compare a hash say so with a Mismatch (integrity/mismatch.py): stored =
    what the bundle holds, recomputed = what the verifier computes from it."""
    path, key, origin = exported.path, exported.key, exported.origin
    signed = SignedCheckpoint.parse(_bundle_field(path, "ledger", "checkpoint")).checkpoint
    step_hash = _bundle_field(path, "steps", 1, "step_hash")
    leaf = _bundle_field(path, "ledger", "entry", "leaf_hash")

    def failed(change: Callable[[dict[str, Any]], None]) -> tuple[str, Mismatch | None]:
        [first, *_] = verify_bundle_text(_mutate(path, change), key, origin=origin).failures
        return first.name, first.mismatch

    def step(data: dict[str, Any]) -> None:
        data["steps"][1]["step_hash"] = "0" * 64

    def entry(data: dict[str, Any]) -> None:
        data["ledger"]["entry"]["leaf_hash"] = "0" * 64

    assert failed(step) == ("hash chain", Mismatch("step_hash", "0" * 64, step_hash))
    assert failed(entry) == ("ledger entry", Mismatch("leaf_hash", "0" * 64, leaf))
    name, inclusion = failed(_proof_node)
    assert name == "inclusion" and inclusion is not None
    assert (inclusion.field, inclusion.stored) == ("root", signed.root.hex())
    assert inclusion.recomputed not in (None, inclusion.stored)


def test_a_bundle_checked_with_another_key_fails_at_the_checkpoint(
    exported: Exported,
) -> None:
    path = exported.path
    stranger = generate_signing_key("someone-else").verifier()

    report = verify_bundle_text(path.read_text(encoding="utf-8"), stranger, origin=exported.origin)

    assert [c.name for c in report.failures] == ["checkpoint"]


def test_a_run_sealed_after_the_latest_checkpoint_is_not_anchored_offline(
    exported: Exported,
) -> None:
    report = verify_bundle_text(json.dumps(exported.late), exported.key, origin=exported.origin)

    assert exported.late["ledger"]["checkpoint"] is None
    assert [(c.name, c.detail) for c in report.failures] == [
        ("checkpoint", "no signed checkpoint covers the run's ledger entry")
    ]


def test_verify_bundle_cli_reports_the_first_failure_and_exits_1(
    exported: Exported, tmp_path: Path
) -> None:
    path, key = exported.path, exported.key
    mutated = tmp_path / "mutated.json"
    mutated.write_text(_mutate(path, _set_step), encoding="utf-8")

    result = CliRunner().invoke(
        app,
        ["verify-bundle", str(mutated), "--public-key", key.text(), "--origin", exported.origin],
    )

    assert result.exit_code == 1
    assert "hash chain: FAILED - step 1: step_hash mismatch" in result.output
    assert "verification_status: FAILED" in result.output
