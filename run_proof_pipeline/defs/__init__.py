"""The Dagster layer, and the only one (docs/architecture.md, "Dagster"): one folder per
domain, each holding its assets, checks, jobs, schedules and sensors, and the resources they
share. Nothing below this package imports Dagster (`.importlinter`); the ops call the layers
below and keep no domain logic of their own. `run_proof_pipeline.definitions` assembles it."""
