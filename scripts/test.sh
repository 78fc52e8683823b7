#!/usr/bin/env bash
# Installs what is missing (Python packages, Debian's Chromium and haproxy), lints, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
export RESIDUAL_LAB_REQUIRE_BROWSER=1  # installed above: a missing browser is a failure, not a skip
.venv/bin/ruff check --quiet .  # the lint rules in pyproject.toml: a finding fails the run as a test would
exec .venv/bin/python -m pytest "$@"
