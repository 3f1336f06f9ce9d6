"""The alert for a failed proof: which trace, which step stopped it and why, and where it went."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

from dagster import DagsterEvent
from dagster._utils.error import SerializableErrorInfo
from pydantic import BaseModel

from run_proof_pipeline.settings import redact


class StepStop(BaseModel):
    """One step that failed: the plan's own stop message, and the first bad step, seal or
    header when the proof named one."""

    step: str
    error: str
    first_bad: str | None = None


class ProofAlert(BaseModel):
    event: str = "run_proof_failed"
    dagster_run_id: str
    tenant_id: str | None
    run_id: str | None
    failed_steps: list[StepStop]


def step_stop(event: DagsterEvent) -> StepStop:
    """What a STEP_FAILURE event says: the description of the `Failure` an op raised (the
    seed's words), else the first line of the error; never Dagster's generic message."""
    data = event.step_failure_data
    user = data.user_failure_data
    first_bad = user.metadata.get("first_bad") if user is not None else None
    return StepStop(
        step=event.step_key or "run",
        error=redact((user.description if user is not None else None) or _first_line(data.error)),
        first_bad=None if first_bad is None else str(first_bad.value),
    )


def run_stop(event: DagsterEvent) -> StepStop:
    """A run that failed outside any step (its run worker died, say): why, as Dagster says."""
    data = event.job_failure_data  # None when the failure was reported with a message only
    error = _first_line(data.error) if data is not None else ""
    return StepStop(step="run", error=redact(error or event.message or "run failed"))


def _first_line(error: SerializableErrorInfo | None) -> str:
    text = error.message.strip() if error is not None and error.message else ""
    return text.splitlines()[0] if text else ""


def build_alert(run_id: str, tags: Mapping[str, str], stops: Sequence[StepStop]) -> ProofAlert:
    return ProofAlert(
        dagster_run_id=run_id,
        tenant_id=tags.get("run_proof/tenant_id"),
        run_id=tags.get("run_proof/run_id"),
        failed_steps=list(stops),
    )


def post_webhook(url: str, alert: ProofAlert, *, timeout: float = 10) -> str:
    """POST the alert as JSON; returns how it went ("HTTP 200", or why it did not arrive).
    Never raises: a webhook that is down must not stop the alerts that follow."""
    request = urllib.request.Request(
        url,
        data=json.dumps(alert.model_dump(mode="json")).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return redact(f"not delivered: {getattr(exc, 'reason', exc)}")
