"""Run requests for the plan, aimed at one trace."""

from dagster import RunConfig, RunRequest

from run_proof_pipeline.defs.plan.ops import CoordinatorTestsConfig, TargetConfig


def plan_run_request(
    tenant_id: str, run_id: str, *, run_key: str | None, coordinator_tests: bool, origin: str
) -> RunRequest:
    return RunRequest(
        run_key=run_key,
        run_config=RunConfig(
            ops={
                "step_1_latest_trace": TargetConfig(run_id=run_id, tenant_id=tenant_id),
                "step_5_coordinator_tests": CoordinatorTestsConfig(enabled=coordinator_tests),
            }
        ),
        tags={
            "run_proof/tenant_id": tenant_id,
            "run_proof/run_id": run_id,
            "run_proof/origin": origin,
        },
    )
