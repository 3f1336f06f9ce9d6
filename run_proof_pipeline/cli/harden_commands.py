"""`run-proof db harden`: least-privilege roles and tenant row-level security (opt-in)."""

from __future__ import annotations

import typer

from run_proof_pipeline.cli.errors import handled


@handled
def db_harden(
    writer_role: str = typer.Option("run_proof_writer", help="Role for producers."),
    verifier_role: str = typer.Option("run_proof_verifier", help="Read-only role for proofs."),
) -> None:
    """Opt-in: create the writer and verifier roles and tenant row-level security."""
    # Deferred: main.py imports this module to register it.
    from run_proof_pipeline.cli.main import _database
    from run_proof_pipeline.store.harden import harden

    resolved = _database()
    summary = harden(resolved.url, writer_role=writer_role, verifier_role=verifier_role)
    for line in summary:
        print(line)


def register(db_app: typer.Typer) -> None:
    db_app.command("harden")(db_harden)
