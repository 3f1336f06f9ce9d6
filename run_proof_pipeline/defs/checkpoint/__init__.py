"""The ledger's signed checkpoint in Dagster: the job and its schedule."""
