"""Sensors: prove every newly sealed trace, and alert on every failed proof.

`new_sealed_traces` follows `seal_seq`, a number the database assigns when a trace is sealed
(producer timestamps arrive out of order), and keys each run on the format's seal,
`seal_hash` (format v1 and v2 alike; AOS's own `root_hash` is never the seal of a format-v2
trace: docs/hash-chain-v2.md); its cursor (`SealCursor`) also remembers numbers
still unseen, since seals can commit out of number order. Its first tick only sets the cursor
to the newest seal: older traces belong to the nightly schedule, not a burst of runs.
Default status STOPPED (opt in from the UI, or RUN_PROOF_SENSORS=running).
`run_proof_failure_alert` defaults to RUNNING.
"""

import json
import os
import time
from dataclasses import dataclass

from dagster import (
    AssetObservation,
    DefaultSensorStatus,
    RunFailureSensorContext,
    SensorEvaluationContext,
    SensorResult,
    run_failure_sensor,
    sensor,
)
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from run_proof_pipeline.defs.deployment import DEPLOYMENT
from run_proof_pipeline.defs.plan.alerts import build_alert, post_webhook, run_stop, step_stop
from run_proof_pipeline.defs.plan.checks import TRACE_STORE
from run_proof_pipeline.defs.plan.job import run_proof_plan
from run_proof_pipeline.defs.plan.run_requests import plan_run_request
from run_proof_pipeline.defs.plan.seal_cursor import SealCursor
from run_proof_pipeline.defs.resources import TraceStoreResource
from run_proof_pipeline.settings import redact

SENSOR_BATCH = 100
# Zero-step seals are read too (their numbers must not look missing); the plan would stop at
# its Step 2 for them, so they get no run.
_NEW_SEALS_SQL = text(
    """SELECT trace_id, run_id, tenant_id, seal_hash, seal_seq, chain_length
FROM aos_traces
WHERE seal_seq > :high OR seal_seq IN :pending
ORDER BY seal_seq
LIMIT :limit"""
).bindparams(bindparam("pending", expanding=True))
_MAX_SEAL_SQL = text("SELECT COALESCE(max(seal_seq), 0) FROM aos_traces")


@dataclass(frozen=True)
class SealedTrace:
    trace_id: str
    run_id: str
    tenant_id: str
    seal_hash: str
    seal_seq: int
    chain_length: int


def fetch_new_seals(
    trace_store: TraceStoreResource, cursor: SealCursor | None, *, now: float | None = None
) -> tuple[list[SealedTrace], SealCursor]:
    """The seals after `cursor` (at most SENSOR_BATCH, in seal order) and the cursor after
    them; with no cursor yet, none and a cursor at the newest seal."""

    if cursor is None:

        async def newest(conn: AsyncConnection) -> SealCursor:
            return SealCursor(high=int((await conn.execute(_MAX_SEAL_SQL)).scalar_one()))

        return [], trace_store.on_connection(newest)

    async def after(conn: AsyncConnection) -> list[SealedTrace]:
        rows = await conn.execute(
            _NEW_SEALS_SQL,
            {"high": cursor.high, "pending": list(cursor.pending), "limit": SENSOR_BATCH},
        )
        return [SealedTrace(**row._mapping) for row in rows]

    seals = trace_store.on_connection(after)
    seen = (seal.seal_seq for seal in seals)
    return seals, cursor.advance(seen, time.time() if now is None else now)


@sensor(
    job=run_proof_plan,
    minimum_interval_seconds=60,
    default_status=DEPLOYMENT.sensor_status(),
    description="One plan run per newly sealed trace with steps (run_key = trace id + seal).",
)
def new_sealed_traces(
    context: SensorEvaluationContext, trace_store: TraceStoreResource
) -> SensorResult:
    cursor = SealCursor.parse(context.cursor)
    seals, advanced = fetch_new_seals(trace_store, cursor)
    if cursor is None:
        return SensorResult(
            skip_reason=f"cursor set at seal_seq {advanced.high}; watching new seals",
            cursor=advanced.dump(),
        )
    requests = [
        plan_run_request(
            seal.tenant_id,
            seal.run_id,
            # Never proven twice for the same seal, however often it is seen.
            run_key=f"{seal.trace_id}:{seal.seal_hash}",
            coordinator_tests=False,
            origin="sensor:new_sealed_traces",
        )
        for seal in seals
        if seal.chain_length > 0
    ]
    return SensorResult(
        run_requests=requests,
        skip_reason=None
        if requests
        else f"no trace with steps sealed after seal_seq {cursor.high}",
        cursor=advanced.dump(),
    )


@run_failure_sensor(
    monitored_jobs=[run_proof_plan],
    default_status=DefaultSensorStatus.RUNNING,
    description="Alert on every failed proof: an event on aos_traces, and a webhook POST "
    "when RUN_PROOF_ALERT_WEBHOOK is set.",
)
def run_proof_failure_alert(context: RunFailureSensorContext) -> None:
    stops = [step_stop(event) for event in context.get_step_failure_events()] or [
        run_stop(context.failure_event)
    ]
    alert = build_alert(context.dagster_run.run_id, context.dagster_run.tags, stops)
    metadata = {k: v for k, v in alert.model_dump(mode="json").items() if v is not None}
    metadata["failed_steps"] = json.dumps(metadata["failed_steps"])
    webhook = os.environ.get("RUN_PROOF_ALERT_WEBHOOK")
    if webhook:
        delivery = post_webhook(webhook, alert)
        metadata["webhook"] = delivery
        log = context.log.info if delivery.startswith("HTTP 2") else context.log.warning
        log(f"alert posted to {redact(webhook)}: {delivery}")
    context.instance.report_runless_asset_event(
        AssetObservation(
            asset_key=TRACE_STORE,
            description="run-proof alert: a proof failed",
            metadata=metadata,
        )
    )
