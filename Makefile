# The two commands of the README: `make demo` (the main job on the embedded default)
# and `make test` (the whole suite). Both install what they need first.
.PHONY: bootstrap demo test test-fast lint ui stop screenshots bench

PY := .venv/bin/python

bootstrap:
	@scripts/bootstrap.sh

# The demo needs no browser: only the browser tests do (`make test` installs Chromium).
demo:
	@RUN_PROOF_SKIP_BROWSER_INSTALL=1 scripts/bootstrap.sh
	@.venv/bin/run-proof plan

test: bootstrap
	@scripts/test.sh

test-fast: bootstrap
	@scripts/test.sh -m "not slow and not browser"

lint: bootstrap
	@.venv/bin/ruff check . && .venv/bin/ruff format --check .

ui: bootstrap
	@.venv/bin/run-proof ui

stop:
	@.venv/bin/run-proof db stop

screenshots: bootstrap
	@scripts/screenshots.sh
