"""The coordinator's own tests, in the suite: the very functions Step 5 runs, which ship in
the package (run_proof_pipeline/plan/coordinator_checks/test_coordinators.py), collected here
with this suite's fixtures (`store`, `new_database` on the session's throwaway server).

Except its INTEGRITY_CONFIG test, which compares the constant with a literal of its own (and
takes a database it does not use): test_aos_compat.py compares it with the document that
states the values instead."""

from run_proof_pipeline.plan.coordinator_checks.test_coordinators import *  # noqa: F403

del test_integrity_config_keeps_the_aos_values  # noqa: F821 - star-imported above
