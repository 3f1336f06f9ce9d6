"""`run-proof db upgrade --check`: what the pending migrations would change, changing nothing.

A revision that can say what it would do (a module-level `planned_changes(connection)`, as
0001 does for AOS tables) is asked, inside a READ ONLY transaction that is rolled back;
later revisions, which would run against a schema that does not exist yet, are named, unless
they declare `DESCRIBES_AHEAD` (0006: its columns, tables, triggers, and how it coexists with
AOS's triggers, listed from base too).
"""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.engine import Connection

from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline.store import migrate
from run_proof_pipeline.store.engine import sync_engine


class PlannedRevision(BaseModel):
    revision: str
    title: str
    changes: list[str]


class UpgradePlan(BaseModel):
    current: str | None
    head: str
    revisions: list[PlannedRevision]

    def lines(self) -> list[str]:
        if not self.revisions:
            return [f"nothing to do: the trace store is at revision {self.head}"]
        lines = [
            f"run-proof db upgrade would take the database from "
            f"{self.current or 'no run-proof revision'} to {self.head}:"
        ]
        for planned in self.revisions:
            lines.append(f"revision {planned.revision}: {planned.title}")
            lines += [f"  - {change}" for change in planned.changes]
        lines.append("nothing was changed (--check)")
        return lines


def _scripts() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(Path(migrate.__file__).with_name("migrations")))
    return ScriptDirectory.from_config(config)


def _title(doc: str | None) -> str:
    """The docstring's first paragraph on one line (a summary may wrap: 0003, 0006)."""
    paragraph = (doc or "").strip().split("\n\n", 1)[0]
    return " ".join(paragraph.split()) or "(no description)"


def _described(module: object, connection: Connection, *, first: bool) -> list[str]:
    """What a pending revision says it would change. The first pending one reads the
    database as it is; a later one only if it declares `DESCRIBES_AHEAD` (it then plans
    from the database as it is and from what earlier revisions create, e.g. 0006)."""
    describe = getattr(module, "planned_changes", None)
    if describe is None:
        return []
    if first:
        return [c.description for c in describe(connection)]
    if getattr(module, "DESCRIBES_AHEAD", False):
        return [c.description for c in describe(connection, ahead=True)]
    return []


def upgrade_plan(url: DatabaseUrl) -> UpgradePlan:
    scripts = _scripts()
    current = migrate.current_revision(url)
    head = migrate.head_revision()
    pending = list(reversed(list(scripts.iterate_revisions(head, current or "base"))))
    revisions: list[PlannedRevision] = []
    engine = sync_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SET TRANSACTION READ ONLY"))
            for position, script in enumerate(pending):
                changes = _described(script.module, connection, first=position == 0)
                revisions.append(
                    PlannedRevision(
                        revision=script.revision, title=_title(script.doc), changes=changes
                    )
                )
            connection.rollback()
    finally:
        engine.dispose()
    return UpgradePlan(current=current, head=head, revisions=revisions)
