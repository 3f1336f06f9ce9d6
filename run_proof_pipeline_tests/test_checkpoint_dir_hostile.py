"""Issue 11, classes 8 and 9: the checkpoint directory and its settings, attacked.

Class 8: a damaged, garbage or renamed checkpoint file fails closed on every path that reads
the directory (verify, checkpoint verify, checkpoint create, the Dagster checkpoint op): an
older checkpoint never stands in for a newer one that was truncated. Class 9: a configured
directory that does not exist, or an origin the directory holds no checkpoint of while it holds
another origin's, is a configuration error (exit 2), never a quiet VERIFIED; and every verdict
says which anchor applied.

Each attack is done on a real PostgreSQL as the table owner: the run is rewritten with every
hash and its ledger entry recomputed, so only the signed checkpoint can tell.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql
from typer.testing import CliRunner

from run_proof_pipeline.cli.main import app
from run_proof_pipeline.coordinator import RunProofCoordinator
from run_proof_pipeline.defs.checkpoint.job import run_proof_checkpoint
from run_proof_pipeline.defs.resources import TraceStoreResource
from run_proof_pipeline.errors import ExitCode
from run_proof_pipeline.ledger.checkpoint import SignedCheckpoint
from run_proof_pipeline.ledger.checkpoint_files import write_checkpoint
from run_proof_pipeline.ledger.create import CreatedCheckpoint
from run_proof_pipeline.settings import ConfigError, DatabaseUrl
from run_proof_pipeline_tests.support.ledger_fixtures import CheckpointEnv
from run_proof_pipeline_tests.support.stores import prove, record_run
from run_proof_pipeline_tests.test_ledger_support import (
    RunShape,
    Statement,
    make_checkpoint,
    tamper,
)

TENANT = "tenant-h"
STEPS = 4


def _cli(url: DatabaseUrl, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    monkeypatch.setenv("DATABASE_URL", url.libpq())
    monkeypatch.delenv("USE_POSTGRES_TRACES", raising=False)
    return CliRunner().invoke(app, list(args))


def _rewrite_run_and_its_entry(url: DatabaseUrl, run_id: str) -> None:
    """As owner: forge step 1 of a format-v1 run (record_run(..., chain_format=1)), recompute
    every step hash, the seal (root_hash and seal_hash) and the ledger entry (keyed on it)."""
    run = RunShape.read(url, TENANT, run_id)
    forged = run.chain({1: {"outcome_data": {"forged": True}}})
    rows = [
        (i, forged.genesis_hash if i == 0 else forged.step_hashes[i - 1], forged.step_hashes[i])
        for i in range(STEPS)
    ]
    values = sql.SQL(", ").join(sql.SQL("(%s, %s, %s)") for _ in rows)
    statements: list[Statement] = [
        (
            "UPDATE aos_trace_steps SET outcome_data = %s::jsonb"
            " WHERE run_id = %s AND step_index = 1",
            ('{"forged": true}', run_id),
        ),
        (
            sql.SQL(
                "UPDATE aos_trace_steps s SET prev_hash = v.prev, step_hash = v.hash"
                " FROM (VALUES {}) AS v(i, prev, hash) WHERE s.run_id = %s AND s.step_index = v.i"
            ).format(values),
            (*[x for row in rows for x in row], run_id),
        ),
        # A format-v1 seal is in both columns (0006 copied root_hash into seal_hash): a
        # consistent forgery rewrites both, so that no rule of the row itself can catch it.
        (
            "UPDATE aos_traces SET root_hash = %s, seal_hash = %s WHERE run_id = %s",
            (forged.root_hash, forged.root_hash, run_id),
        ),
        (
            "UPDATE run_proof_ledger SET root_hash = %s, leaf_hash = run_proof_ledger_leaf("
            "kind, tenant_id, run_id, trace_id, chain_length, %s, recorded_at)"
            " WHERE run_id = %s",
            (forged.root_hash, forged.root_hash, run_id),
        ),
    ]
    assert tamper(url, *statements) == [1, STEPS, 1, 1]


@dataclass(frozen=True)
class TwoCheckpoints:
    url: DatabaseUrl
    env: CheckpointEnv
    first: CreatedCheckpoint  # size 1: run-1
    second: CreatedCheckpoint  # size 2: run-1, run-2 (run-2 sealed after the first)


@pytest.fixture
def signed_twice(store: DatabaseUrl, checkpoint_env: CheckpointEnv) -> TwoCheckpoints:
    record_run(store, TENANT, "run-1", steps=STEPS, chain_format=1)
    first = make_checkpoint(store)
    record_run(store, TENANT, "run-2", steps=STEPS, chain_format=1)
    second = make_checkpoint(store)
    assert (first.signed.checkpoint.size, second.signed.checkpoint.size) == (1, 2)
    return TwoCheckpoints(store, checkpoint_env, first, second)


def _segments() -> dict[str, Any]:
    return {
        "coordinator": RunProofCoordinator(workers=2, parallel_min_steps=1),
        "step_summary_limit": 0,
    }


def _assert_fails_closed_everywhere(
    signed: TwoCheckpoints, monkeypatch: pytest.MonkeyPatch, culprit: Path, dagster: Any
) -> None:
    """verify (stream and segments), CLI verify, checkpoint verify, checkpoint create and the
    Dagster checkpoint op all refuse, naming `culprit`; nothing new is signed."""
    url = signed.url
    before = sorted(signed.env.directory.iterdir())
    for kwargs in ({}, _segments()):
        integrity = prove(url, TENANT, "run-2", **kwargs).integrity
        assert integrity.verification_status == "FAILED", kwargs
        assert integrity.failure is not None and integrity.failure.location == "ledger"
        assert str(culprit) in (integrity.failure_reason or "")
        assert not integrity.anchored
    verified = _cli(url, monkeypatch, "verify", "--tenant-id", TENANT, "--run-id", "run-2")
    assert verified.exit_code == ExitCode.FAILED, verified.output
    assert "verification_status: FAILED" in verified.output and culprit.name in verified.output
    audited = _cli(url, monkeypatch, "checkpoint", "verify")
    assert audited.exit_code == ExitCode.FAILED, audited.output
    assert culprit.name in audited.output
    created = _cli(url, monkeypatch, "checkpoint", "create")
    assert created.exit_code == ExitCode.FAILED, created.output
    assert "checkpoint refused" in created.output and culprit.name in created.output
    op = run_proof_checkpoint.execute_in_process(
        instance=dagster,
        resources={
            "trace_store": TraceStoreResource(database_url=url.libpq(), use_postgres_traces="true")
        },
        raise_on_error=False,
    )
    assert not op.success
    failures = [e for e in op.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures and culprit.name in str(failures[0].event_specific_data)
    assert sorted(signed.env.directory.iterdir()) == before  # the forked ledger was not signed


# --- class 8: the directory fails closed ---------------------------------------------------


def test_truncated_newest_checkpoint_fails_closed_instead_of_falling_back_to_the_older(
    signed_twice: TwoCheckpoints, monkeypatch: pytest.MonkeyPatch, dagster_instance: Any
) -> None:
    url, second = signed_twice.url, signed_twice.second
    _rewrite_run_and_its_entry(url, "run-2")
    # Caught while checkpoint 2 is whole: the rewritten entry is not the one it signed.
    assert prove(url, TENANT, "run-2").integrity.verification_status == "FAILED"

    second.path.write_bytes(b"")  # the owner truncates the newest checkpoint to 0 bytes

    integrity = prove(url, TENANT, "run-2").integrity
    assert "is empty (0 bytes)" in (integrity.failure_reason or "")
    _assert_fails_closed_everywhere(signed_twice, monkeypatch, second.path, dagster_instance)


@pytest.mark.parametrize("named_size", [1, 3], ids=["name-says-older", "name-says-newer"])
def test_a_checkpoint_renamed_to_disagree_with_its_body_fails_closed(
    signed_twice: TwoCheckpoints,
    monkeypatch: pytest.MonkeyPatch,
    dagster_instance: Any,
    named_size: int,
) -> None:
    url, second = signed_twice.url, signed_twice.second
    _rewrite_run_and_its_entry(url, "run-2")
    renamed = second.path.with_name(
        second.path.name.replace("checkpoint-000000000002-", f"checkpoint-{named_size:012d}-")
    )
    second.path.rename(renamed)

    integrity = prove(url, TENANT, "run-2").integrity
    assert f"its name says tree size {named_size} but it signs tree size 2" in (
        integrity.failure_reason or ""
    )
    _assert_fails_closed_everywhere(signed_twice, monkeypatch, renamed, dagster_instance)


def test_a_checkpoint_whose_origin_line_was_edited_fails_closed(
    signed_twice: TwoCheckpoints, monkeypatch: pytest.MonkeyPatch, dagster_instance: Any
) -> None:
    url, second = signed_twice.url, signed_twice.second
    _rewrite_run_and_its_entry(url, "run-2")
    origin = second.signed.checkpoint.origin
    # Once skipped as "another log's checkpoint", leaving checkpoint 1 as the newest.
    second.path.write_text(
        second.path.read_text(encoding="utf-8").replace(origin, "elsewhere.example/log", 1),
        encoding="utf-8",
    )

    integrity = prove(url, TENANT, "run-2").integrity
    assert "its origin line was altered" in (integrity.failure_reason or "")
    _assert_fails_closed_everywhere(signed_twice, monkeypatch, second.path, dagster_instance)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("checkpoint-000000000009-20990101T000000000000Z.note", b"\xff\xfe not a note\n"),
        ("checkpoint-000000000009-20990101T000000000000Z.note", b"origin\n9\nAAAA\n"),
        ("latest.note", b"anything at all\n"),
        ("README", b"checkpoints of the trace store\n"),
    ],
    ids=["binary-with-a-checkpoint-name", "truncated-note", "other-note-name", "stray-file"],
)
def test_a_garbage_file_in_the_directory_fails_closed(
    signed_twice: TwoCheckpoints,
    monkeypatch: pytest.MonkeyPatch,
    dagster_instance: Any,
    name: str,
    content: bytes,
) -> None:
    url = signed_twice.url
    _rewrite_run_and_its_entry(url, "run-2")
    planted = signed_twice.env.directory / name
    planted.write_bytes(content)

    _assert_fails_closed_everywhere(signed_twice, monkeypatch, planted, dagster_instance)


def test_a_forked_pair_of_checkpoints_of_one_size_fails_closed(
    signed_twice: TwoCheckpoints, monkeypatch: pytest.MonkeyPatch, dagster_instance: Any
) -> None:
    second = signed_twice.second
    other_root = SignedCheckpoint.parse(
        second.signed.note().replace(
            base64.b64encode(second.signed.checkpoint.root).decode(),
            base64.b64encode(b"\x01" * 32).decode(),
        )
    )
    fork = write_checkpoint(signed_twice.env.directory, other_root)

    integrity = prove(signed_twice.url, TENANT, "run-2").integrity
    assert "both sign tree size 2 with different roots" in (integrity.failure_reason or "")
    _assert_fails_closed_everywhere(signed_twice, monkeypatch, fork, dagster_instance)


def test_the_writers_leftover_temp_file_is_not_a_checkpoint(
    signed_twice: TwoCheckpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a crash between the temp write and the link leaves: never a checkpoint.
    (signed_twice.env.directory / ".checkpoint-abc123.tmp").write_bytes(b"origin\n3\n")

    integrity = prove(signed_twice.url, TENANT, "run-2").integrity

    assert integrity.verification_status == "VERIFIED"
    assert integrity.anchor.startswith("signed checkpoint of size 2 ")


def test_checkpoints_are_written_whole_through_a_temp_file_and_never_overwritten(
    signed_twice: TwoCheckpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    directory = signed_twice.env.directory
    synced: list[int] = []
    linked: list[tuple[str, str]] = []
    real_fsync, real_link = os.fsync, os.link
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    monkeypatch.setattr(
        os, "link", lambda a, b: (linked.append((str(a), str(b))), real_link(a, b))[1]
    )
    record_run(signed_twice.url, TENANT, "run-3", steps=1)

    third = make_checkpoint(signed_twice.url)

    assert len(synced) == 2  # the file's data, then the directory entry
    [(temp, final)] = linked
    assert Path(temp).parent == directory and Path(temp).name.startswith(".checkpoint-")
    assert final == str(third.path) and not Path(temp).exists()
    assert not [p for p in directory.iterdir() if p.name.startswith(".")]
    with pytest.raises(FileExistsError, match="never overwritten"):
        write_checkpoint(third.path, third.signed)
    assert SignedCheckpoint.parse(third.path.read_text(encoding="utf-8")) == third.signed


# --- class 9: misconfiguration is an error, and every verdict names its anchor -------------


def test_a_mistyped_checkpoint_dir_is_a_configuration_error_on_every_verify_path(
    signed_twice: TwoCheckpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = signed_twice.url
    _rewrite_run_and_its_entry(url, "run-2")
    mistyped = signed_twice.env.directory.with_name("checkpionts")
    monkeypatch.setenv("RUN_PROOF_CHECKPOINT_DIR", str(mistyped))

    with pytest.raises(ConfigError, match="does not exist"):
        prove(url, TENANT, "run-2")
    for args in (
        ("verify", "--tenant-id", TENANT, "--run-id", "run-2"),
        ("verify", "--tenant-id", TENANT, "--run-id", "run-2", "--json"),
        ("checkpoint", "verify"),
        ("export", "--tenant-id", TENANT, "--run-id", "run-2"),
    ):
        result = _cli(url, monkeypatch, *args)
        assert result.exit_code == ExitCode.USAGE, (args, result.output)
        assert "configuration error" in result.output and "checkpionts" in result.output
        assert "VERIFIED" not in result.output
    assert not mistyped.exists()  # no verify path creates it


def test_a_wrong_origin_is_a_configuration_error(
    signed_twice: TwoCheckpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = signed_twice.url
    _rewrite_run_and_its_entry(url, "run-2")
    monkeypatch.setenv("RUN_PROOF_CHECKPOINT_ORIGIN", "run-proof.local/typo")

    with pytest.raises(ConfigError, match="holds no checkpoint of origin 'run-proof.local/typo'"):
        prove(url, TENANT, "run-2")
    for args in (
        ("verify", "--tenant-id", TENANT, "--run-id", "run-2"),
        ("checkpoint", "verify"),
        ("checkpoint", "create"),
    ):
        result = _cli(url, monkeypatch, *args)
        assert result.exit_code == ExitCode.USAGE, (args, result.output)
        assert "run-proof.local/typo" in result.output and "VERIFIED" not in result.output
    assert len(list(signed_twice.env.directory.iterdir())) == 2


def _anchor_of(url: DatabaseUrl, monkeypatch: pytest.MonkeyPatch, run_id: str) -> tuple[str, str]:
    """The anchor as `verify --json` and the `verify` CLI lines state it."""
    as_json = _cli(url, monkeypatch, "verify", "--tenant-id", TENANT, "--run-id", run_id, "--json")
    lines = _cli(url, monkeypatch, "verify", "--tenant-id", TENANT, "--run-id", run_id)
    payload = json.loads(as_json.stdout)
    [line] = [x for x in lines.stdout.splitlines() if x.startswith("anchor: ")]
    assert line == f"anchor: {payload['integrity']['anchor']}"
    assert "adoption: native (not adopted)" in lines.stdout.splitlines()  # a native run
    return payload["integrity"]["anchor"], lines.stdout


def test_every_verdict_names_the_anchor_that_applied(
    signed_twice: TwoCheckpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = signed_twice.url
    origin = signed_twice.second.signed.checkpoint.origin
    record_run(url, TENANT, "run-3", steps=2)  # sealed after the latest checkpoint
    record_run(url, TENANT, "run-open", steps=2, seal=False)  # nothing recorded yet

    covered, text = _anchor_of(url, monkeypatch, "run-1")
    assert covered == f"signed checkpoint of size 2 and origin {origin}"
    assert "verification_status: VERIFIED" in text
    later, _ = _anchor_of(url, monkeypatch, "run-3")
    assert (
        later == f"ledger only: sealed after the latest signed checkpoint (size 2, origin {origin})"
    )
    unsealed, text = _anchor_of(url, monkeypatch, "run-open")
    assert unsealed == "none" and "verification_status: UNSEALED" in text
    monkeypatch.delenv("RUN_PROOF_CHECKPOINT_DIR")
    unsigned, _ = _anchor_of(url, monkeypatch, "run-1")
    assert unsigned == "ledger only: no checkpoint directory configured"
    segmented = prove(url, TENANT, "run-1", **_segments()).integrity
    assert (segmented.verification_status, segmented.anchor) == ("VERIFIED", unsigned)


def test_a_failure_caught_by_the_checkpoint_names_it_as_the_anchor(
    signed_twice: TwoCheckpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    _rewrite_run_and_its_entry(signed_twice.url, "run-2")

    integrity = prove(signed_twice.url, TENANT, "run-2").integrity

    assert integrity.verification_status == "FAILED" and not integrity.anchored
    assert integrity.anchor.startswith("signed checkpoint of size 2 and origin ")
    assert integrity.failure is not None and integrity.failure.location == "ledger"
    # The rewrite is consistent: without the signed checkpoint nothing else catches it.
    monkeypatch.delenv("RUN_PROOF_CHECKPOINT_DIR")
    unanchored = prove(signed_twice.url, TENANT, "run-2").integrity
    assert unanchored.verification_status == "VERIFIED", unanchored.failure_reason
    assert unanchored.anchor == "ledger only: no checkpoint directory configured"
