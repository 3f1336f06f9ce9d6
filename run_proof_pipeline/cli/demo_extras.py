"""What `run-proof plan` adds on the embedded default (only there: never on a user's
DATABASE_URL), so that the UI is worth opening after `make demo`: the sweep of every tenant
(asset `aos_traces_sweep`, one `dagster asset materialize` per tenant), the plan's check
history (the plan records its asset checks itself; this reads them back), and a signed
checkpoint of the ledger, signed with a demo key created under `.run-proof/` when the user
has no RUN_PROOF_SIGNING_KEY of their own.

As in plan_output.py, the CLI half imports no Dagster; `python -m
run_proof_pipeline.cli.demo_extras sweep PLAN_RUN_ID` is the half run in the plan's
environment, with its stderr (and the materializations' output) in the plan's log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import IO

DEMO_KEY_NAME = "demo-signing.key"
DEMO_CHECKPOINT_DIR = "checkpoints"
# A full sweep each time: the demo's data is small, and "all VERIFIED" then means every run.
FULL_SWEEP_CONFIG = json.dumps({"ops": {"aos_traces_sweep": {"config": {"full": True}}}})


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
    if log is not None:
        log.flush()
    completed = subprocess.run(
        [sys.executable, "-m", __name__, "sweep", plan_run_id],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log if log is not None else None,
        check=False,
        timeout=1800,
    )
    try:
        data = json.loads(completed.stdout.decode("utf-8").strip().splitlines()[-1])
    except (ValueError, IndexError, UnicodeDecodeError):
        where = "its output above" if log_path is None else f"the log: {log_path}"
        return [f"Sweep of every tenant: failed (see {where})"], False
    return sweep_lines(data)


def sweep_lines(data: dict[str, object]) -> tuple[list[str], bool]:
    tenants: dict[str, dict[str, object]] = data.get("tenants", {})  # type: ignore[assignment]
    problems = [f"{t}: {r['error']}" for t, r in tenants.items() if r.get("error")]
    runs = sum(int(r.get("runs", 0)) for r in tenants.values())  # type: ignore[call-overload]
    failures = sum(int(r.get("failures", 0)) for r in tenants.values())  # type: ignore[call-overload]
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
    checks: dict[str, bool] = data.get("checks", {})  # type: ignore[assignment]
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
    from run_proof_pipeline.ledger.create import create_checkpoint
    from run_proof_pipeline.ledger.settings import LedgerSettings
    from run_proof_pipeline.ledger.snapshot_run import in_snapshot
    from run_proof_pipeline.settings import DatabaseUrl

    state = location_root() / ".run-proof"
    own_key = bool(os.environ.get("RUN_PROOF_SIGNING_KEY", "").strip())
    key = None if own_key else state / DEMO_KEY_NAME
    own_directory = bool(os.environ.get("RUN_PROOF_CHECKPOINT_DIR", "").strip())
    directory = None if own_directory else state / DEMO_CHECKPOINT_DIR
    overrides: dict[str, str] = {}
    if key is not None:
        overrides["signing_key_path"] = str(key)
    if directory is not None:
        overrides["checkpoint_dir_path"] = str(directory)
    settings = LedgerSettings(**overrides)  # the rest (origin...) from the environment
    url = DatabaseUrl.parse(env["DATABASE_URL"])
    created = in_snapshot(url, lambda conn: create_checkpoint(conn, settings))
    lines: list[str] = []
    if created.key_warning:
        lines.append(
            f"demo signing key created at {key}: for the demo only (set RUN_PROOF_SIGNING_KEY "
            "to sign with your own)"
            if key is not None
            else created.key_warning
        )
    lines.append(
        f"Signed checkpoint (tree size {created.signed.checkpoint.size}) at {created.path}"
    )
    return lines, True


def _sweep_in_instance(plan_run_id: str) -> dict[str, object]:
    """In the helper process: add a partition per sealed tenant, materialize each (as the
    nightly schedule would, but full), then read back what was recorded."""
    import time

    from dagster import AssetCheckKey, AssetRecordsFilter, DagsterInstance

    from run_proof_pipeline.pipeline.checks import CHECK_DESCRIPTIONS, TRACE_STORE
    from run_proof_pipeline.settings import DatabaseUrl
    from run_proof_pipeline.sweep.dagster_assets import SWEEP_ASSET, TENANTS
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
            if completed.returncode != 0 or record is None or record.timestamp < started:
                results[tenant] = {"error": f"dagster exit code {completed.returncode}"}
                continue
            metadata = record.asset_materialization.metadata  # type: ignore[union-attr]
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


if __name__ == "__main__":
    if sys.argv[1:2] == ["sweep"] and len(sys.argv) == 3:
        print(json.dumps(_sweep_in_instance(sys.argv[2])))
    else:
        sys.exit(f"usage: python -m {__name__} sweep PLAN_RUN_ID")
