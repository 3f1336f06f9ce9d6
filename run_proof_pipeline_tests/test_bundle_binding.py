"""Issue 11, classes 6 and 7: what `verify-bundle` trusts is named, never guessed.

Class 6: key text and key file are separate options and settings. The attack: in an unpacked
evidence archive (the verifier's working directory), a file at the relative path spelled by
the trusted key's text holds the forger's key; a bundle forged and signed with that key must
still be refused, and the output names the key id it checked with.

Class 7: a bundle is bound to its log. Two databases on the throwaway server share one signing
key (as they could before `checkpoint create` refused it); a bundle of either checked as the
other's is FAILED naming both origins, the expected origin is required, and `checkpoint create`
refuses a key named for another origin, writing nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from run_proof_pipeline.cli.main import app
from run_proof_pipeline.integrity.merkle import root_from_leaves
from run_proof_pipeline.ledger.checkpoint import Checkpoint, sign_checkpoint
from run_proof_pipeline.ledger.checkpoint_files import write_checkpoint
from run_proof_pipeline.ledger.keys import (
    SigningKey,
    VerifierKey,
    generate_signing_key,
    write_signing_key,
)
from run_proof_pipeline.ledger.settings import LedgerSettings
from run_proof_pipeline.plan.coordinator_checks.fixtures import NewDatabase
from run_proof_pipeline.settings import ConfigError, DatabaseUrl
from run_proof_pipeline.store.migrate import upgrade
from run_proof_pipeline_tests.support.stores import record_run
from run_proof_pipeline_tests.test_ledger_support import ledger_entries

CLI = str(Path(sys.executable).with_name("run-proof"))
KEY_SETTINGS = (
    "RUN_PROOF_SIGNING_KEY",
    "RUN_PROOF_PUBLIC_KEY",
    "RUN_PROOF_PUBLIC_KEY_FILE",
    "RUN_PROOF_CHECKPOINT_DIR",
    "RUN_PROOF_CHECKPOINT_ORIGIN",
)


@dataclass(frozen=True)
class Log:
    """One database and where its checkpoints go."""

    url: DatabaseUrl
    directory: Path

    @property
    def origin(self) -> str:
        return f"run-proof.local/{self.url.database}"


def _log(new_database: NewDatabase, tmp_path: Path, prefix: str) -> Log:
    url = DatabaseUrl.parse(new_database(prefix))
    upgrade(url)
    return Log(url, tmp_path / f"{prefix}-checkpoints")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (*KEY_SETTINGS, "USE_POSTGRES_TRACES"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _cli(monkeypatch: pytest.MonkeyPatch, *args: str, **env: str) -> Any:
    """`run-proof` in-process with exactly `env` for the checkpoint and key settings."""
    for name in KEY_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return CliRunner().invoke(app, list(args))


def _checkpoint(log: Log, monkeypatch: pytest.MonkeyPatch, key_file: Path, **env: str) -> Any:
    return _cli(
        monkeypatch,
        "checkpoint",
        "create",
        DATABASE_URL=log.url.libpq(),
        RUN_PROOF_CHECKPOINT_DIR=str(log.directory),
        RUN_PROOF_SIGNING_KEY=str(key_file),
        **env,
    )


def _export(
    log: Log,
    monkeypatch: pytest.MonkeyPatch,
    key: VerifierKey,
    out: Path,
    *,
    origin: str | None = None,
) -> Path:
    result = _cli(
        monkeypatch,
        "export",
        "--tenant-id",
        "tenant-a",
        "--run-id",
        "run-1",
        "--out",
        str(out),
        DATABASE_URL=log.url.libpq(),
        RUN_PROOF_CHECKPOINT_DIR=str(log.directory),
        RUN_PROOF_PUBLIC_KEY=key.text(),
        RUN_PROOF_CHECKPOINT_ORIGIN=origin or log.origin,
    )
    assert result.exit_code == 0, result.output
    assert "with a signed checkpoint" in result.output
    return out


def _verify_bundle(monkeypatch: pytest.MonkeyPatch, bundle: Path, *args: str) -> Any:
    return _cli(monkeypatch, "verify-bundle", str(bundle), *args)


def _key(path: Path) -> SigningKey:
    return SigningKey.parse(path.read_text(encoding="ascii"))


def _exported_log(
    new_database: NewDatabase,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    prefix: str,
    *,
    steps: int,
    out: str,
) -> tuple[Log, VerifierKey, Path]:
    """A log holding run-1 of `steps` steps, checkpointed with a new key (k.key), and the
    bundle of run-1 exported from it."""
    log = _log(new_database, tmp_path, prefix)
    record_run(log.url, "tenant-a", "run-1", steps=steps)
    assert _checkpoint(log, monkeypatch, tmp_path / "k.key").exit_code == 0
    key = _key(tmp_path / "k.key").verifier()
    return log, key, _export(log, monkeypatch, key, tmp_path / out)


# -- class 6 -------------------------------------------------------------------------------


def test_a_key_file_planted_at_the_path_spelled_by_the_key_text_is_never_read(
    new_database: NewDatabase, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    monkeypatch = clean_env
    # The honest log: run-1 recorded with 3 steps, checkpointed with key K (created now).
    honest, trusted, real = _exported_log(
        new_database, tmp_path, monkeypatch, "honest", steps=3, out="real.json"
    )
    # The forger: another database claiming the honest log's origin, run-1 with other
    # content (5 steps), checkpointed with the forger's key K' (same name, another key).
    forger = _log(new_database, tmp_path, "forger")
    record_run(forger.url, "tenant-a", "run-1", steps=5)
    made = _checkpoint(
        forger, monkeypatch, tmp_path / "forger.key", RUN_PROOF_CHECKPOINT_ORIGIN=honest.origin
    )
    assert made.exit_code == 0, made.output
    forged_key = _key(tmp_path / "forger.key").verifier()
    forged = _export(
        forger, monkeypatch, forged_key, tmp_path / "forged.json", origin=honest.origin
    )
    assert forged_key.name == trusted.name and forged_key.id != trusted.id
    # The evidence archive, unpacked: the working directory holds, at the relative path that
    # the trusted key's text spells (it contains '/'), the forger's key.
    archive = tmp_path / "unpacked-evidence"
    archive.mkdir()
    monkeypatch.chdir(archive)
    assert "/" in trusted.text()
    planted = Path(trusted.text())
    planted.parent.mkdir(parents=True)
    planted.write_text(forged_key.text() + "\n", encoding="ascii")
    assert planted.is_file() and Path(trusted.text()).read_text().strip() == forged_key.text()
    origin = ("--origin", honest.origin)

    as_text = _verify_bundle(monkeypatch, forged, "--public-key", trusted.text(), *origin)
    honest_one = _verify_bundle(monkeypatch, real, "--public-key", trusted.text(), *origin)
    from_setting = _cli(
        monkeypatch,
        "verify-bundle",
        str(forged),
        *origin,
        RUN_PROOF_PUBLIC_KEY=trusted.text(),
    )
    with_planted_key = _verify_bundle(
        monkeypatch, forged, "--public-key", forged_key.text(), *origin
    )
    text_as_file = _verify_bundle(monkeypatch, forged, "--public-key-file", trusted.text(), *origin)

    # What the planted key would have given: the forgery is well made.
    assert with_planted_key.exit_code == 0, with_planted_key.output
    # Given as text, the key is the key: the forged bundle fails at its checkpoint.
    assert as_text.exit_code == 1, as_text.output
    assert "verification_status: FAILED" in as_text.output
    assert f"public_key: key id {trusted.id.hex()} (from --public-key)" in as_text.output
    assert (
        f"checkpoint: FAILED - no signature by the public key {trusted.name!r} "
        f"(key id {trusted.id.hex()})"
    ) in as_text.output
    assert from_setting.exit_code == 1, from_setting.output
    assert f"key id {trusted.id.hex()} (from RUN_PROOF_PUBLIC_KEY)" in from_setting.output
    # The honest bundle verifies with the same key text, planted file or not; the output names
    # the key id.
    assert honest_one.exit_code == 0, honest_one.output
    assert f"checkpoint: ok - signed by key id {trusted.id.hex()} at tree size 1" in (
        honest_one.output
    )
    # Key text where a file is expected is refused, not read (the planted file stays unread).
    assert text_as_file.exit_code == 2
    assert "--public-key-file takes the path of a key file, and its value is a key's text" in (
        text_as_file.output
    )
    # The settings read the key the same way, wherever the process runs.
    assert LedgerSettings(public_key_value=trusted.text()).verifier_key() == trusted


def test_a_key_file_is_read_only_from_the_file_option_and_setting(
    new_database: NewDatabase, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    monkeypatch = clean_env
    log, key, bundle = _exported_log(
        new_database, tmp_path, monkeypatch, "keyfile", steps=2, out="bundle.json"
    )
    public = tmp_path / "k.pub"
    public.write_text(key.text() + "\n", encoding="ascii")
    origin = ("--origin", log.origin)

    by_option = _verify_bundle(monkeypatch, bundle, "--public-key-file", str(public), *origin)
    by_setting = _cli(
        monkeypatch, "verify-bundle", str(bundle), *origin, RUN_PROOF_PUBLIC_KEY_FILE=str(public)
    )
    both = _verify_bundle(
        monkeypatch, bundle, "--public-key", key.text(), "--public-key-file", str(public), *origin
    )
    both_set = _cli(
        monkeypatch,
        "verify-bundle",
        str(bundle),
        *origin,
        RUN_PROOF_PUBLIC_KEY=key.text(),
        RUN_PROOF_PUBLIC_KEY_FILE=str(public),
    )
    path_as_text = _verify_bundle(monkeypatch, bundle, "--public-key", str(public), *origin)

    assert by_option.exit_code == 0, by_option.output
    assert f"key id {key.id.hex()} (from --public-key-file {public})" in by_option.output
    assert by_setting.exit_code == 0, by_setting.output
    assert f"(from RUN_PROOF_PUBLIC_KEY_FILE {public})" in by_setting.output
    assert both.exit_code == 2
    assert "both --public-key and --public-key-file are given" in both.output
    assert both_set.exit_code == 2
    assert "both RUN_PROOF_PUBLIC_KEY and RUN_PROOF_PUBLIC_KEY_FILE are given" in both_set.output
    assert path_as_text.exit_code == 2
    assert "this value is the key's text, never a path" in path_as_text.output


def test_the_ledger_settings_never_guess_a_key_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every verify path's key (checkpoint verify, verify, sweep, export) comes from here."""
    key = generate_signing_key("run-proof.local/x")
    monkeypatch.chdir(tmp_path)
    planted = Path(key.verifier().text())
    planted.parent.mkdir(parents=True)
    planted.write_text(generate_signing_key("run-proof.local/x").verifier().text())
    public = tmp_path / "x.pub"
    public.write_text(key.verifier().text())
    private = tmp_path / "x.key"
    write_signing_key(private, key)

    def settings(**values: str) -> LedgerSettings:
        return LedgerSettings(**values)  # type: ignore[arg-type]

    assert settings(public_key_value=key.verifier().text()).verifier_key() == key.verifier()
    assert settings(public_key_file_path=str(public)).verifier_key() == key.verifier()
    assert settings(signing_key_path=str(private)).verifier_key() == key.verifier()
    with pytest.raises(
        ConfigError, match="both RUN_PROOF_PUBLIC_KEY and RUN_PROOF_PUBLIC_KEY_FILE"
    ):
        settings(
            public_key_value=key.verifier().text(), public_key_file_path=str(public)
        ).verifier_key()
    with pytest.raises(ConfigError, match="RUN_PROOF_PUBLIC_KEY_FILE takes the path of a key file"):
        settings(public_key_file_path=key.verifier().text()).verifier_key()
    # A signing key given as text is refused, not taken as a path where a new key is made.
    with pytest.raises(ConfigError, match="RUN_PROOF_SIGNING_KEY takes the path of a key file"):
        settings(signing_key_path=key.text()).ensure_signing_key("run-proof.local/x")
    assert not Path("PRIVATE+KEY+run-proof.local").exists()


# -- class 7 -------------------------------------------------------------------------------


def test_two_logs_sharing_one_key_cannot_pass_for_each_other(
    new_database: NewDatabase, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    monkeypatch = clean_env
    a = _log(new_database, tmp_path, "log_a")
    b = _log(new_database, tmp_path, "log_b")
    shared = tmp_path / "shared.key"
    record_run(a.url, "tenant-a", "run-1", steps=3)
    record_run(b.url, "tenant-a", "run-1", steps=4)
    assert _checkpoint(a, monkeypatch, shared).exit_code == 0
    key = _key(shared)
    # B's checkpoint with the same key, as `checkpoint create` wrote it before it refused a
    # key named for another origin: B's own origin, signed by A's key.
    entries = ledger_entries(b.url)
    head = Checkpoint(b.origin, len(entries), root_from_leaves([e.leaf() for e in entries]))
    write_checkpoint(b.directory, sign_checkpoint(head, key))
    bundle_a = _export(a, monkeypatch, key.verifier(), tmp_path / "a.json")
    bundle_b = _export(b, monkeypatch, key.verifier(), tmp_path / "b.json")
    relabelled = tmp_path / "b-as-a.json"
    data = json.loads(bundle_b.read_text(encoding="utf-8"))
    data["ledger"]["origin"] = a.origin  # the unsigned field, edited
    relabelled.write_text(json.dumps(data), encoding="utf-8")
    trusted = ("--public-key", key.verifier().text())

    a_as_a = _verify_bundle(monkeypatch, bundle_a, *trusted, "--origin", a.origin)
    b_as_b = _verify_bundle(monkeypatch, bundle_b, *trusted, "--origin", b.origin)
    a_as_b = _verify_bundle(monkeypatch, bundle_a, *trusted, "--origin", b.origin)
    b_as_a = _verify_bundle(monkeypatch, bundle_b, *trusted, "--origin", a.origin)
    relabelled_as_a = _verify_bundle(monkeypatch, relabelled, *trusted, "--origin", a.origin)
    by_setting = _cli(
        monkeypatch,
        "verify-bundle",
        str(bundle_a),
        *trusted,
        RUN_PROOF_CHECKPOINT_ORIGIN=b.origin,
    )

    assert a_as_a.exit_code == 0, a_as_a.output
    assert f"origin: {a.origin}\n" in a_as_a.output
    assert f"origin: ok - log {a.origin!r}, as expected" in a_as_a.output
    assert b_as_b.exit_code == 0, b_as_b.output
    for result, found, expected in (
        (a_as_b, a.origin, b.origin),
        (b_as_a, b.origin, a.origin),
        (relabelled_as_a, b.origin, a.origin),
        (by_setting, a.origin, b.origin),
    ):
        assert result.exit_code == 1, result.output
        assert f"origin: {expected}\n" in result.output
        assert (
            f"origin: FAILED - the bundle is of log {found!r}, expected origin {expected!r}"
        ) in result.output
        assert "verification_status: FAILED" in result.output


def test_verify_bundle_without_an_expected_origin_is_a_usage_error(
    tmp_path: Path,
) -> None:
    key = generate_signing_key("run-proof.local/x").verifier()
    bundle = tmp_path / "bundle.json"
    bundle.write_text("{}", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in KEY_SETTINGS}

    completed = subprocess.run(
        [CLI, "verify-bundle", str(bundle), "--public-key", key.text()],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr.splitlines() == [
        "run-proof: verify-bundle needs the origin of the log the bundle must be of: "
        "--origin ORIGIN or RUN_PROOF_CHECKPOINT_ORIGIN (a key alone does not say which log it "
        "signed for)"
    ]


def test_checkpoint_create_refuses_a_key_named_for_another_origin(
    new_database: NewDatabase, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    monkeypatch = clean_env
    a = _log(new_database, tmp_path, "log_a")
    b = _log(new_database, tmp_path, "log_b")
    shared = tmp_path / "shared.key"
    record_run(a.url, "tenant-a", "run-1", steps=1)
    record_run(b.url, "tenant-a", "run-1", steps=1)
    assert _checkpoint(a, monkeypatch, shared).exit_code == 0
    before = shared.read_bytes()

    refused = _checkpoint(b, monkeypatch, shared)
    # The same with the origin set explicitly to B's.
    refused_set = _checkpoint(b, monkeypatch, shared, RUN_PROOF_CHECKPOINT_ORIGIN=b.origin)

    for result in (refused, refused_set):
        assert result.exit_code == 2, result.output
        # The command's own line, after the line saying which database it used.
        assert [line for line in result.output.splitlines() if line.startswith("run-proof:")] == [
            f"run-proof: configuration error: checkpoint refused: the signing key is named "
            f"{a.origin!r}, not this log's origin {b.origin!r}; a log signs only with a key "
            "named by its origin (C2SP tlog-checkpoint), so each database needs its own key"
        ]
    # Nothing written: no checkpoint (the directory may exist: `checkpoint create` makes it).
    assert not b.directory.exists() or list(b.directory.iterdir()) == []
    assert shared.read_bytes() == before
    assert len(list(a.directory.iterdir())) == 1
