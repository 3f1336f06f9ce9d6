"""Where the traces live, read from the environment the way the seed's plan sets it.

The seed's rule "no workarounds" is enforced here: a URL that is not PostgreSQL, or
`USE_POSTGRES_TRACES` set to anything but true, is refused before any connection is made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the variable and the value."""


_POSTGRES_SCHEMES = {
    "postgresql",
    "postgres",
    "postgresql+psycopg",
    "postgresql+psycopg2",
    "postgresql+asyncpg",
}
_TRUE_VALUES = {"true", "1", "yes", "on"}

# Matches the password part of anything that looks like a URL, even one too broken to parse.
_PASSWORD_IN_URL = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)@")


def redact(text: str) -> str:
    """Replace every URL password in `text` with `***` (for logs, errors and reports)."""
    return _PASSWORD_IN_URL.sub(lambda m: f"{m.group('head')}***@", text)


def _redact_unparsed(raw: str) -> str:
    """A value too broken to parse: whatever sits between the first ':' and the last '@'
    may be a password."""
    if "@" not in raw or ":" not in raw.split("@")[0]:
        return redact(raw)
    head, _, tail = raw.rpartition("@")
    return f"{head.split(':', 1)[0]}:***@{tail}"


@dataclass(frozen=True)
class DatabaseUrl:
    """A validated PostgreSQL URL, rendered for each driver that needs it."""

    url: URL

    @classmethod
    def parse(cls, raw: str, *, variable: str = "DATABASE_URL") -> DatabaseUrl:
        shown = redact(raw)
        try:
            url = make_url(raw.strip())
        except ArgumentError:
            shown = _redact_unparsed(raw)
            raise ConfigError(
                f"{variable}={shown!r} is not a valid database URL; expected "
                "postgresql://user:password@host:port/dbname"
            ) from None
        if url.drivername not in _POSTGRES_SCHEMES:
            raise ConfigError(
                f"{variable}={shown!r} is not a PostgreSQL URL (scheme {url.drivername!r}). "
                "Traces live in PostgreSQL only; no other store is used as a fallback."
            )
        if not url.database:
            raise ConfigError(f"{variable}={shown!r} names no database")
        return cls(url.set(drivername="postgresql+psycopg"))

    def sqlalchemy(self) -> str:
        """For SQLAlchemy with psycopg 3 (sync and async engines)."""
        return self.url.render_as_string(hide_password=False)

    def psycopg2(self) -> str:
        """For dagster-postgres, which needs the psycopg2 driver."""
        return self.url.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)

    def libpq(self) -> str:
        """A plain `postgresql://` conninfo URL for psycopg.connect and psql."""
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def redacted(self) -> str:
        return self.url.set(drivername="postgresql").render_as_string(hide_password=True)

    @property
    def database(self) -> str:
        return self.url.database or ""


class Settings(BaseSettings):
    """The seed's environment: DATABASE_URL and USE_POSTGRES_TRACES."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url_raw: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "database_url")
    )
    use_postgres_traces_raw: str | None = Field(
        default=None, validation_alias=AliasChoices("USE_POSTGRES_TRACES", "use_postgres_traces")
    )

    def database_url(self) -> DatabaseUrl | None:
        """The configured URL, or None when unset (callers then use the embedded default)."""
        if self.database_url_raw is None or not self.database_url_raw.strip():
            return None
        return DatabaseUrl.parse(self.database_url_raw)

    def require_postgres_traces(self, *, unset_means_true: bool = True) -> None:
        raw = self.use_postgres_traces_raw
        if raw is None or not raw.strip():
            if unset_means_true:
                return
            raise ConfigError(
                "USE_POSTGRES_TRACES is not set; the run-proof plan requires "
                "USE_POSTGRES_TRACES=true (traces live in PostgreSQL only)"
            )
        if raw.strip().lower() not in _TRUE_VALUES:
            raise ConfigError(
                f"USE_POSTGRES_TRACES={raw!r} is not supported: traces live in PostgreSQL only, "
                "so it must be true (there is no other store to fall back to)"
            )


def load_settings() -> Settings:
    settings = Settings()
    settings.require_postgres_traces()
    settings.database_url()  # validate eagerly so a bad URL fails before any work
    return settings
