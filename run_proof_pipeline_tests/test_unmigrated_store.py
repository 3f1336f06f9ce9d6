"""An unmigrated store (issue 12): every proof command is exit 2 with one line naming
`run-proof db upgrade`, and writes nothing, neither in the database nor on disk.

Each command runs as a real `run-proof` process (the five of a case at once, to keep the
case short) against a fresh empty database, a database holding only AOS's own tables, and
one migrated only to the first revision. The catalog (relations, sequences, functions,
triggers, schemas) is compared before and after. A store whose migrations are at head but
lacks a table (dropped by its owner) is refused as untrusted instead: `db upgrade` would
not bring it back.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store.migrate import head_revision, upgrade
from run_proof_pipeline.store.relations import UntrustedStore
from run_proof_pipeline.sweep import SweepOptions, run_sweep
from run_proof_pipeline_tests.support.aos_fixtures import create_aos_store
from run_proof_pipeline_tests.support.stores import prove, record_run

CLI = str(Path(sys.executable).with_name("run-proof"))
ALL_MISSING = "public.aos_traces, public.aos_trace_steps, public.run_proof_ledger do not exist"
LEDGER_MISSING = "public.run_proof_ledger does not exist"

# Everything a command could create, by kind, schema and name (system schemas left out).
_CATALOG = """
SELECT 'relation ' || c.relkind::text, n.nspname::text, c.relname::text FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
UNION ALL
SELECT 'function', n.nspname::text, p.proname::text FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
UNION ALL
SELECT 'trigger', '', t.tgname::text FROM pg_trigger t WHERE NOT t.tgisinternal
UNION ALL
SELECT 'schema', '', n.nspname::text FROM pg_namespace n WHERE n.nspname !~ '^pg_'
ORDER BY 1, 2, 3
"""


def _catalog(url: DatabaseUrl) -> list[tuple[str, str, str]]:
    with psycopg.connect(url.libpq()) as conn:
        return [tuple(row) for row in conn.execute(_CATALOG).fetchall()]  # type: ignore[misc]


def _empty(url: DatabaseUrl) -> None:
    pass


def _aos_only(url: DatabaseUrl) -> None:
    create_aos_store(url)


def _first_revision(url: DatabaseUrl) -> None:
    upgrade(url, "0001")  # the trace tables, not the ledger (0002)


# Five processes a case (seconds each): the revision-0001 case runs with the slow ones.
CASES = [
    pytest.param(_empty, ALL_MISSING, "no run-proof revision", id="empty"),
    pytest.param(_aos_only, LEDGER_MISSING, "no run-proof revision", id="aos-only"),
    pytest.param(_first_revision, LEDGER_MISSING, "0001", id="at-0001", marks=pytest.mark.slow),
]


def _commands(tmp_path: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Each command with the settings it needs to get as far as the database."""
    existing = tmp_path / "checkpoints-verify"
    existing.mkdir()
    return {
        "verify": (["verify", "--tenant-id", "tenant-a", "--run-id", "run-1"], {}),
        "sweep": (["sweep", "--workers", "2"], {}),
        "export": (
            ["export", "--tenant-id", "tenant-a", "--run-id", "run-1", "--out"]
            + [str(tmp_path / "bundle.json")],
            {},
        ),
        "checkpoint verify": (
            ["checkpoint", "verify"],
            {"RUN_PROOF_CHECKPOINT_DIR": str(existing)},
        ),
        # The one command that creates its directory and a signing key: neither may appear.
        "checkpoint create": (
            ["checkpoint", "create"],
            {
                "RUN_PROOF_CHECKPOINT_DIR": str(tmp_path / "checkpoints-create"),
                "RUN_PROOF_SIGNING_KEY": str(tmp_path / "keys" / "ledger.key"),
            },
        ),
    }


def _env(url: DatabaseUrl, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUN_PROOF_")}
    env.pop("USE_POSTGRES_TRACES", None)
    return env | {"DATABASE_URL": url.libpq()} | extra


@pytest.mark.parametrize(("prepare", "missing", "revision"), CASES)
def test_every_proof_command_on_an_unmigrated_store_is_exit_2_naming_db_upgrade(
    pg_server: LocalPostgres,
    tmp_path: Path,
    prepare: Callable[[DatabaseUrl], None],
    missing: str,
    revision: str,
) -> None:
    url = DatabaseUrl.parse(pg_server.create_database(f"unmigrated_{uuid.uuid4().hex[:12]}"))
    prepare(url)
    before = _catalog(url)
    commands = _commands(tmp_path)
    processes = {
        name: subprocess.Popen(
            [CLI, *args],
            env=_env(url, extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (args, extra) in commands.items()
    }
    results = {name: (p, *p.communicate(timeout=180)) for name, p in processes.items()}

    expected = (
        f"run-proof: configuration error: the trace store is not migrated: {missing} "
        f"(database at {revision}, code at {head_revision()}); run `run-proof db upgrade`"
    )
    for name, (process, _stdout, stderr) in results.items():
        assert (name, process.returncode) == (name, 2), stderr
        assert (name, stderr.splitlines()) == (name, [expected])
    assert _catalog(url) == before  # not even the sweep's state table
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints-verify"]
    assert list((tmp_path / "checkpoints-verify").iterdir()) == []
    pg_server.drop_database(url.database)


def test_a_table_dropped_from_a_migrated_store_is_refused_not_called_unmigrated(
    store: DatabaseUrl,
) -> None:
    record_run(store, "tenant-a", "run-1", steps=2)
    with psycopg.connect(store.libpq(), autocommit=True) as conn:
        conn.execute("DROP TABLE run_proof_ledger CASCADE")

    # `db upgrade` would do nothing here (the store is at head): the owner removed it.
    message = (
        f"{LEDGER_MISSING}, although the store is migrated to revision {head_revision()}: "
        "it was dropped or renamed; a proof reads only the store's own tables"
    )
    with pytest.raises(UntrustedStore) as refused:
        prove(store, "tenant-a", "run-1")
    assert str(refused.value) == message
    with pytest.raises(UntrustedStore):
        run_sweep(store, SweepOptions(full=True, workers=1))
