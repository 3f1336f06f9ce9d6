"""Fixtures of the shipped coordinator tests (Step 5 runs them with pytest, in a process of
their own): one throwaway PostgreSQL server for the session in pytest's temporary directory,
a new database per test, the trace store migrated to head. They live in `fixtures.py`, a
plugin module the checkout's suite registers too; never the target database, never the
embedded default."""

pytest_plugins = ["run_proof_pipeline.plan.coordinator_checks.fixtures"]
