#!/usr/bin/env bash
# Runs the test suite; tests start their own throwaway PostgreSQL (and webserver, browser).
# pytest exits 5 when it collected no tests: that is a failure here, never a pass.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests (exit 5): treated as a failure" >&2
  exit 1
fi
exit "$status"
