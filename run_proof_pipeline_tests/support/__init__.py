"""What the tests share, apart from the tests: fixtures and helpers.

Fixture modules are pytest plugins registered once in `run_proof_pipeline_tests/conftest.py`
(`pytest_plugins`), so no test imports a fixture; the server, database and store fixtures are
the shipped ones (`run_proof_pipeline.plan.coordinator_checks.fixtures`), registered there too.
Helpers are imported by name:

- `stores`: record, prove and tamper with runs (the shipped helpers, plus format v1 and stores
  of their own); `v1_writer`: the format-v1 recorder of stores written before migration 0006.
- `aos_fixtures`: AOS's first migration and its SQL (fixture `aos_store`); `aos_deployed`: AOS's
  tables as its whole migration chain leaves them.
- `ledger_fixtures`: checkpoint directory and key (fixture `checkpoint_env`).
- `dagster_fixtures`: Dagster's storage on the throwaway server (fixtures `dagster_storage`,
  `dagster_instance`, `fresh_dagster_instance`); `plan_runs`: run `run_proof_plan` in process
  and read what Dagster recorded.
- `cli_process`: the CLI as a real process; `dagster_ui`: dagster-webserver and dagster-daemon
  as processes; `chromium`: the browser tests' Chromium.
"""
