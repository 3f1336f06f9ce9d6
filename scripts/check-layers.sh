#!/usr/bin/env bash
# The layer order of docs/architecture.md, enforced: import-linter's contracts (.importlinter)
# and no private name crossing a package (scripts/check_private_imports.py).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/lint-imports --config .importlinter
.venv/bin/python scripts/check_private_imports.py
