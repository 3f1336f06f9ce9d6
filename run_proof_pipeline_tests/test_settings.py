"""Settings refuse anything that is not PostgreSQL, and never show a password."""

from __future__ import annotations

import pytest

from run_proof_pipeline.settings import ConfigError, DatabaseUrl, Settings, load_settings, redact


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgresql://u:pw@db:5432/traces", "postgresql+psycopg://u:pw@db:5432/traces"),
        ("postgres://u:pw@db/traces", "postgresql+psycopg://u:pw@db/traces"),
        ("postgresql+psycopg2://u:pw@db/traces", "postgresql+psycopg://u:pw@db/traces"),
    ],
)
def test_postgres_urls_are_normalised_for_the_driver(raw: str, expected: str) -> None:
    url = DatabaseUrl.parse(raw)
    assert url.sqlalchemy() == expected
    assert url.psycopg2().startswith("postgresql+psycopg2://")
    assert url.libpq().startswith("postgresql://")


@pytest.mark.parametrize(
    "raw",
    [
        "sqlite:///traces.db",
        "sqlite+aiosqlite:///:memory:",
        "mysql://root:s3cret@db/traces",
        "not a url at all",
        "not-a-url:s3cret@host",
        "postgresql//u:s3cret@host/db",
        "postgresql://u:s3cret@db",  # no database
    ],
)
def test_non_postgres_urls_are_refused_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        DatabaseUrl.parse(raw)
    message = str(info.value)
    assert "DATABASE_URL" in message
    assert "s3cret" not in message


def test_sqlite_is_refused_as_no_workaround() -> None:
    with pytest.raises(ConfigError, match="PostgreSQL only"):
        DatabaseUrl.parse("sqlite:///traces.db")


def test_redacted_url_hides_the_password() -> None:
    url = DatabaseUrl.parse("postgresql://alice:hunter2@db:5432/traces")
    assert "hunter2" not in url.redacted()
    assert "alice:***@db" in url.redacted()


def test_redact_hides_passwords_inside_free_text() -> None:
    text = "could not connect to postgresql+psycopg://bob:p%40ss@h/db: refused"
    assert redact(text) == "could not connect to postgresql+psycopg://bob:***@h/db: refused"


@pytest.mark.parametrize("value", ["false", "0", "no", "sqlite"])
def test_use_postgres_traces_other_than_true_is_refused(value: str) -> None:
    settings = Settings(USE_POSTGRES_TRACES=value)
    with pytest.raises(ConfigError, match="USE_POSTGRES_TRACES"):
        settings.require_postgres_traces()


@pytest.mark.parametrize("unset", [None, "", "  "])
def test_use_postgres_traces_unset_means_true_for_the_library(
    unset: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(USE_POSTGRES_TRACES=unset)
    # Accepted exactly as an explicit "true" is (a refusal raises ConfigError) ...
    assert settings.require_postgres_traces() is None
    assert Settings(USE_POSTGRES_TRACES="true").require_postgres_traces() is None
    # ... and only because unset_means_true is the library's default: the same value is refused
    # where it is not (the plan).
    with pytest.raises(ConfigError, match="USE_POSTGRES_TRACES is not set"):
        settings.require_postgres_traces(unset_means_true=False)
    # The library's entry point, with the variable absent from the environment.
    monkeypatch.delenv("USE_POSTGRES_TRACES", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    loaded = load_settings()
    assert loaded.use_postgres_traces_raw is None
    assert loaded.database_url() is None  # the embedded default, not a refusal


def test_the_plan_requires_use_postgres_traces_explicitly() -> None:
    with pytest.raises(ConfigError, match="not set"):
        Settings(USE_POSTGRES_TRACES=None).require_postgres_traces(unset_means_true=False)


def test_unset_database_url_means_embedded_default() -> None:
    assert Settings(DATABASE_URL=None).database_url() is None
