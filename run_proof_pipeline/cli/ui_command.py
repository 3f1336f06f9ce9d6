"""`run-proof ui`: the Dagster UI and daemon (`dagster dev`) on the PostgreSQL-backed instance."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from run_proof_pipeline.cli.errors import handled


@handled
def ui(
    port: int = typer.Option(3000, help="Port of the Dagster UI (loopback only)."),
) -> None:
    """Start the Dagster UI and daemon (dagster dev) on the PostgreSQL-backed instance."""
    import subprocess

    from run_proof_pipeline.cli.dagster_env import dagster_environment

    # Deferred: main.py imports this module to register it.
    from run_proof_pipeline.cli.main import _database, _embedded_store_ready
    from run_proof_pipeline.plan.coordinator_tests import project_root

    resolved = _database()
    if resolved.embedded:
        _embedded_store_ready(resolved)
    environment = dagster_environment(resolved)
    print(f"Dagster UI on http://127.0.0.1:{port} (DAGSTER_HOME={environment.home})")
    command = [
        str(Path(sys.executable).with_name("dagster")),
        "dev",
        "-w",
        str(project_root() / "workspace.yaml"),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    raise typer.Exit(subprocess.run(command, env=environment.env, check=False).returncode)


def register(app: typer.Typer) -> None:
    app.command("ui")(ui)
