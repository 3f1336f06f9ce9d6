#!/usr/bin/env bash
# `dagster definitions validate` on the project's workspace.yaml with its own dagster.yaml.
# Dagster's storage is PostgreSQL only, so this runs against a throwaway server that
# scripts/ci_postgres.py starts and always stops. Exits non-zero when the definitions do not load.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/ci_postgres.py -- .venv/bin/dagster definitions validate -w workspace.yaml
