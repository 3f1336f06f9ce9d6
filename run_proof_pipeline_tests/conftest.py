"""The suite's fixtures, registered for every test module as pytest plugins: no test file
imports a fixture (an import that only pytest would use). They live in modules of their own
(run_proof_pipeline_tests/support/, with the helpers the tests import by name).

PostgreSQL: one throwaway server per test session (``pg_server``, one per pytest-xdist worker)
in pytest's tmp dir, never the project's embedded default under ``.run-proof/``. Tests get
isolation from fresh databases (``new_database``; ``new_store``/``store``: migrated to head, a
copy of a template the migrations ran on once per server) rather than from truncating tables.
These are the fixtures the shipped coordinator tests run with (Step 5), defined once.
"""

import pytest

# Helpers' asserts (e.g. a fixture's precondition) report their values as tests' do; this must
# come before the modules are imported.
pytest.register_assert_rewrite("run_proof_pipeline_tests.support")

pytest_plugins = [
    # pg_server, new_database, new_store, store: the shipped coordinator tests' own fixtures
    "run_proof_pipeline.plan.coordinator_checks.fixtures",
    "run_proof_pipeline_tests.support.dagster_fixtures",  # Dagster's storage on the server
    "run_proof_pipeline_tests.support.aos_fixtures",  # aos_store: AOS's own schema, as deployed
    "run_proof_pipeline_tests.support.ledger_fixtures",  # checkpoint_env: checkpoint dir and key
]
