"""The trace store as a Dagster resource.

Its fields default to the environment the seed's plan sets (DATABASE_URL,
USE_POSTGRES_TRACES), read when a run starts, so a missing variable is reported by the
plan's preconditions step with its name rather than failing the code location's load.
The URL's password never reaches Dagster's storage from here: steps show
`DatabaseUrl.redacted()` only (settings.py), and a deployment that sets `database_url`
itself should pass `EnvVar("DATABASE_URL")`, which Dagster stores by name only.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

from dagster import ConfigurableResource
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.adoption.kinds import TraceKindCounts, count_trace_kinds
from run_proof_pipeline.coordinator import RunProofResult, get_run_proof_coordinator
from run_proof_pipeline.plan.latest_sealed import LatestProof, prove_latest_sealed
from run_proof_pipeline.plan.queries import TraceRef, latest_sealed_trace
from run_proof_pipeline.settings import ConfigError, DatabaseUrl, Settings
from run_proof_pipeline.store.engine import run_in_session, run_on_connection
from run_proof_pipeline.sweep.tenants import sealed_tenants

T = TypeVar("T")


class TraceStoreResource(ConfigurableResource):
    """Where the traces live. Never falls back to the embedded default or another store."""

    # repr=False: the URL may carry a password, and a resource's repr ends up in logs.
    database_url: str | None = Field(
        default=None,
        repr=False,
        description=(
            "PostgreSQL URL of the trace store; default: $DATABASE_URL. Give it as "
            "EnvVar('...') rather than as text: Dagster stores run config as given."
        ),
    )
    use_postgres_traces: str | None = Field(
        default=None, description="Must be true (the seed's precondition); default: env"
    )

    def settings(self) -> Settings:
        return Settings(
            DATABASE_URL=self.database_url or os.environ.get("DATABASE_URL"),
            USE_POSTGRES_TRACES=self.use_postgres_traces or os.environ.get("USE_POSTGRES_TRACES"),
        )

    def url(self) -> DatabaseUrl:
        url = self.settings().database_url()
        if url is None:
            raise ConfigError(
                "DATABASE_URL is not set: the plan needs the target database "
                "(the README's main command starts the embedded server and sets it)"
            )
        return url

    # --- what ops, schedules, sensors and checks ask of the trace store -----------------

    def on_connection(
        self, work: Callable[[AsyncConnection], Awaitable[T]], *, snapshot: bool = False
    ) -> T:
        """Run `work` on one connection to the trace store (`snapshot=True`: in a read-only
        REPEATABLE READ snapshot under the pinned settings); store/engine.py's one bridge."""
        return run_on_connection(self.url(), work, snapshot=snapshot)

    def latest_sealed(self) -> TraceRef | None:
        """The latest sealed trace (what the nightly schedule proves), or None."""
        return self.on_connection(latest_sealed_trace)

    def prove_latest_sealed(self) -> LatestProof | None:
        """The latest sealed trace proved, with its step count (the on-demand checks)."""
        return prove_latest_sealed(self.url())

    def sealed_tenants(self) -> list[str]:
        """The tenants with sealed traces: the sweep's partitions."""
        return sealed_tenants(self.url())

    def trace_kinds(self, tenant_id: str) -> TraceKindCounts:
        """Legacy, adopted, native and retired traces of a tenant, side by side."""
        return self.on_connection(lambda conn: count_trace_kinds(conn, tenant_id))

    def prove(
        self,
        tenant_id: str,
        run_id: str,
        *,
        workers: int | None,
        parallel_min_steps: int,
        progress_every: int,
        progress: Callable[[int, int | None], None] | None = None,
        step_summary_limit: int = 1000,
    ) -> RunProofResult:
        """The test plan's production path (docs/test-plan.md, Step 3): AOS's session
        factory and `RunProofCoordinator.get_run_proof`. With no `database_url` of its own
        the resource uses `get_session()` exactly as the plan names it; an explicit URL
        overrides the environment."""
        url = self.url()
        coordinator = get_run_proof_coordinator(
            workers=workers, parallel_min_steps=parallel_min_steps, progress_every=progress_every
        )
        # A session, not one connection: the coordinator's own snapshot and segment workers.
        return run_in_session(
            None if self.database_url is None else url,
            lambda session: coordinator.get_run_proof(
                session,
                tenant_id,
                run_id,
                step_summary_limit=step_summary_limit,
                progress=progress,
            ),
        )
