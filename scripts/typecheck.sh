#!/usr/bin/env bash
# CI: the type checker (issue 15, item 6). Runs the venv's mypy from the repository root with
# the [tool.mypy] config of pyproject.toml: every module of run_proof_pipeline checked, the
# integrity core, proof, ledger and bundle strictly, no `# type: ignore` without its error
# code (mypy's ignore-without-code) and, checked here, none without a reason after it
# (`# type: ignore[code]  # why`). Exits non-zero on any error: mypy's status (1 for errors,
# 2 for a crash or a bad config), else 1 when an ignore has no reason. Extra arguments go to
# mypy (a path to check only that; the reason check still covers the whole package).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/mypy ]; then
  echo "typecheck: .venv/bin/mypy is missing; run scripts/bootstrap.sh first" >&2
  exit 2
fi
status=0
.venv/bin/mypy --config-file pyproject.toml "$@" || status=$?
# An ignore that ends its line: no `# reason` follows it.
if unexplained="$(grep -rnE --include='*.py' '# type: ignore(\[[^]]*\])?[[:space:]]*$' run_proof_pipeline)"; then
  printf '%s\n' "$unexplained" | sed 's/$/  <- `# type: ignore` without a reason after it/'
  echo "typecheck: $(printf '%s\n' "$unexplained" | wc -l) ignore(s) without a reason" >&2
  [ "$status" -ne 0 ] || status=1
fi
exit "$status"
