"""The daily retirement of the runs AOS's retention deletes next (`aos_retention_retirement`).

Settings: RUN_PROOF_AOS_RETENTION_DAYS (AOS's N, default 30), RUN_PROOF_AOS_RETENTION_CRON
(default `0 0 * * *`, through defs/deployment.py), RUN_PROOF_AOS_RETENTION_LEAD_HOURS (default
24); RUNNING only when RUN_PROOF_AOS_RETENTION_DAYS is set; it needs RUN_PROOF_SIGNING_KEY.
"""

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dagster import (
    Config,
    Failure,
    MetadataValue,
    OpExecutionContext,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    in_process_executor,
    job,
    op,
    schedule,
)
from pydantic import Field
from sqlalchemy.exc import DBAPIError

from run_proof_pipeline.defs.deployment import DEPLOYMENT
from run_proof_pipeline.defs.resources import TraceStoreResource
from run_proof_pipeline.ledger.retire_batch import (
    RetireBatchDone,
    RetireSelection,
    retire_created_before,
)
from run_proof_pipeline.ledger.retirement import RetirementError
from run_proof_pipeline.ledger.settings import load_ledger_settings
from run_proof_pipeline.settings import ConfigError, redact
from run_proof_pipeline.store.engine import run_on_engine

# AOS's retention, retired first (run_proof_pipeline/ledger/retire_batch.py).
#
# AOS's retention (`cleanup_old_traces`) deletes the traces created more than N days before it
# runs, and fails whole if one row is refused. This schedule signs a tombstone for every format
# run in that window first. AOS's job may run at any time of the day (it is an API call of
# AOS's), so each tick retires one lead (default: a day, the schedule's period) beyond
# `now - N days`: whenever AOS's job runs before the next tick, its window
# (created_at < then - N days) holds retired runs only. A smaller RUN_PROOF_AOS_RETENTION_LEAD_HOURS
# fits an operator who runs this just before AOS's job (at least the gap between the two).

RETIRE_OP = "retire_runs_before_aos_retention"


@dataclass(frozen=True)
class RetentionSettings:
    days: int  # AOS's retention, RUN_PROOF_AOS_RETENTION_DAYS (default 30)
    lead: timedelta  # RUN_PROOF_AOS_RETENTION_LEAD_HOURS (default 24)

    def cut(self, at: datetime) -> datetime:
        """Every format run created before this is retired at `at`."""
        return at - timedelta(days=self.days) + self.lead


def _whole(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


def retention_settings() -> RetentionSettings:
    """Read when a tick or a run happens, so a bad value is reported there, not at load."""
    days = _whole("RUN_PROOF_AOS_RETENTION_DAYS", 30, 1)
    lead = timedelta(hours=_whole("RUN_PROOF_AOS_RETENTION_LEAD_HOURS", 24, 0))
    if lead >= timedelta(days=days):
        # Else a tick would retire runs created after it: runs AOS keeps.
        raise ConfigError(
            f"RUN_PROOF_AOS_RETENTION_LEAD_HOURS ({lead.total_seconds() / 3600:g}) must be "
            f"shorter than RUN_PROOF_AOS_RETENTION_DAYS ({days} days)"
        )
    return RetentionSettings(days, lead)


class RetireBeforeRetentionConfig(Config):
    created_before: str = Field(
        default="",
        description="ISO 8601 time with offset; empty: now - RUN_PROOF_AOS_RETENTION_DAYS + lead",
    )
    tenant_id: str = Field(default="", description="Only this tenant; empty: every tenant")
    reason: str = Field(default="", description="The tombstones' reason; empty: AOS retention")


def _reason(days: int | None, cut: datetime) -> str:
    window = f"{days} days" if days is not None else "the window"
    return f"AOS retention ({window}): created before {cut.isoformat()}"


@op(
    name=RETIRE_OP,
    description="Sign a tombstone for every format run AOS's retention is about to delete.",
)
def retire_runs_before_aos_retention(
    context: OpExecutionContext,
    config: RetireBeforeRetentionConfig,
    trace_store: TraceStoreResource,
) -> int:
    try:
        key = load_ledger_settings().signing_key()
        if config.created_before:
            cut = datetime.fromisoformat(config.created_before.replace("Z", "+00:00"))
            days: int | None = None
        else:
            settings = retention_settings()
            cut, days = settings.cut(datetime.now(UTC)), settings.days
        if cut.tzinfo is None:
            raise ConfigError(f"created_before {config.created_before!r} has no UTC offset")
        url = trace_store.url()
    except (ConfigError, ValueError) as exc:
        raise Failure(description=f"nothing retired: {redact(str(exc))}") from None
    selection = RetireSelection(created_before=cut, tenant_id=config.tenant_id or None)

    def progress(done: RetireBatchDone) -> None:
        context.log.info(
            f"batch {done.batch}: {done.examined} runs examined; {done.retired} retired, "
            f"{done.already_retired} retired before, {done.refused} refused"
        )

    try:
        report = run_on_engine(
            url,
            lambda engine: retire_created_before(
                engine, selection, config.reason or _reason(days, cut), key, progress=progress
            ),
        )
    except (RetirementError, DBAPIError) as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise Failure(description=redact(f"retirement stopped: {detail[0]}")) from None
    context.add_output_metadata(
        {
            "created_before": cut.isoformat(),
            "examined": report.examined,
            "retired": len(report.retired),
            "already_retired": len(report.already_retired),
            "refused": len(report.refused),
        }
    )
    if report.refused:
        # AOS's retention fails whole on any of these: say so where an alert sees it.
        lines = [f"{r.tenant_id}/{r.run_id} ({r.trace_id}): {r.reason}" for r in report.refused]
        raise Failure(
            description=f"{len(report.refused)} runs created before {cut.isoformat()} were "
            "not retired; AOS's retention will fail on them",
            metadata={"refused": MetadataValue.md("\n".join(f"- {line}" for line in lines))},
        )
    return len(report.retired)


@job(
    executor_def=in_process_executor,
    description="Retire (signed tombstones) the runs AOS's retention deletes next.",
)
def aos_retention_retirement_job() -> None:
    retire_runs_before_aos_retention()


@schedule(
    name="aos_retention_retirement",
    job=aos_retention_retirement_job,
    cron_schedule=DEPLOYMENT.aos_retention_cron,
    execution_timezone=DEPLOYMENT.timezone,
    # Opt-in: a tombstone lets a proven run be deleted, and N must be AOS's own setting.
    default_status=DEPLOYMENT.schedule_status(bool(DEPLOYMENT.aos_retention_days)),
    description="Daily, ahead of AOS's retention: a signed tombstone for every format run "
    "created before now - RUN_PROOF_AOS_RETENTION_DAYS (+ a lead of a day).",
)
def aos_retention_retirement(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    try:
        settings = retention_settings()
    except ConfigError as exc:
        return SkipReason(f"not retiring: {exc}")
    at = context.scheduled_execution_time or datetime.now(UTC)
    cut = settings.cut(at.astimezone(UTC))
    return RunRequest(
        run_key=f"aos-retention:{cut.isoformat()}",
        run_config={
            "ops": {
                RETIRE_OP: {
                    "config": {
                        "created_before": cut.isoformat(),
                        "tenant_id": "",
                        "reason": _reason(settings.days, cut),
                    }
                }
            }
        },
        tags={"run-proof/created-before": cut.isoformat()},
    )
