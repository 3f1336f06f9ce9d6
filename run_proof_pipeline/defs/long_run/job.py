"""The job `run_proof_long_run`: one sealed run proved in segment ops, each in a snapshot of
its own, then checked as a whole in one final snapshot (docs/hash-chain-v1.md, "Proving a
sealed run in separately snapshotted segments")."""

from dagster import job

from run_proof_pipeline.defs.long_run.ops import check_long_run, plan_long_run, prove_segment_op


# Dagster's default executor (multiprocess): the segments run in parallel processes. Nothing
# crosses ops but plain values, so the in-process executor gives the same verdict.
@job(
    description="Prove one long sealed run in segments, each in its own snapshot, and "
    "re-check borders, length, seal and ledger anchor in one final snapshot.",
    tags={"run_proof/long_run": "v1"},
)
def run_proof_long_run() -> None:
    check_long_run(plan_long_run().map(prove_segment_op).collect())
