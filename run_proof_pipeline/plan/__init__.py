"""The seed's test plan (run-proof-test-plan-v1): its queries, stop messages and report.

Free of Dagster, so the same steps can be reasoned about and tested on their own; the
Dagster ops in `run_proof_pipeline.defs.plan` are thin wrappers around these.
"""
