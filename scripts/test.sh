#!/usr/bin/env bash
# Installs what is missing (Python packages and Debian's Chromium), then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
exec .venv/bin/python -m pytest "$@"
