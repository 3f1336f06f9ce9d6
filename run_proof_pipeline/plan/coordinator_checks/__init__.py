"""The coordinator's own tests, shipped with the package: the plan's Step 5 runs
`test_coordinators.py` here with pytest, from a checkout or from an installed wheel alike.

`conftest.py` starts a throwaway PostgreSQL server for them (never the target database);
`support.py` records and proves runs the way the project's test suite does. The checkout's
suite runs the same tests (run_proof_pipeline_tests/test_run_introspection_coordinators.py
imports them) with its own fixtures.
"""
