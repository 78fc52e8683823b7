#!/usr/bin/env bash
# Installs what is missing (Python packages and Debian's Chromium), then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
export RESIDUAL_LAB_REQUIRE_BROWSER=1  # installed above: a missing browser is a failure, not a skip
exec .venv/bin/python -m pytest "$@"
