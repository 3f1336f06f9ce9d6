"""`run-proof checkpoint create|verify`, `export` and `verify-bundle`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from run_proof_pipeline.cli.errors import CommandError, handled, output_lost, record_outcome, say
from run_proof_pipeline.errors import ExitCode
from run_proof_pipeline.store.engine import ResolvedDatabase

if TYPE_CHECKING:
    from run_proof_pipeline.ledger.keys import VerifierKey

checkpoint_app = typer.Typer(
    help="Signed checkpoints of the ledger of run roots, kept outside the database."
)


def _resolved(*, machine_output: bool = False) -> ResolvedDatabase:
    # Deferred: main.py imports this module to register it.
    from run_proof_pipeline.cli.database import announced_database

    return announced_database(machine_output=machine_output)


@checkpoint_app.command("create")
@handled
def checkpoint_create(
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Directory (created if missing) or a new .note file, never overwritten; default: "
        "$RUN_PROOF_CHECKPOINT_DIR.",
    ),
) -> None:
    """Sign the ledger's current size and tree head (C2SP tlog-checkpoint, Ed25519)."""
    from run_proof_pipeline.ledger.create import create_checkpoint
    from run_proof_pipeline.ledger.settings import load_ledger_settings
    from run_proof_pipeline.store.engine import run_on_connection

    resolved = _resolved()
    settings = load_ledger_settings()
    # CheckpointRefused is a RunProofError ("checkpoint refused: ...", exit 1): cli/errors.py.
    created = run_on_connection(
        resolved.url, lambda conn: create_checkpoint(conn, settings, out=out), snapshot=True
    )
    checkpoint = created.signed.checkpoint
    record_outcome(f"checkpoint {created.path} is written (tree size {checkpoint.size})")
    if created.key_warning:
        say(created.key_warning)
    print(f"checkpoint written: {created.path}")
    print(f"origin: {checkpoint.origin}")
    print(f"tree_size: {checkpoint.size}")
    print(f"root_hash: {checkpoint.root.hex()}")
    if created.previous_size is not None:
        print(f"consistent with the previous checkpoint (tree size {created.previous_size})")


@checkpoint_app.command("verify")
@handled
def checkpoint_verify(
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="A checkpoint file; default: the latest in the directory."
    ),
) -> None:
    """Check the ledger against the latest signed checkpoint and every run it records (their
    seal columns and format, not their rows: no step is re-hashed; `verify` and `sweep` do)."""
    from run_proof_pipeline.ledger.audit import audit_ledger
    from run_proof_pipeline.ledger.settings import load_ledger_settings
    from run_proof_pipeline.store.engine import run_on_connection

    settings = load_ledger_settings()
    if checkpoint is None and settings.checkpoint_dir() is None:
        raise CommandError(
            "RUN_PROOF_CHECKPOINT_DIR is not set (or pass --checkpoint FILE)", ExitCode.USAGE
        )
    if checkpoint is not None and not checkpoint.is_file():
        raise CommandError(f"no checkpoint file at {checkpoint}", ExitCode.USAGE)
    resolved = _resolved()
    report = run_on_connection(
        resolved.url,
        lambda conn: audit_ledger(conn, settings, checkpoint=checkpoint),
        snapshot=True,
    )
    print(f"origin: {report.origin}")
    print(f"ledger_size: {report.size}")
    print(f"ledger_root: {report.root.hex()}")
    if report.checkpoint_path is not None:
        print(f"checkpoint: {report.checkpoint_path} (tree size {report.checkpoint_size})")
    print(
        "scope: attests the ledger (signed checkpoint, entries, each recorded run's trace row); "
        "no step row is re-hashed (run `run-proof verify` or `run-proof sweep --full` for that)"
    )
    for note in report.notes:
        print(f"NOTE: {note}")
    for problem in report.problems:
        print(f"INCONSISTENT: {problem}")
    if not report.ok:
        raise CommandError(
            f"{len(report.problems)} inconsistencies in the ledger (listed above)",
            ExitCode.FAILED,
        )
    if report.checkpoint_path is None:
        raise CommandError(
            f"no checkpoint for origin {report.origin!r} yet (run `run-proof checkpoint create`)",
            ExitCode.NOT_FOUND,
        )
    print(
        "ledger consistent with the signed checkpoint; every recorded run's trace is present "
        "in its format (v1 or v2) with its recorded seal and length (the ledger is attested; "
        "the rows were not re-hashed)"
    )


# `--out` of export: never a partial file, and an existing file only with --force.
_FORCE_HINT = "pass --force to replace it"


@handled
def export(
    tenant_id: str = typer.Option(..., "--tenant-id", help="Tenant of the run."),
    run_id: str = typer.Option(..., "--run-id", help="Run to export."),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Bundle file (written whole or not at all; never over an existing file without "
        "--force); default: stdout.",
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace an existing --out file (atomically: old or new, whole)."
    ),
) -> None:
    """Write a run's offline proof bundle (JSON): trace, steps, ledger proof, checkpoint."""
    from run_proof_pipeline.bundle.export import export_bundle
    from run_proof_pipeline.cli.progress import UPDATE_EVERY, step_progress_bar
    from run_proof_pipeline.ledger.checkpoint_files import check_output_path, write_output_file
    from run_proof_pipeline.ledger.settings import load_ledger_settings
    from run_proof_pipeline.store.engine import run_on_connection

    # Refused before the database is read: a path that cannot take the bundle, or no
    # standard output to write it to.
    if out is not None:
        check_output_path(out, name="--out", replace=force, replace_hint=_FORCE_HINT)
    else:
        _stdout_usable()
    resolved = _resolved(machine_output=out is None)
    settings = load_ledger_settings()
    # RunNotFound (exit 4) and Unexportable (exit 1) are RunProofErrors: cli/errors.py.
    # A bar only when the bundle goes to a file: on stdout it would corrupt the JSON.
    with step_progress_bar(enabled=out is not None) as progress:
        bundle = run_on_connection(
            resolved.url,
            lambda conn: export_bundle(
                conn,
                settings,
                tenant_id,
                run_id,
                progress=progress,
                progress_every=UPDATE_EVERY,
            ),
            snapshot=True,
        )
    text = bundle.model_dump_json(indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
        _stdout_usable(written=True)
        return
    write_output_file(
        out, text.encode("utf-8"), name="--out", replace=force, replace_hint=_FORCE_HINT
    )
    covered = "with" if bundle.ledger.checkpoint else "WITHOUT"
    print(f"bundle written: {out} ({len(bundle.steps)} steps, {covered} a signed checkpoint)")


def _stdout_usable(*, written: bool = False) -> None:
    """The bundle is export's output: standard output lost (closed, a broken pipe, a full
    device) is a failure to export (exit 2), not an output merely lost."""
    why = output_lost()
    if why is None:
        return
    done = "was not written whole" if written else "cannot be written"
    raise CommandError(
        f"the bundle {done}: {why}; write it to a file with --out FILE", ExitCode.USAGE
    )


def _bundle_key(text: str | None, file: str | None) -> tuple[VerifierKey, str]:
    """The trusted key and where it came from: the options, else the settings. Key text and
    key file are separate options and settings, each read only as what its name says."""
    from run_proof_pipeline.ledger.keys import verifier_key_from
    from run_proof_pipeline.ledger.settings import load_ledger_settings

    if text is not None or file is not None:
        names = ("--public-key", "--public-key-file")
        # KeyProblem is a RunProofError (exit 2): cli/errors.py.
        key = verifier_key_from(text, file, text_setting=names[0], file_setting=names[1])
        if key is None:
            raise CommandError("--public-key / --public-key-file is empty", ExitCode.USAGE)
        return key, names[0] if text is not None else f"{names[1]} {file}"
    settings = load_ledger_settings()
    key = settings.public_key_setting()
    if key is None:
        raise CommandError(
            "a public key is needed: --public-key KEY_TEXT or --public-key-file PATH (or "
            "RUN_PROOF_PUBLIC_KEY / RUN_PROOF_PUBLIC_KEY_FILE)",
            ExitCode.USAGE,
        )
    if (settings.public_key_value or "").strip():
        return key, "RUN_PROOF_PUBLIC_KEY"
    return key, f"RUN_PROOF_PUBLIC_KEY_FILE {(settings.public_key_file_path or '').strip()}"


@handled
def verify_bundle(
    path: Path = typer.Argument(..., help="A bundle written by `run-proof export`."),
    public_key: str | None = typer.Option(
        None,
        "--public-key",
        help="The verifier key's text (name+id+base64), never a path; "
        "default: $RUN_PROOF_PUBLIC_KEY.",
    ),
    public_key_file: str | None = typer.Option(
        None,
        "--public-key-file",
        help="The path of a file holding the verifier key; default: $RUN_PROOF_PUBLIC_KEY_FILE.",
    ),
    origin: str | None = typer.Option(
        None,
        "--origin",
        help="The log the bundle must be of (its checkpoint origin); "
        "default: $RUN_PROOF_CHECKPOINT_ORIGIN. Required.",
    ),
) -> None:
    """Verify a proof bundle with no database: origin, chain, ledger entry, checkpoint,
    inclusion."""
    from run_proof_pipeline.bundle.verify import verify_bundle_text
    from run_proof_pipeline.ledger.settings import load_ledger_settings

    key, key_source = _bundle_key(public_key, public_key_file)
    expected = (origin or "").strip() or load_ledger_settings().expected_origin()
    if expected is None:
        raise CommandError(
            "verify-bundle needs the origin of the log the bundle must be of: --origin ORIGIN "
            "or RUN_PROOF_CHECKPOINT_ORIGIN (a key alone does not say which log it signed for)",
            ExitCode.USAGE,
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read bundle {path}: {exc}", ExitCode.USAGE) from None
    report = verify_bundle_text(text, key, origin=expected)
    print(f"origin: {expected}")
    print(f"public_key: key id {key.id.hex()} (from {key_source})")
    for check in report.checks:
        print(f"{check.name}: {'ok' if check.ok else 'FAILED'} - {check.detail}")
    print(f"verification_status: {report.status}")
    if not report.ok:
        first = report.failures[0]
        raise CommandError(f"bundle {path}: {first.name}: {first.detail}", ExitCode.FAILED)


def register(app: typer.Typer, db_app: typer.Typer) -> None:
    app.add_typer(checkpoint_app, name="checkpoint")
    app.command("export")(export)
    app.command("verify-bundle")(verify_bundle)
