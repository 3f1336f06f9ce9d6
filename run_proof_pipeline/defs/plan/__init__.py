"""The test plan as a Dagster job (docs/test-plan.md): one op per step, gated, its asset
checks on `aos_traces`, and what starts it by itself (the nightly schedule, the new-seal
sensor, the failure alert)."""
