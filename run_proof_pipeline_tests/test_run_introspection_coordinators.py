"""The coordinator's own tests, in the suite: the very functions Step 5 runs, which ship in
the package (run_proof_pipeline/plan/coordinator_checks/test_coordinators.py), collected here
with this suite's fixtures (`store`, `new_database` on the session's throwaway server).
INTEGRITY_CONFIG and the result names are compared with the documents that state them in
test_aos_compat.py."""

from run_proof_pipeline.plan.coordinator_checks.test_coordinators import *  # noqa: F403
