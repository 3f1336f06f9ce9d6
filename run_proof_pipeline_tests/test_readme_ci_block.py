"""The README's CI recipe ("### CI") works when pasted: the fenced bash block, extracted from
README.md and run with bash with only its placeholders filled, exits 0 on a verified store and
1 on a tampered one, and writes nothing into the checkout (issue #14, item 4). Also: a plain
`postgresql://` DAGSTER_PG_URL, the form everyone has, is one dagster-postgres can use."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, job, op
from sqlalchemy.engine import make_url

from run_proof_pipeline.cli.dagster_env import LOCATION_VARIABLES
from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.plan.coordinator_tests import project_root
from run_proof_pipeline.settings import DatabaseUrl
from run_proof_pipeline_tests.support.stores import owner_sql, recorded_store

ROOT = project_root()
# The block's placeholders, exactly as README.md writes them.
STORE_PLACEHOLDER = "postgresql://user:pass@host/db"
DAGSTER_PLACEHOLDER = "postgresql://user:pass@host/dagster"
HOME_PLACEHOLDER = "/path/to/dagster_home"
REPORTS_PLACEHOLDER = "/path/to/reports"


def ci_block() -> str:
    """The first ```bash block of README.md's "### CI" section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### CI\n", 1)[1].split("\n### ", 1)[0]
    found = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert found, 'README.md "### CI" has no ```bash block'
    return found.group(1)


def filled(block: str, values: dict[str, str]) -> str:
    for placeholder, value in values.items():
        assert placeholder in block, f"the CI block lost its placeholder {placeholder}"
        block = block.replace(placeholder, shlex.quote(value))
    return block


def git_status() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "--ignored"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def run_block(script: Path) -> subprocess.CompletedProcess[str]:
    # A CI job's shell: the venv's `dagster` on PATH, no run-proof location settings inherited.
    env = {k: v for k, v in os.environ.items() if k not in LOCATION_VARIABLES}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        ["bash", "-euo", "pipefail", str(script)],
        env=env,
        cwd=ROOT,  # the block copies dagster.yaml from the checkout, as a CI step would
        capture_output=True,
        text=True,
        check=False,
        timeout=1200,
    )


@pytest.fixture(scope="module")
def ci_store(pg_server: LocalPostgres) -> Iterator[DatabaseUrl]:
    with recorded_store(pg_server, "readme_ci", "tenant-ci", "run-ci", steps=4) as recorded:
        yield recorded.url


@pytest.mark.slow
def test_the_readme_ci_block_exits_0_verified_then_1_tampered_and_writes_nothing_in_the_checkout(
    ci_store: DatabaseUrl, dagster_storage: DatabaseUrl, tmp_path: Path
) -> None:
    home, reports = tmp_path / "dagster_home", tmp_path / "reports"
    script = tmp_path / "ci.sh"
    script.write_text(
        filled(
            ci_block(),
            {
                STORE_PLACEHOLDER: ci_store.libpq(),
                DAGSTER_PLACEHOLDER: dagster_storage.libpq(),  # plain postgresql://
                HOME_PLACEHOLDER: str(home),
                REPORTS_PLACEHOLDER: str(reports),
            },
        ),
        encoding="utf-8",
    )
    before = git_status()

    verified = run_block(script)

    assert verified.returncode == 0, verified.stderr[-4000:]
    assert (home / "dagster.yaml").read_bytes() == (ROOT / "dagster.yaml").read_bytes()
    assert len(list(reports.glob("run-proof-report-*.json"))) == 1
    assert git_status() == before

    touched = owner_sql(
        ci_store,
        "UPDATE aos_trace_steps SET params = '{\"tampered\": true}'"
        " WHERE run_id = %s AND step_index = 2",
        ("run-ci",),
        table="aos_trace_steps",
    )
    assert touched == 1
    tampered = run_block(script)

    assert tampered.returncode == 1, tampered.stderr[-4000:]
    assert "step_4_integrity_expectations" in tampered.stdout + tampered.stderr
    assert len(list(reports.glob("run-proof-report-*.json"))) == 1
    assert git_status() == before


def test_a_plain_postgresql_dagster_pg_url_works_with_the_project_dagster_yaml(
    dagster_storage: DatabaseUrl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = dagster_storage.libpq()
    assert plain.startswith("postgresql://")
    # SQLAlchemy 2.1 maps this scheme to psycopg 3, on which dagster-postgres fails
    # (`syntax error at or near "$1"`); the pin below 2.1 (pyproject.toml) keeps psycopg2.
    assert make_url(plain).get_dialect().driver == "psycopg2"
    (tmp_path / "dagster.yaml").write_bytes((ROOT / "dagster.yaml").read_bytes())
    monkeypatch.setenv("DAGSTER_PG_URL", plain)

    @op
    def one() -> int:
        return 1

    @job
    def readme_ci_probe() -> None:
        one()

    instance = DagsterInstance.from_config(str(tmp_path))
    try:
        result = readme_ci_probe.execute_in_process(instance=instance)
        stored = instance.get_run_by_id(result.run_id)
        assert stored is not None and stored.status == DagsterRunStatus.SUCCESS
        assert instance.all_logs(result.run_id), "no event log rows stored"
    finally:
        instance.dispose()
