"""Sensors: prove every newly sealed trace, and alert on every failed proof.

`new_sealed_traces` keeps its cursor on `seal_seq`, a sequence value the database assigns
when a trace is sealed (producer timestamps arrive out of order). Its first tick only sets
the cursor to the newest seal: older traces belong to the nightly sweep, not a burst of runs.
Default status STOPPED (opt in from the UI, or RUN_PROOF_SENSORS=running).
`run_proof_failure_alert` defaults to RUNNING.
"""

import asyncio
import json
import os
import urllib.request
from dataclasses import dataclass
from typing import Any

from dagster import (
    AssetObservation,
    DefaultSensorStatus,
    RunFailureSensorContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    sensor,
)
from sqlalchemy import text

from run_proof_pipeline.automation.targets import plan_run_request
from run_proof_pipeline.pipeline.checks import TRACE_STORE
from run_proof_pipeline.pipeline.job import run_proof_plan
from run_proof_pipeline.pipeline.resources import TraceStoreResource
from run_proof_pipeline.settings import redact
from run_proof_pipeline.store.engine import async_engine

SENSOR_BATCH = 100
_NEW_SEALS_SQL = """SELECT trace_id, run_id, tenant_id, root_hash, seal_seq
FROM aos_traces
WHERE seal_seq > :cursor AND chain_length > 0
ORDER BY seal_seq
LIMIT :limit"""
_MAX_SEAL_SQL = "SELECT COALESCE(max(seal_seq), 0) FROM aos_traces"


@dataclass(frozen=True)
class SealedTrace:
    trace_id: str
    run_id: str
    tenant_id: str
    root_hash: str
    seal_seq: int


def _sensor_status() -> DefaultSensorStatus:
    wanted = os.environ.get("RUN_PROOF_SENSORS", "stopped").strip().lower()
    return DefaultSensorStatus.RUNNING if wanted == "running" else DefaultSensorStatus.STOPPED


def fetch_new_seals(
    trace_store: TraceStoreResource, cursor: int | None
) -> tuple[list[SealedTrace], int]:
    async def go() -> tuple[list[SealedTrace], int]:
        engine = async_engine(trace_store.url())
        try:
            async with engine.connect() as conn:
                if cursor is None:
                    return [], int((await conn.execute(text(_MAX_SEAL_SQL))).scalar_one())
                rows = (
                    await conn.execute(
                        text(_NEW_SEALS_SQL), {"cursor": cursor, "limit": SENSOR_BATCH}
                    )
                ).all()
                seals = [SealedTrace(**row._mapping) for row in rows]
                return seals, (seals[-1].seal_seq if seals else cursor)
        finally:
            await engine.dispose()

    return asyncio.run(go())


@sensor(
    job=run_proof_plan,
    minimum_interval_seconds=60,
    default_status=_sensor_status(),
    description="One plan run per newly sealed trace with steps (run_key = trace id + root).",
)
def new_sealed_traces(
    context: SensorEvaluationContext, trace_store: TraceStoreResource
) -> SensorResult | SkipReason:
    cursor = int(context.cursor) if context.cursor else None
    seals, new_cursor = fetch_new_seals(trace_store, cursor)
    if cursor is None:
        return SensorResult(
            skip_reason=SkipReason(f"cursor set at seal_seq {new_cursor}; watching new seals"),
            cursor=str(new_cursor),
        )
    if not seals:
        return SkipReason(f"no trace sealed after seal_seq {cursor}")
    return SensorResult(
        run_requests=[
            plan_run_request(
                seal.tenant_id,
                seal.run_id,
                # Never proven twice for the same root.
                run_key=f"{seal.trace_id}:{seal.root_hash}",
                coordinator_tests=False,
                origin="sensor:new_sealed_traces",
            )
            for seal in seals
        ],
        cursor=str(new_cursor),
    )


def build_alert(
    run_id: str, tags: dict[str, str], failures: list[tuple[str, str]]
) -> dict[str, Any]:
    """The alert for one failed plan run: which trace, which step stopped, and why."""
    return {
        "event": "run_proof_failed",
        "dagster_run_id": run_id,
        "tenant_id": tags.get("run_proof/tenant_id"),
        "run_id": tags.get("run_proof/run_id"),
        "failed_steps": [{"step": step, "error": redact(message)} for step, message in failures],
    }


def post_webhook(url: str, payload: dict[str, Any], *, timeout: float = 10) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status)


@run_failure_sensor(
    monitored_jobs=[run_proof_plan],
    default_status=DefaultSensorStatus.RUNNING,
    description="Alert on every failed proof: an event on aos_traces, and a webhook POST "
    "when RUN_PROOF_ALERT_WEBHOOK is set.",
)
def run_proof_failure_alert(context: RunFailureSensorContext) -> None:
    failures = [
        (event.step_key or "run", event.message or "")
        for event in context.get_step_failure_events()
    ] or [("run", context.failure_event.message or "")]
    alert = build_alert(context.dagster_run.run_id, dict(context.dagster_run.tags), failures)
    context.instance.report_runless_asset_event(
        AssetObservation(
            asset_key=TRACE_STORE,
            description="run-proof alert: a proof failed",
            metadata={
                k: json.dumps(v) if not isinstance(v, str) else v
                for k, v in alert.items()
                if v is not None
            },
        )
    )
    webhook = os.environ.get("RUN_PROOF_ALERT_WEBHOOK")
    if webhook:
        status = post_webhook(webhook, alert)
        context.log.info(f"alert posted to {redact(webhook)}: HTTP {status}")
