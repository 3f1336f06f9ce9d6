"""The `run-proof` command line."""
