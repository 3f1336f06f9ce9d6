"""What `run-proof plan` shows of a Dagster run: a log file for Dagster's own output, and one
line per plan step read back from the run's stored events.

The CLI half imports no Dagster (the CLI's start-up counts); `python -m
run_proof_pipeline.cli.plan_output TAG` is the half that reads Dagster's instance, run in the
plan's own environment (DAGSTER_HOME and DAGSTER_PG_URL are set for the subprocess only) with
its stderr in the log, so that nothing Dagster says on import reaches the terminal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

# Tags the run `run-proof plan` starts, so that its steps are found by this value and not by
# "the latest run" (a schedule or a sensor may start one at the same time).
INVOCATION_TAG = "run_proof/plan_invocation"
STEPS: tuple[tuple[str, str], ...] = (
    ("step_1_latest_trace", "Step 1 (latest trace)"),
    ("step_2_step_count", "Step 2 (step count)"),
    ("step_3_coordinator_proof", "Step 3 (coordinator proof)"),
    ("step_4_integrity_expectations", "Step 4 (integrity expectations)"),
    ("step_5_coordinator_tests", "Step 5 (coordinator tests)"),
)
# Ops around the five steps: shown only when they failed (then the steps after did not run).
OTHER_OPS = {"preconditions": "Preconditions", "output_report": "Output report"}
SKIPPED_BY_CONFIGURATION = "skipped by configuration"  # as defs/plan/ops.py reports Step 5


def open_plan_log(home: Path) -> tuple[Path, IO[bytes]]:
    """A new file for this run under `<DAGSTER_HOME>/logs`, readable by its owner only: Dagster's
    events carry run metadata and error texts (passwords are redacted, but the rest is still
    the operator's business). Never reuses a file: two runs in one second get `-2`, `-3`..."""
    directory = home / "logs"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for attempt in range(1, 1000):
        path = directory / (f"plan-{stamp}.log" if attempt == 1 else f"plan-{stamp}-{attempt}.log")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        return path, os.fdopen(fd, "wb")
    raise FileExistsError(f"no free log file name in {directory}")


@dataclass(frozen=True)
class StepOutcome:
    label: str
    outcome: str  # "passed", "failed" or "skipped"
    detail: str = ""

    def line(self) -> str:
        if self.outcome == "failed":
            return f"{self.label}: failed: {self.detail}"
        return f"{self.label}: {self.outcome}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class RunSteps:
    """What the helper read from Dagster's instance for one invocation."""

    dagster_run_id: str | None
    status: str | None
    events: dict[str, dict[str, str]]  # op -> {"outcome": ..., "error": ...}
    run_error: str | None = None

    @classmethod
    def from_json(cls, text: str) -> RunSteps:
        data = json.loads(text)
        return cls(data.get("run_id"), data.get("status"), data.get("steps", {}), data.get("error"))


def read_run_steps(env: dict[str, str], tag: str, log: IO[bytes] | None) -> RunSteps:
    """The run's step outcomes, read by the helper in the plan's environment. An unreadable
    instance is "no run found", never a traceback: the plan's exit code already says how
    it went, and the log says why."""
    completed = subprocess.run(
        [sys.executable, "-m", __name__, tag],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log if log is not None else None,
        check=False,
        timeout=120,
    )
    if completed.returncode != 0:
        return RunSteps(None, None, {})
    try:
        return RunSteps.from_json(completed.stdout.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return RunSteps(None, None, {})


def report_data(report_markdown: Path | None) -> dict[str, object]:
    """The JSON twin of the Markdown report (plan/report.py writes both), if there is one."""
    if report_markdown is None:
        return {}
    try:
        data = json.loads(report_markdown.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def step_outcomes(
    run: RunSteps, report: dict[str, object], *, coordinator_tests: bool
) -> list[StepOutcome]:
    """One outcome per step; then any failure outside the five steps (the preconditions, the
    report, the run itself), so that every stop is on its own line."""
    outcomes: list[StepOutcome] = []
    for op, label in STEPS:
        event = run.events.get(op)
        if event is None or event.get("outcome") == "skipped":
            # Never started: a step before it stopped the run (Dagster records no event).
            outcomes.append(StepOutcome(label, "skipped", "an earlier step stopped the run"))
        elif event["outcome"] == "failed":
            outcomes.append(StepOutcome(label, "failed", event.get("error", "")))
        elif op == "step_5_coordinator_tests":
            # Step 5 disabled still succeeds as an op; the report (or the option) says it
            # did not run the tests, which "passed" would hide.
            pytest_result = str(report.get("pytest_result") or "")
            if pytest_result == SKIPPED_BY_CONFIGURATION or (
                not pytest_result and not coordinator_tests
            ):
                outcomes.append(StepOutcome(label, "skipped", "by configuration"))
            else:
                # The report says `pass (12 passed in 3.1s)`: the line says "passed" already.
                summary = pytest_result.removeprefix("pass (").removesuffix(")")
                outcomes.append(StepOutcome(label, "passed", summary))
        else:
            outcomes.append(StepOutcome(label, "passed"))
    for op, label in OTHER_OPS.items():
        event = run.events.get(op)
        if event is not None and event.get("outcome") == "failed":
            outcomes.append(StepOutcome(label, "failed", event.get("error", "")))
    if run.run_error and not any(o.outcome == "failed" for o in outcomes):
        outcomes.append(StepOutcome("Dagster run", "failed", run.run_error))
    return outcomes


def no_run_line(log_path: Path | None) -> str:
    """For a plan Dagster recorded no run of: its last line (redacted: it may quote a URL),
    and where the rest is."""
    from run_proof_pipeline.settings import redact

    if log_path is None:  # --verbose: Dagster's output is on the terminal already
        return "Dagster recorded no run: see its output above"
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    last = next((line.strip() for line in reversed(lines) if line.strip()), "")
    said = f": {redact(last)}" if last else ""
    return f"Dagster recorded no run{said} (its log: {log_path})"


def _read_instance(tag: str) -> dict[str, object]:
    """In the helper process: the tagged run's status and each op's outcome."""
    from dagster import DagsterEventType, DagsterInstance, RunsFilter

    from run_proof_pipeline.defs.plan.alerts import run_stop, step_stop

    with DagsterInstance.get() as instance:
        runs = instance.get_runs(filters=RunsFilter(tags={INVOCATION_TAG: tag}), limit=1)
        if not runs:
            return {"run_id": None, "status": None, "steps": {}}
        run = runs[0]
        steps: dict[str, dict[str, str]] = {}
        error: str | None = None
        kinds = {
            DagsterEventType.STEP_SUCCESS,
            DagsterEventType.STEP_FAILURE,
            DagsterEventType.STEP_SKIPPED,
            DagsterEventType.RUN_FAILURE,
        }
        for entry in instance.all_logs(run.run_id, of_type=kinds):
            event = entry.dagster_event
            if event is None:
                continue
            if event.event_type == DagsterEventType.RUN_FAILURE:
                error = run_stop(event).error
            elif event.step_key is not None:
                if event.event_type == DagsterEventType.STEP_FAILURE:
                    steps[event.step_key] = {"outcome": "failed", "error": step_stop(event).error}
                elif event.event_type == DagsterEventType.STEP_SKIPPED:
                    steps[event.step_key] = {"outcome": "skipped"}
                else:
                    steps[event.step_key] = {"outcome": "passed"}
        return {"run_id": run.run_id, "status": run.status.value, "steps": steps, "error": error}


if __name__ == "__main__":
    print(json.dumps(_read_instance(sys.argv[1])))
