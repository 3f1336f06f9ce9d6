"""What `run-proof plan` adds on the embedded default (only there: never on a user's
DATABASE_URL), so that the UI is worth opening after `make demo`: the sweep of every tenant
(asset `aos_traces_sweep`, one `dagster asset materialize` per tenant), the plan's check
history (the plan records its asset checks itself; this reads them back), and a signed
checkpoint of the ledger: a run of the job `run_proof_checkpoint` (`dagster job execute`),
signed with a demo key created under `.run-proof/` when the user has no RUN_PROOF_SIGNING_KEY
of their own, into `.run-proof/checkpoints` unless RUN_PROOF_CHECKPOINT_DIR is set.

As in plan_output.py, the CLI half imports no Dagster; `python -m
run_proof_pipeline.cli.demo_extras sweep|checkpoint PLAN_RUN_ID` is the half run in the
plan's environment, with its stderr (and the runs' output) in the plan's log: it starts the
runs, then prints, as one JSON line, what Dagster recorded of them (status, metadata), which
is what the CLI's lines say.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

DEMO_KEY_NAME = "demo-signing.key"
DEMO_CHECKPOINT_DIR = "checkpoints"
# A full sweep each time: the demo's data is small, and "all VERIFIED" then means every run.
FULL_SWEEP_CONFIG = json.dumps({"ops": {"aos_traces_sweep": {"config": {"full": True}}}})
CHECKPOINT_JOB = "run_proof_checkpoint"  # defs/checkpoint/job.py
CHECKPOINT_OP = "write_ledger_checkpoint"
# Tags the demo's checkpoint run, so that it is found by this value (not "the latest run"),
# and names the plan run it follows.
CHECKPOINT_TAG = "run_proof/demo_checkpoint"
PLAN_RUN_TAG = "run_proof/plan_run_id"
# How ledger/settings.py's ensure_signing_key warns that it created the key (the job logs it).
KEY_CREATED = "warning: created a new Ed25519 signing key at"


def run_demo_extras(
    env: dict[str, str], plan_run_id: str, log: IO[bytes] | None, log_path: Path | None
) -> bool:
    """The sweep, the check history and the checkpoint, one line each; False if any failed
    (each failure is its own line, and the others still run)."""
    ok = True
    for extra in (_sweep_and_checks, _checkpoint):
        try:
            lines, extra_ok = extra(env, plan_run_id, log, log_path)
        except Exception as exc:  # one line, never a traceback hiding the plan's result
            from run_proof_pipeline.settings import redact

            lines, extra_ok = [f"{extra.__doc__}: failed: {redact(str(exc))}"], False
        for line in lines:
            print(line)
        ok = ok and extra_ok
    return ok


def _sweep_and_checks(
    env: dict[str, str], plan_run_id: str, log: IO[bytes] | None, log_path: Path | None
) -> tuple[list[str], bool]:
    """Sweep of every tenant"""
    data = _helper_result("sweep", plan_run_id, env, log, timeout=1800)
    if data is None:
        return [f"Sweep of every tenant: failed (see {_where(log_path)})"], False
    return sweep_lines(data)


def _helper_result(
    half: str, plan_run_id: str, env: dict[str, str], log: IO[bytes] | None, *, timeout: float
) -> dict[str, Any] | None:
    """Run this module's Dagster half `half` in the plan's environment (its stderr into the
    plan's log) and return the JSON object it prints last; None if it printed none."""
    if log is not None:
        log.flush()
    completed = subprocess.run(
        [sys.executable, "-m", __name__, half, plan_run_id],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log if log is not None else None,
        check=False,
        timeout=timeout,
    )
    try:
        data = json.loads(completed.stdout.decode("utf-8").strip().splitlines()[-1])
    except (ValueError, IndexError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def sweep_lines(data: dict[str, Any]) -> tuple[list[str], bool]:
    """`data` is the helper process's JSON (its shape: `_sweep_in_instance`)."""
    tenants: dict[str, dict[str, Any]] = data.get("tenants", {})
    problems = [f"{t}: {r['error']}" for t, r in tenants.items() if r.get("error")]
    runs = sum(int(r.get("runs", 0)) for r in tenants.values())
    failures = sum(int(r.get("failures", 0)) for r in tenants.values())
    lines: list[str] = []
    if problems:
        lines.append(f"Sweep of every tenant: failed: {'; '.join(problems)}")
    elif not tenants:
        lines.append("Sweep of every tenant: failed: no sealed trace to sweep")
    elif failures:
        lines.append(
            f"Sweep of every tenant: {failures} of {runs} runs FAILED "
            f"({len(tenants)} tenants; asset aos_traces_sweep in the UI)"
        )
    else:
        lines.append(f"Sweep of every tenant: {runs} runs in {len(tenants)} tenants, all VERIFIED")
    sweep_ok = not problems and bool(tenants) and not failures
    checks: dict[str, bool] = data.get("checks", {})
    if checks:
        passed = sum(1 for v in checks.values() if v)
        lines.append(
            f"Check history of aos_traces: {len(checks)} checks recorded by this plan, "
            f"{passed} passed"
        )
    else:
        lines.append("Check history of aos_traces: failed: no check recorded by this plan")
    return lines, sweep_ok and bool(checks)


def _checkpoint(
    env: dict[str, str], plan_run_id: str, log: IO[bytes] | None, log_path: Path | None
) -> tuple[list[str], bool]:
    """Signed checkpoint"""
    from run_proof_pipeline.cli.dagster_env import location_root

    state = location_root() / ".run-proof"
    own_key = bool(env.get("RUN_PROOF_SIGNING_KEY", "").strip())
    key = None if own_key else state / DEMO_KEY_NAME
    own_directory = bool(env.get("RUN_PROOF_CHECKPOINT_DIR", "").strip())
    # The job reads both from its environment (ledger/settings.py), as its schedule does:
    # the demo's paths unless the user set their own. The job creates the key when it is
    # missing (0600, never over an existing file) and warns that it did.
    job_env = dict(env)
    if key is not None:
        job_env["RUN_PROOF_SIGNING_KEY"] = str(key)
    if not own_directory:
        job_env["RUN_PROOF_CHECKPOINT_DIR"] = str(state / DEMO_CHECKPOINT_DIR)
    data = _helper_result("checkpoint", plan_run_id, job_env, log, timeout=900)
    return checkpoint_lines(data or {}, key, log_path)


def checkpoint_lines(
    data: dict[str, object], demo_key: Path | None, log_path: Path | None
) -> tuple[list[str], bool]:
    """The lines of a checkpoint run as Dagster recorded it: the run's warning that it
    created the key (even if the run then failed: the key is there now), then the op's
    output metadata (path, tree size) when the run succeeded, else where to look."""
    lines: list[str] = []
    warnings = data.get("warnings")
    for warning in map(str, warnings if isinstance(warnings, list) else []):
        if not warning.startswith(KEY_CREATED):
            continue
        if demo_key is not None and warning.startswith(f"{KEY_CREATED} {demo_key} "):
            lines.append(
                f"demo signing key created at {demo_key}: for the demo only (set "
                "RUN_PROOF_SIGNING_KEY to sign with your own)"
            )
        else:
            lines.append(warning)
    path, size = data.get("path"), data.get("tree_size")
    if data.get("status") != "SUCCESS" or not path or not isinstance(size, int):
        lines.append(f"Signed checkpoint: failed (see {_where(log_path)})")
        return lines, False
    lines.append(f"Signed checkpoint (tree size {size}) at {path}")
    return lines, True


def _where(log_path: Path | None) -> str:
    return "its output above" if log_path is None else f"the log: {log_path}"


def _sweep_in_instance(plan_run_id: str) -> dict[str, object]:
    """In the helper process: add a partition per sealed tenant, materialize each (as the
    nightly schedule would, but full), then read back what was recorded."""
    import time

    from dagster import AssetCheckKey, AssetRecordsFilter, DagsterInstance

    from run_proof_pipeline.defs.plan.checks import CHECK_DESCRIPTIONS, TRACE_STORE
    from run_proof_pipeline.defs.sweep.assets import SWEEP_ASSET, TENANTS
    from run_proof_pipeline.settings import DatabaseUrl
    from run_proof_pipeline.sweep.tenants import sealed_tenants

    tenants = sealed_tenants(DatabaseUrl.parse(os.environ["DATABASE_URL"]))
    dagster = str(Path(sys.executable).with_name("dagster"))
    results: dict[str, dict[str, object]] = {}
    with DagsterInstance.get() as instance:
        known = set(instance.get_dynamic_partitions(TENANTS))
        new = [t for t in tenants if t not in known]
        if new:
            instance.add_dynamic_partitions(TENANTS, new)
        for tenant in tenants:
            started = time.time()
            sys.stderr.flush()
            completed = subprocess.run(
                [
                    dagster,
                    "asset",
                    "materialize",
                    "-m",
                    "run_proof_pipeline.definitions",
                    "--select",
                    SWEEP_ASSET.to_user_string(),
                    "--partition",
                    tenant,
                    "--config-json",
                    FULL_SWEEP_CONFIG,
                ],
                stdout=sys.stderr,
                stderr=subprocess.STDOUT,
                check=False,
            )
            records = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=SWEEP_ASSET, asset_partitions=[tenant]), limit=1
            ).records
            record = records[0] if records else None
            materialization = record.asset_materialization if record is not None else None
            if (
                completed.returncode != 0
                or record is None
                or materialization is None
                or record.timestamp < started
            ):
                results[tenant] = {"error": f"dagster exit code {completed.returncode}"}
                continue
            metadata = materialization.metadata
            results[tenant] = {
                "runs": metadata["runs"].value,
                "failures": metadata["failures"].value,
            }
        checks: dict[str, bool] = {}
        for name in CHECK_DESCRIPTIONS:
            history = instance.event_log_storage.get_asset_check_execution_history(
                AssetCheckKey(TRACE_STORE, name), limit=5
            )
            for entry in history:
                if entry.run_id == plan_run_id:
                    checks[name] = entry.status.value == "SUCCEEDED"
                    break
    return {"tenants": results, "checks": checks}


def _checkpoint_in_instance(plan_run_id: str) -> dict[str, object]:
    """In the helper process: run the job `run_proof_checkpoint` (as its schedule would, with
    this environment's key and directory), then read back what Dagster recorded of it: the
    run's status, the op's output metadata (path, tree size) and its warnings."""
    import logging
    import uuid

    from dagster import DagsterEventType, DagsterInstance, RunsFilter

    tag = uuid.uuid4().hex
    dagster = str(Path(sys.executable).with_name("dagster"))
    sys.stderr.flush()
    completed = subprocess.run(
        [
            dagster,
            "job",
            "execute",
            "-m",
            "run_proof_pipeline.definitions",
            "-j",
            CHECKPOINT_JOB,
            "--tags",
            json.dumps({CHECKPOINT_TAG: tag, PLAN_RUN_TAG: plan_run_id}),
        ],
        stdout=sys.stderr,
        stderr=subprocess.STDOUT,
        check=False,
    )
    with DagsterInstance.get() as instance:
        runs = instance.get_runs(filters=RunsFilter(tags={CHECKPOINT_TAG: tag}), limit=1)
        if not runs:
            return {"status": None, "exit_code": completed.returncode}
        run = runs[0]
        result: dict[str, object] = {
            "run_id": run.run_id,
            "status": run.status.value,
            "exit_code": completed.returncode,
        }
        warnings: list[str] = []
        for entry in instance.all_logs(run.run_id):
            event = entry.dagster_event
            if event is None:
                level = entry.level  # an int, or a level's name
                if isinstance(level, str):
                    level = logging.getLevelNamesMapping().get(level.upper(), logging.NOTSET)
                if level >= logging.WARNING and entry.user_message:
                    warnings.append(entry.user_message)
            elif (
                event.event_type == DagsterEventType.STEP_OUTPUT and event.step_key == CHECKPOINT_OP
            ):
                metadata = event.step_output_data.metadata
                if "path" in metadata and "tree_size" in metadata:
                    result["path"] = str(metadata["path"].value)
                    result["tree_size"] = metadata["tree_size"].value
        result["warnings"] = warnings
    return result


if __name__ == "__main__":
    helpers = {"sweep": _sweep_in_instance, "checkpoint": _checkpoint_in_instance}
    if sys.argv[1:2] and sys.argv[1] in helpers and len(sys.argv) == 3:
        print(json.dumps(helpers[sys.argv[1]](sys.argv[2])))
    else:
        sys.exit(f"usage: python -m {__name__} sweep|checkpoint PLAN_RUN_ID")
