"""One long sealed run proved in segment ops, each in a snapshot of its own, and a final op
that re-checks what binds them (issue 16 item 3b; proof/long_run.py, docs/hash-chain-v1.md
"Proving a sealed run in separately snapshotted segments")."""
