"""The coordinator's own tests, shipped with the package: the plan's Step 5 runs
`test_coordinators.py` here with pytest, from a checkout or from an installed wheel alike.

`fixtures.py` (a pytest plugin, registered by `conftest.py`) starts a throwaway PostgreSQL
server for them (never the target database) and gives each test a store migrated to head;
`support.py` records and proves runs. The checkout's suite registers the same fixtures and
uses the same helpers, and runs the same tests
(run_proof_pipeline_tests/test_run_introspection_coordinators.py imports them).
"""
