"""Dagster: the job `run_proof_checkpoint` (one op) and a schedule that signs the ledger's
tree head into RUN_PROOF_CHECKPOINT_DIR, the same as `run-proof checkpoint create`.

Cron and timezone come from RUN_PROOF_CHECKPOINT_CRON (default hourly, `0 * * * *`) and
RUN_PROOF_TIMEZONE (default UTC). The schedule starts RUNNING when RUN_PROOF_CHECKPOINT_DIR is
set where the code location loads, else STOPPED: signing needs a directory outside the
database that the operator chooses first.
"""

from pathlib import Path

from dagster import (
    Config,
    Failure,
    MetadataValue,
    OpExecutionContext,
    ScheduleDefinition,
    in_process_executor,
    job,
    op,
)
from pydantic import Field
from sqlalchemy.exc import DBAPIError

from run_proof_pipeline.defs.deployment import DEPLOYMENT
from run_proof_pipeline.defs.resources import TraceStoreResource
from run_proof_pipeline.ledger.create import CheckpointRefused, create_checkpoint
from run_proof_pipeline.ledger.settings import load_ledger_settings
from run_proof_pipeline.settings import ConfigError, redact


class CheckpointConfig(Config):
    out: str = Field(default="", description="Directory or .note file; empty: the env dir")


@op(description="Sign the ledger's size and tree head (C2SP checkpoint) outside the database.")
def write_ledger_checkpoint(
    context: OpExecutionContext, config: CheckpointConfig, trace_store: TraceStoreResource
) -> str:
    settings = load_ledger_settings()
    out = Path(config.out) if config.out else None
    try:
        created = trace_store.on_connection(
            lambda conn: create_checkpoint(conn, settings, out=out), snapshot=True
        )
    except (ConfigError, CheckpointRefused) as exc:
        # A damaged or misnamed file in the directory, or another origin's directory, lands
        # here (fail closed): nothing is signed over it.
        raise Failure(description=f"checkpoint not written: {redact(str(exc))}") from None
    except DBAPIError as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise Failure(
            description=redact(f"checkpoint not written: database error: {detail[0]}")
        ) from None
    except OSError as exc:
        raise Failure(description=redact(f"checkpoint not written: {exc}")) from None
    checkpoint = created.signed.checkpoint
    if created.key_warning:
        context.log.warning(created.key_warning)
    context.add_output_metadata(
        {
            "path": MetadataValue.path(str(created.path)),
            "origin": checkpoint.origin,
            "tree_size": checkpoint.size,
            "root_hash": checkpoint.root.hex(),
        }
    )
    return str(created.path)


@job(executor_def=in_process_executor, description="Write a signed checkpoint of the ledger.")
def run_proof_checkpoint() -> None:
    write_ledger_checkpoint()


run_proof_checkpoint_schedule = ScheduleDefinition(
    name="run_proof_checkpoint_schedule",
    job=run_proof_checkpoint,
    cron_schedule=DEPLOYMENT.checkpoint_cron,
    execution_timezone=DEPLOYMENT.timezone,
    default_status=DEPLOYMENT.schedule_status(bool(DEPLOYMENT.checkpoint_dir)),
    description="Sign the ledger's tree head on a schedule (needs RUN_PROOF_SIGNING_KEY and "
    "RUN_PROOF_CHECKPOINT_DIR).",
)
