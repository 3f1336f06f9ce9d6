"""Exit codes shared by every `run-proof` command (documented in the README).

`ExitCode` lives with the root of the expected failures (run_proof_pipeline/errors.py), which
carries it; this module maps the verification statuses to it. Its keys are the values of
`integrity.VerificationStatus` (run_proof_pipeline_tests/test_error_model.py checks that
every status has its exit code)."""

from run_proof_pipeline.errors import ExitCode

__all__ = ["STATUS_EXIT", "ExitCode"]

STATUS_EXIT = {
    "VERIFIED": ExitCode.OK,
    "FAILED": ExitCode.FAILED,
    "UNSEALED": ExitCode.UNSEALED,
    "UNSUPPORTED": ExitCode.NOT_FOUND,
}
