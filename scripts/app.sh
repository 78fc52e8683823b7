#!/usr/bin/env bash
# Installs what is missing, then starts Residual Lab at http://localhost:8501
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# dashboard.serve is `streamlit run dashboard/app.py` with the first worker process started at once
exec .venv/bin/python -m dashboard.serve "$@"
