"""The run config of `run_proof_long_run`: which run, and into how many segments."""

from dagster import Config
from pydantic import Field

from run_proof_pipeline.proof.long_run import MAX_SEGMENTS


class LongRunConfig(Config):
    run_id: str = Field(description="The sealed run to prove")
    tenant_id: str = Field(
        default="", description="Tenant of run_id; empty: the one tenant that holds run_id"
    )
    # No pydantic bound: Dagster would show its ValidationError with a traceback; the bound is
    # checked by proof.long_run.plan_segments, with one line naming this key.
    segments: int = Field(
        default=4, description=f"Segment ops to prove the run in, 1 to {MAX_SEGMENTS}"
    )
