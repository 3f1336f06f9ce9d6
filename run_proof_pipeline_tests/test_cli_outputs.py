"""Issue 12: `--out` paths that cannot take the file (export's bundle, checkpoint create's
note) are one line on stderr, exit 2, and leave nothing behind: no partial or temp file, an
existing file byte for byte as it was. `export --out EXISTING` is refused unless --force,
which replaces it atomically (a new file under the name, never the old one truncated).

Most cases run in process (CliRunner, stderr apart); the file-size-limit case needs a real
process (a limit of its own, and Python's exit).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from run_proof_pipeline.cli.main import app
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.cli_process import CLI, file_size_limit, run_process
from run_proof_pipeline_tests.support.stores import recorded_store

TENANT, RUN = "tenant-o", "run-out"
OLD = b'{"a key file, or anything": "that must survive"}\n'
# Settings a developer's shell could set; each case gives its own.
_LEDGER_ENV = (
    "RUN_PROOF_CHECKPOINT_DIR",
    "RUN_PROOF_SIGNING_KEY",
    "RUN_PROOF_PUBLIC_KEY",
    "RUN_PROOF_PUBLIC_KEY_FILE",
    "RUN_PROOF_CHECKPOINT_ORIGIN",
)


@pytest.fixture(scope="module")
def out_store(pg_server: LocalPostgres) -> Iterator[DatabaseUrl]:
    """One store for the module: a sealed run of 3 steps; the cases only read it (and sign
    its ledger)."""
    with recorded_store(pg_server, "outputs", TENANT, RUN, steps=3) as made:
        yield made.url


def _env(url: DatabaseUrl, **settings: str) -> dict[str, str | None]:
    env: dict[str, str | None] = dict.fromkeys(_LEDGER_ENV)
    env.update(DATABASE_URL=url.libpq(), USE_POSTGRES_TRACES=None, **settings)
    return env


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


def _cli(url: DatabaseUrl, *args: str, **settings: str) -> Outcome:
    result = CliRunner().invoke(app, list(args), env=_env(url, **settings))
    # An exception other than the exit itself would be a traceback in a real process.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return Outcome(result.exit_code, result.stdout, result.stderr)


def _export(url: DatabaseUrl, out: Path | str, *extra: str) -> Outcome:
    return _cli(url, "export", "--tenant-id", TENANT, "--run-id", RUN, "--out", str(out), *extra)


def _one_line(outcome: Outcome, code: int, *needles: str) -> str:
    assert outcome.code == code, outcome
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("run-proof: "), outcome.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in outcome.stderr + outcome.stdout
    return lines[0]


def _entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _unwritable_dir(tmp_path: Path) -> Path:
    """A folder no new file can be created in: read-only permissions for a normal user;
    root passes those, so then /sys (sysfs creates no file, even for root)."""
    if os.geteuid() == 0:
        return Path("/sys")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    return locked


# --- export --out --------------------------------------------------------------------------


def test_export_over_an_existing_file_is_refused_and_the_file_is_untouched(
    out_store: DatabaseUrl, tmp_path: Path
) -> None:
    existing = tmp_path / "signing.key"
    existing.write_bytes(OLD)
    before = existing.stat()

    outcome = _export(out_store, existing)

    line = _one_line(outcome, 2, f"--out {existing} exists already", "pass --force")
    assert line.endswith("nothing was written (pass --force to replace it)")
    assert existing.read_bytes() == OLD
    assert existing.stat().st_ino == before.st_ino and existing.stat().st_mtime_ns == (
        before.st_mtime_ns
    )
    assert _entries(tmp_path) == ["signing.key"]  # no temp file either
    assert outcome.stdout == ""  # refused before the database is even named


def test_export_force_replaces_the_file_atomically(out_store: DatabaseUrl, tmp_path: Path) -> None:
    existing = tmp_path / "bundle.json"
    existing.write_bytes(OLD)
    old_inode = existing.stat().st_ino
    with existing.open("rb") as reader:  # a reader of the old file while it is replaced
        outcome = _export(out_store, existing, "--force")

        assert outcome.code == 0, outcome
        assert reader.read() == OLD  # the old file was replaced, never truncated or rewritten
    bundle = json.loads(existing.read_text(encoding="utf-8"))
    assert (bundle["trace"]["run_id"], len(bundle["steps"])) == (RUN, 3)
    assert existing.stat().st_ino != old_inode
    assert _entries(tmp_path) == ["bundle.json"]
    assert f"bundle written: {existing} (3 steps" in outcome.stdout


def test_export_force_replaces_a_symbolic_link_not_what_it_points_to(
    out_store: DatabaseUrl, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.key"
    victim.write_bytes(OLD)
    link = tmp_path / "bundle.json"
    link.symlink_to(victim)

    refused = _export(out_store, link)
    _one_line(refused, 2, "exists already", "pass --force")
    forced = _export(out_store, link, "--force")

    assert forced.code == 0, forced
    assert victim.read_bytes() == OLD
    assert not link.is_symlink() and json.loads(link.read_text())["trace"]["run_id"] == RUN


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("directory", "is a directory: give a file name; nothing was written"),
        ("missing-folder", "does not exist; nothing was written"),
        ("folder-is-a-file", "is not a folder; nothing was written"),
        ("dangling-link", "exists already: nothing was written (pass --force to replace it)"),
        ("unwritable", "Permission denied; nothing was written"),
    ],
    ids=["directory", "missing-folder", "folder-is-a-file", "dangling-link", "unwritable"],
)
def test_export_to_a_path_that_cannot_take_the_bundle_is_one_line_and_writes_nothing(
    out_store: DatabaseUrl, tmp_path: Path, case: str, needle: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "plain-file").write_bytes(OLD)
    target = {
        "directory": work,
        "missing-folder": work / "no-such-folder" / "bundle.json",
        "folder-is-a-file": work / "plain-file" / "bundle.json",
        "dangling-link": work / "link.json",
        "unwritable": _unwritable_dir(tmp_path) / f"bundle-{uuid.uuid4().hex[:8]}.json",
    }[case]
    if case == "dangling-link":
        target.symlink_to(work / "nowhere.json")
    before = _entries(work)
    unwritable_before = _entries(target.parent) if case == "unwritable" else []

    line = _one_line(_export(out_store, target), 2, needle)

    assert f"--out {target}" in line
    assert _entries(work) == before
    assert (work / "plain-file").read_bytes() == OLD
    assert not (work / "no-such-folder").exists()
    if case == "unwritable":
        assert _entries(target.parent) == unwritable_before


def test_export_to_dev_full_is_one_line_exit_2(out_store: DatabaseUrl) -> None:
    # A device is written straight (as `--out /dev/stdout` is), never replaced by a file.
    outcome = _export(out_store, "/dev/full", "--force")

    _one_line(outcome, 2, "cannot write --out /dev/full: No space left on device")
    assert Path("/dev/full").is_char_device()


def test_a_file_size_limit_mid_write_leaves_the_old_file_and_no_temp_file(
    out_store: DatabaseUrl, tmp_path: Path
) -> None:
    """A real process whose writes stop at 1 KiB (RLIMIT_FSIZE: EFBIG, as a full disk's
    ENOSPC would stop them): --force must not have damaged the file it was to replace."""
    existing = tmp_path / "bundle.json"
    existing.write_bytes(OLD)
    env = {k: v for k, v in os.environ.items() if k not in _LEDGER_ENV}
    env["DATABASE_URL"] = out_store.libpq()

    completed = run_process(
        [CLI, "export", "--tenant-id", TENANT, "--run-id", RUN, "--out", str(existing), "--force"],
        env,
        preexec_fn=file_size_limit(1024),  # the child's own limit, set before exec
    )

    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.splitlines() == [
        f"run-proof: cannot write --out {existing}: File too large; nothing was written "
        "(the old file is unchanged)"
    ]
    assert existing.read_bytes() == OLD
    assert _entries(tmp_path) == ["bundle.json"]


# --- checkpoint create --out ------------------------------------------------------------


@pytest.fixture
def signing_settings(tmp_path: Path) -> dict[str, str]:
    """Settings under which checkpoint create would create a new key: refused targets must
    refuse before it does."""
    return {"RUN_PROOF_SIGNING_KEY": str(tmp_path / "keys" / "ledger.key")}


def _create(url: DatabaseUrl, out: Path | str, settings: dict[str, str]) -> Outcome:
    return _cli(url, "checkpoint", "create", "--out", str(out), **settings)


def test_checkpoint_create_never_overwrites_an_existing_note(
    out_store: DatabaseUrl, tmp_path: Path, signing_settings: dict[str, str]
) -> None:
    existing = tmp_path / "latest.note"
    existing.write_bytes(OLD)

    outcome = _create(out_store, existing, signing_settings)

    _one_line(
        outcome,
        2,
        f"checkpoint {existing} exists already: never overwritten; nothing was written",
        "give a new file name or a directory",
    )
    assert existing.read_bytes() == OLD
    assert not (tmp_path / "keys").exists()  # refused before a key was created
    assert _entries(tmp_path) == ["latest.note"]


@pytest.mark.parametrize("case", ["unwritable-folder", "unwritable-file", "dev-full"])
def test_checkpoint_create_to_an_unwritable_path_is_one_line_and_writes_nothing(
    out_store: DatabaseUrl, tmp_path: Path, signing_settings: dict[str, str], case: str
) -> None:
    locked = _unwritable_dir(tmp_path)
    target, needle = {
        "unwritable-folder": (locked / f"cps-{uuid.uuid4().hex[:8]}", "cannot create"),
        "unwritable-file": (locked / f"cp-{uuid.uuid4().hex[:8]}.note", "cannot write"),
        "dev-full": (Path("/dev/full"), "exists already: never overwritten"),
    }[case]
    before = _entries(locked)

    outcome = _create(out_store, target, signing_settings)

    line = _one_line(outcome, 2, needle, "nothing was written")
    assert str(target) in line
    assert _entries(locked) == before
    assert not (tmp_path / "keys").exists()  # the target is tried before a key is created
    assert "checkpoint written" not in outcome.stdout


def test_checkpoint_create_writes_a_new_note_file_once(
    out_store: DatabaseUrl, tmp_path: Path, signing_settings: dict[str, str]
) -> None:
    # The control: the same options on a free name succeed, then the name is taken.
    target = tmp_path / "first.note"
    created = _create(out_store, target, signing_settings)
    assert created.code == 0, created
    note: Any = target.read_bytes()

    again = _create(out_store, target, signing_settings)

    _one_line(again, 2, "never overwritten")
    assert target.read_bytes() == note
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.note", "keys"]


@pytest.mark.slow
def test_checkpoint_create_stopped_mid_write_leaves_no_partial_note(
    out_store: DatabaseUrl, tmp_path: Path
) -> None:
    """A real process whose writes stop at 64 bytes (RLIMIT_FSIZE, EFBIG, as a full disk):
    the checkpoint directory holds no partial note and no temp file afterwards."""
    from run_proof_pipeline.ledger.keys import generate_signing_key, write_signing_key
    from run_proof_pipeline.ledger.settings import default_origin

    key = tmp_path / "ledger.key"
    write_signing_key(key, generate_signing_key(default_origin(out_store.database)))
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in _LEDGER_ENV}
    env.update(DATABASE_URL=out_store.libpq(), RUN_PROOF_SIGNING_KEY=str(key))

    completed = run_process(
        [CLI, "checkpoint", "create", "--out", str(directory)],
        env,
        preexec_fn=file_size_limit(64),  # the child's own limit, set before exec
    )

    assert completed.returncode == 2, completed.stderr
    [line] = completed.stderr.splitlines()
    assert line.startswith(f"run-proof: cannot write checkpoint {directory}/checkpoint-")
    assert line.endswith(": File too large; nothing was written")
    assert _entries(directory) == []
    assert "checkpoint written" not in completed.stdout
