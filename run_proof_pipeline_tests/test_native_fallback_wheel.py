"""Where no C compiler works, the package still installs and proves on its pure path.

A wheel is built with `CC=/bin/false` (hatch_build.py then prints why and builds a pure
wheel), installed in a fresh virtualenv, and `run-proof verify --json` proves a recorded run
there, VERIFIED, with store/native_line.py saying the compiled path is not built. The normal
build is checked too: it ships the compiled module. Building never changes the checkout's
own module (an editable install's).
"""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from run_proof_pipeline.embedded.server import LocalPostgres
from run_proof_pipeline.plan.coordinator_tests import project_root
from run_proof_pipeline_tests.support.stores import recorded_store
from run_proof_pipeline_tests.test_installed_wheel import _clean_env, _run, _uv

pytestmark = pytest.mark.slow

ROOT = project_root()
STORE = ROOT / "run_proof_pipeline" / "store"


def _built_modules() -> dict[str, float]:
    return {p.name: p.stat().st_mtime for p in STORE.glob("_native_line*.so")}


def _wheel(uv: str, out: Path, **env: str) -> Path:
    out.mkdir()
    completed = _run(
        [uv, "build", "--wheel", "--out-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, **env},
    )
    (wheel,) = out.glob("run_proof_pipeline-*.whl")
    if env.get("CC") == "/bin/false":
        assert "native path not built" in completed.stderr
    return wheel


def _native_members(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return [n for n in archive.namelist() if n.endswith(".so")]


def test_a_wheel_built_without_a_compiler_installs_and_proves_on_the_pure_path(
    pg_server: LocalPostgres, tmp_path: Path
) -> None:
    uv = _uv()
    checkout_before = _built_modules()
    built = _wheel(uv, tmp_path / "dist-native")
    assert _native_members(built), "the normal wheel ships no compiled module"
    assert "dagster.yaml" in str(zipfile.ZipFile(built).namelist())
    wheel = _wheel(uv, tmp_path / "dist", CC="/bin/false")
    assert wheel.name.endswith("-py3-none-any.whl")
    assert _native_members(wheel) == []
    assert _built_modules() == checkout_before  # the checkout's module is untouched

    venv, work = tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    env = _clean_env(venv)
    _run([uv, "venv", str(venv)], cwd=work, env=env)
    _run(
        [uv, "pip", "install", "--python", str(venv / "bin" / "python"), str(wheel)],
        cwd=work,
        env=env,
    )
    status = _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "from run_proof_pipeline.store.native_line import native_status\n"
            "print(native_status())",
        ],
        cwd=work,
        env=env,
    ).stdout.strip()
    assert status.startswith("pure (the compiled path is not built"), status
    with recorded_store(
        pg_server, "native_fallback", "tenant-n", "run-n", steps=12, chain_format=1
    ) as store:  # format v1: the format the compiled path proves
        env["DATABASE_URL"] = store.url.libpq()
        done = subprocess.run(
            [
                str(venv / "bin" / "run-proof"),
                "verify",
                "--tenant-id",
                "tenant-n",
                "--run-id",
                "run-n",
                "--json",
            ],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout)
    assert result["integrity"]["verification_status"] == "VERIFIED"
    assert result["steps_read"] == 12
    assert result["decode_path"] == status, result
