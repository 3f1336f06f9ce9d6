#!/usr/bin/env bash
# Regenerates the docs' screenshots (docs/screenshots/*.png) with the browser tests: a real
# Chromium drives dagster-webserver and dagster-daemon on a throwaway PostgreSQL with demo
# traces. Only this script sets RUN_PROOF_SCREENSHOTS; a normal test run never writes there.
# Extra arguments go to pytest (e.g. -k launchpad).
set -euo pipefail
cd "$(dirname "$0")/.."

# Without a browser the tests skip and nothing would be regenerated: say so and fail.
if [ -z "${RUN_PROOF_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1 \
  && ! command -v chromium-browser >/dev/null 2>&1; then
  echo "screenshots.sh: no Chromium (apt-get install chromium, or set RUN_PROOF_CHROMIUM)" >&2
  exit 2
fi

export RUN_PROOF_SCREENSHOTS="$PWD/docs/screenshots"
.venv/bin/python -m pytest run_proof_pipeline_tests/browser -m browser -q -rs "$@"
echo "screenshots.sh: wrote $(ls "$RUN_PROOF_SCREENSHOTS"/*.png | wc -l) PNGs to docs/screenshots/"
