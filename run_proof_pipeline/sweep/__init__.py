"""Sweep: verify every sealed trace (incrementally, or all of them), in batches and shards."""

from run_proof_pipeline.sweep.report import FailedRun, SweepProgress, SweepReport
from run_proof_pipeline.sweep.runner import SweepOptions, run_sweep

__all__ = ["FailedRun", "SweepOptions", "SweepProgress", "SweepReport", "run_sweep"]
