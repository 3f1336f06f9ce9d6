"""The ledger of run roots (rule 5) and its signed checkpoints: docs/ledger-v1.md.

Pure modules (no database): entry, keys, checkpoint, checkpoint_files, tree, settings,
signed_head. Database readers: queries, audit, create. Dagster:
dagster_checkpoint (imported only by the definitions).
"""
