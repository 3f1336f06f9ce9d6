"""Apply and inspect the trace store's migrations (alembic, in its own version table)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.engine import sync_engine

# Dagster's own storage stamps `alembic_version`; ours must never collide with it.
VERSION_TABLE = "run_proof_alembic_version"
MIGRATION_LOCK_KEY = 0x52_50_52_4F_4F_46  # "RPROOF"
_MIGRATIONS = Path(__file__).with_name("migrations")


def _config(url: DatabaseUrl) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    # ConfigParser interpolates '%': a URL-quoted password would break it.
    config.set_main_option("sqlalchemy.url", url.sqlalchemy().replace("%", "%%"))
    return config


def upgrade(url: DatabaseUrl, revision: str = "head") -> None:
    command.upgrade(_config(url), revision)


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config_for_scripts()).get_current_head()
    assert head is not None
    return head


def _config_for_scripts() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def current_revision(url: DatabaseUrl) -> str | None:
    engine = sync_engine(url, ddl=True)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            return context.get_current_revision()
    finally:
        engine.dispose()


def missing_schema(url: DatabaseUrl) -> list[str]:
    """What the store lacks before a proof can run: tables, and our migration version."""
    engine = sync_engine(url, ddl=True)
    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
    finally:
        engine.dispose()
    missing = [t for t in ("aos_traces", "aos_trace_steps") if t not in tables]
    if not missing:
        current = current_revision(url)
        if current != head_revision():
            missing.append(
                f"migrations (database at {current or 'no run-proof revision'}, "
                f"code at {head_revision()}; run `run-proof db upgrade`)"
            )
    return missing
