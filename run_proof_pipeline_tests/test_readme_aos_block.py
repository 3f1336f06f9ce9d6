"""README.md's "## Using run-proof on an existing AOS database" works when pasted (issue #14,
item 4): its ```bash block, extracted from README.md, is run line by line with bash on an AOS
database as deployed (AOS's whole migration chain, its triggers and legacy rows written by its
own statements: aos_deployed.py), placeholders filled and the optional `[...]` parts left out.
Each command exits as its comment in the README says, and the comment line "then delete or
archive the rows the AOS way" is done here as AOS does it: its retention's statements (copy
into aos_traces_archive, then DELETE; the steps go by the cascade), as the owner."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from run_proof_pipeline.cli.dagster_env import LOCATION_VARIABLES
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.plan.coordinator_tests import project_root
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.aos_deployed import connect, create_aos_deployed_store
from run_proof_pipeline_tests.test_installed_wheel import _git_status

ROOT = project_root()
SECTION = "\n## Using run-proof on an existing AOS database\n"
# A finished legacy run of aos_deployed.write_legacy_rows (three steps, completed by AOS).
TENANT, RUN, TRACE = "acme", "run-done", "trace_run-done"
DELETE_COMMENT = "then delete or archive the rows the AOS way"
# Settings a developer's shell could carry into the block (it sets its own).
LEDGER_VARIABLES = (
    "RUN_PROOF_SIGNING_KEY",
    "RUN_PROOF_PUBLIC_KEY",
    "RUN_PROOF_PUBLIC_KEY_FILE",
    "RUN_PROOF_CHECKPOINT_DIR",
    "RUN_PROOF_CHECKPOINT_ORIGIN",
)
# The block's commands in order, each with the exit code its README comment gives it.
EXPECTED = (
    ("export DATABASE_URL=", 0),
    ("export DAGSTER_PG_URL=", 0),
    ("run-proof db upgrade --check", 0),
    ("run-proof db upgrade", 0),
    ("run-proof verify --tenant-id", 4),  # legacy: UNSUPPORTED (exit 4), names adopt
    ("run-proof adopt", 0),
    ("run-proof verify --tenant-id", 0),  # --json: VERIFIED, adopted_at set
    ("export RUN_PROOF_SIGNING_KEY=", 0),
    ("run-proof checkpoint create", 0),
    ("run-proof plan --tenant-id", 0),
    ("run-proof retire --tenant-id", 0),
    ("run-proof checkpoint create && run-proof checkpoint verify", 0),
)


def aos_block() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert SECTION in readme, "README.md lost its existing-AOS-database section"
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    found = re.search(r"^```bash\n(.*?)^```", section, re.DOTALL | re.MULTILINE)
    assert found, "the existing-AOS-database section has no ```bash block"
    return found.group(1)


@dataclass(frozen=True)
class Values:
    store: str
    storage: str
    key: Path
    checkpoints: Path


def filled(line: str, values: Values) -> str:
    """The line with its placeholders filled and its optional `[...]` parts left out."""
    replacements = {
        "DATABASE_URL=postgresql://...": f"DATABASE_URL={shlex.quote(values.store)}",
        "DAGSTER_PG_URL=postgresql://...": f"DAGSTER_PG_URL={shlex.quote(values.storage)}",
        "/path/to/key": shlex.quote(str(values.key)),
        "/path/to/checkpoints": shlex.quote(str(values.checkpoints)),
        '--reason "..."': '--reason "erasure request (README test)"',
    }
    for placeholder, value in replacements.items():
        line = line.replace(placeholder, value)
    line = re.sub(r"\s*\[[^\[\]]*\]", "", line)
    line = re.sub(r"--tenant-id T\b", f"--tenant-id {TENANT}", line)
    line = re.sub(r"--run-id R\b", f"--run-id {RUN}", line)
    assert "..." not in line.split(" #")[0], f"a placeholder left unfilled: {line!r}"
    return line


def block_env() -> dict[str, str]:
    """A user's shell: the project's `run-proof` on PATH, none of its settings inherited."""
    dropped = {*LOCATION_VARIABLES, *LEDGER_VARIABLES}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def delete_the_aos_way(url: DatabaseUrl, trace_id: str) -> int:
    """AOS's retention statements for one trace: a copy into the archive, then the delete
    (its delete trigger wants the copy; the steps go by the cascade). Returns rows deleted."""
    with connect(url) as conn:
        conn.execute(
            "INSERT INTO aos_traces_archive SELECT * FROM aos_traces WHERE trace_id = %s"
            " ON CONFLICT (trace_id) DO NOTHING",
            (trace_id,),
        )
        return conn.execute("DELETE FROM aos_traces WHERE trace_id = %s", (trace_id,)).rowcount


def rows_of(url: DatabaseUrl, trace_id: str) -> tuple[int, int]:
    with connect(url) as conn:
        traces = conn.execute("SELECT count(*) FROM aos_traces WHERE trace_id = %s", (trace_id,))
        steps = conn.execute(
            "SELECT count(*) FROM aos_trace_steps WHERE trace_id = %s", (trace_id,)
        )
        return int(traces.fetchone()[0]), int(steps.fetchone()[0])  # type: ignore[index]


def test_the_block_is_the_sequence_this_test_checks() -> None:
    commands = [
        line
        for line in aos_block().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert len(commands) == len(EXPECTED), commands
    for line, (prefix, _) in zip(commands, EXPECTED, strict=True):
        assert line.startswith(prefix), f"the block changed: {line!r}, this test expects {prefix!r}"
    assert any(DELETE_COMMENT in line for line in aos_block().splitlines())
    legacy_verify = commands[4]
    assert "UNSUPPORTED (exit 4)" in legacy_verify and "names adopt" in legacy_verify


@pytest.mark.slow
def test_the_readme_aos_block_runs_line_by_line_on_aos_as_deployed(
    pg_server: LocalPostgres, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:12]
    url = DatabaseUrl.parse(pg_server.create_database(f"readme_aos_{suffix}"))
    create_aos_deployed_store(url)
    storage = DatabaseUrl.parse(pg_server.create_database(f"readme_aos_dagster_{suffix}"))
    work = tmp_path / "work"
    work.mkdir()
    values = Values(
        store=url.libpq(),
        storage=storage.libpq(),  # plain postgresql://, as a user has it
        key=tmp_path / "keys" / "run-proof.key",
        checkpoints=tmp_path / "checkpoints",
    )
    (tmp_path / "keys").mkdir(mode=0o700)
    env = block_env()
    before = _git_status()

    exports: list[str] = []
    results: list[tuple[str, subprocess.CompletedProcess[str]]] = []
    deleted = None
    for raw in aos_block().splitlines():
        if not raw.strip():
            continue
        if raw.lstrip().startswith("#"):
            if DELETE_COMMENT in raw:
                assert rows_of(url, TRACE) == (1, 3)
                deleted = delete_the_aos_way(url, TRACE)
            continue
        line = filled(raw, values)
        completed = subprocess.run(
            ["bash", "-o", "pipefail", "-c", "\n".join([*exports, line])],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        results.append((line, completed))
        if line.startswith("export "):
            exports.append(line)

    assert len(results) == len(EXPECTED), [line for line, _ in results]
    for (line, completed), (prefix, code) in zip(results, EXPECTED, strict=True):
        assert line.startswith(prefix), (line, prefix)
        assert completed.returncode == code, (
            f"{line}\nexited {completed.returncode}, the README says {code}\n"
            f"--- stdout\n{completed.stdout[-3000:]}\n--- stderr\n{completed.stderr[-3000:]}"
        )

    output = {i: r.stdout + r.stderr for i, (_, r) in enumerate(results)}
    # db upgrade --check names AOS's triggers and changes nothing; the upgrade then runs.
    assert "prevent_trace_update" in output[2], output[2]
    # A legacy trace: UNSUPPORTED, and the line says what to do.
    assert "UNSUPPORTED" in output[4] and "run-proof adopt" in output[4], output[4]
    # Adopted: VERIFIED, with the moment of adoption.
    verdict = json.loads(results[6][1].stdout)["integrity"]
    assert verdict["verification_status"] == "VERIFIED", verdict
    assert verdict["adopted_at"], verdict
    # The plan's five steps passed on the adopted run and the report is in the working dir.
    for step in range(1, 6):
        assert f"Step {step} (" in output[9] and "passed" in output[9].split(f"Step {step} (")[1]
    reports = list((work / "reports").glob("run-proof-report-*.json"))
    assert len(reports) == 1, output[9]
    report = json.loads(reports[0].read_text(encoding="utf-8"))
    assert report["run_id"] == RUN and report["verification_status"] == "VERIFIED", report
    # Retired, then removed the AOS way: the ledger is consistent with the new checkpoint.
    assert deleted == 1 and rows_of(url, TRACE) == (0, 0)
    assert "ledger consistent with the signed checkpoint" in output[11], output[11]
    assert "INCONSISTENT" not in output[11]
    assert values.key.is_file() and len(list(values.checkpoints.glob("*.note"))) == 2
    assert _git_status() == before
