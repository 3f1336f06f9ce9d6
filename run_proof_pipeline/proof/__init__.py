"""Proving one stored trace: stream its rows through the pure verifier, then apply the
ledger anchor (rule 5). Shared by the coordinator, the sweep and the CLI."""
