"""Alembic environment: runs our migrations on the URL the caller put in the config."""

from alembic import context
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from run_proof_pipeline.store.migrate import MIGRATION_LOCK_KEY, VERSION_TABLE
from run_proof_pipeline.store.session_pins import startup_options

url = context.config.get_main_option("sqlalchemy.url")
if url is None:  # store/migrate.py always sets it; alembic run by hand might not
    raise RuntimeError("no sqlalchemy.url in the alembic config (store/migrate.py sets it)")
# Pinned settings (store/session_pins.py): objects go to the configured schema, whatever
# search_path the database or role defaults to.
engine = create_engine(url, poolclass=NullPool, connect_args={"options": startup_options(ddl=True)})
with engine.connect() as connection:
    # Two processes upgrading at once (CI, the sensor, a developer) must not interleave DDL.
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    connection.commit()
    try:
        context.configure(
            connection=connection,
            version_table=VERSION_TABLE,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()
engine.dispose()
