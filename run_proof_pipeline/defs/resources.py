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

from dagster import ConfigurableResource
from pydantic import Field

from run_proof_pipeline.settings import ConfigError, DatabaseUrl, Settings


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
