"""`run-proof db harden`: least-privilege roles and tenant row-level security (opt-in)."""

from __future__ import annotations

import psycopg
import typer
from pydantic import ValidationError

from run_proof_pipeline.cli.errors import CommandError, handled
from run_proof_pipeline.errors import ExitCode


@handled
def db_harden(
    writer_role: str = typer.Option("run_proof_writer", help="Role for producers."),
    verifier_role: str = typer.Option("run_proof_verifier", help="Read-only role for proofs."),
    tenant: list[str] = typer.Option(
        [],
        "--tenant",
        help="Bind the writer role to exactly these tenants (repeatable).",
    ),
    all_tenants: bool = typer.Option(
        False,
        "--all-tenants",
        help="Bind the writer role to every tenant (one producer role for all, as AOS).",
    ),
) -> None:
    """Opt-in: create the writer and verifier roles, bind the writer to its tenants, and
    apply row-level security by tenant. Without --tenant/--all-tenants the writer's
    bindings stay as they are."""
    # Deferred: main.py imports this module to register it.
    from run_proof_pipeline.cli.database import announced_database
    from run_proof_pipeline.store.harden import TenantScope, harden

    try:
        scope = TenantScope(tenants=tuple(tenant), all_tenants=all_tenants)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise CommandError(f"db harden: {reason}", ExitCode.USAGE) from None
    resolved = announced_database()
    try:
        summary = harden(
            resolved.url, writer_role=writer_role, verifier_role=verifier_role, scope=scope
        )
    except psycopg.errors.InsufficientPrivilege as exc:
        raise CommandError(
            f"db harden needs the owner of the trace tables, with CREATEROLE, or a superuser:"
            f" {str(exc).strip().splitlines()[0]}; nothing was changed",
            ExitCode.USAGE,
        ) from None
    except psycopg.DatabaseError as exc:
        if isinstance(exc, psycopg.OperationalError):
            raise
        raise CommandError(
            f"db harden failed, nothing was changed: {str(exc).strip().splitlines()[0]}",
            ExitCode.FAILED,
        ) from None
    for line in summary:
        print(line)


def register(db_app: typer.Typer) -> None:
    db_app.command("harden")(db_harden)
