"""The job `run_proof_plan`: the seed's five steps and its report, in the seed's order."""

from dagster import in_process_executor, job

from run_proof_pipeline.defs.plan.ops import (
    output_report,
    preconditions,
    step_1_latest_trace,
    step_2_step_count,
    step_3_coordinator_proof,
    step_4_integrity_expectations,
    step_5_coordinator_tests,
)


# In-process: the steps are strictly sequential, and a subprocess per op costs seconds
# on two cores for no parallelism.
@job(
    executor_def=in_process_executor,
    description="Run Proof Test Plan v1: prove that a run's trace is exactly what the agent did.",
    tags={"run_proof/plan": "v1"},
)
def run_proof_plan() -> None:
    output_report(
        step_5_coordinator_tests(
            step_4_integrity_expectations(
                step_3_coordinator_proof(step_2_step_count(step_1_latest_trace(preconditions())))
            )
        )
    )
