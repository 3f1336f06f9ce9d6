#!/usr/bin/env bash
# Installs everything the project needs on a fresh machine that has only python3:
# a pinned uv in .run-proof/tools, then the locked environment in .venv (uv.lock).
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
tools=.run-proof/tools
if [ ! -x "$tools/bin/uv" ]; then
  python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
# Bytecode compiled at install, as pip does: an environment with PYTHONDONTWRITEBYTECODE set
# would otherwise compile every module on every start (run-proof --help: 3.4 s instead of 1.5).
"$tools/bin/uv" sync --frozen --quiet --compile-bytecode
.venv/bin/python -m compileall -q -j 0 run_proof_pipeline >/dev/null

# Browser tests drive Debian's Chromium (Playwright's own browser download cannot work here).
if [ "${RUN_PROOF_SKIP_BROWSER_INSTALL:-}" != "1" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing Debian's chromium for the browser tests" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "bootstrap: could not install chromium; browser tests will say so and skip" >&2
  else
    echo "bootstrap: chromium not found; install it (apt-get install chromium) for the browser tests" >&2
  fi
fi

# The sweep's Celery test and benchmark start a throwaway Redis broker (docs/sweep.md, "Using
# the cores, and a cluster"): Debian's redis-server. They start their own server on a free
# loopback port, never the package's system service.
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing Debian's redis-server for the Celery sweep test" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
      || echo "bootstrap: could not install redis-server; the Celery sweep test will say so and skip" >&2
  else
    echo "bootstrap: redis-server not found; install it (apt-get install redis-server) for the Celery sweep test" >&2
  fi
fi
