#!/usr/bin/env bash
# Runs the test suite; tests start their own throwaway PostgreSQL (and webserver, browser).
# pytest exits 5 when it collected no tests: that is a failure here, never a pass.
#
# Two worker processes (pytest-xdist, one per core of the reference machine), each test file
# kept on one worker (--dist loadfile) so module-scoped servers and stores are shared as
# written. RUN_PROOF_TEST_WORKERS=0 runs in one process.
#
# --basetemp: a tree of our own, not pytest's /tmp/pytest-of-<user>. Every pytest process resets
# that root to 0700, and the plan's Step 5 starts one while the other worker's servers (run as
# the `postgres` OS user when we are root) need to pass through it.
set -uo pipefail
cd "$(dirname "$0")/.."
workers="${RUN_PROOF_TEST_WORKERS:-2}"
# Short: a Unix socket path under it must stay within 107 bytes.
basetemp="$(mktemp -d /tmp/rpt.XXXXXX)"
parallel=()
if [ "$workers" != "0" ]; then
  parallel=(-n "$workers" --dist loadfile)
fi
.venv/bin/python -m pytest "${parallel[@]}" --basetemp "$basetemp/t" "$@"
status=$?
rm -rf "$basetemp"
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests (exit 5): treated as a failure" >&2
  exit 1
fi
exit "$status"
