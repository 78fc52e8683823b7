#!/usr/bin/env bash
# Creates .venv and installs what the app (or, with --dev, the tests) need. Idempotent and quick
# when nothing changed: pip is only run when a requirements file is newer than the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
req=requirements.txt
[ "${1:-}" = "--dev" ] && req=requirements-dev.txt
[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=".venv/.installed-$(basename "$req" .txt)"
if [ ! -f "$stamp" ] || [ "$req" -nt "$stamp" ] || [ requirements.txt -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$req"
  # The two packages themselves, editable: `import resnet_core` and the worker processes' `python -m`
  # find them from any folder, with no path set by hand.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
  touch "$stamp"
fi
if [ ! -x /usr/bin/chromium ]; then
  # Debian's Chromium: the app draws figures and clips for slides with it (kaleido), and the browser
  # tests drive it (Playwright's own browser download is not used).
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
if [ "${1:-}" = "--dev" ] && [ ! -x /usr/sbin/haproxy ]; then
  # scripts/serve-class.sh (and its test) run Debian's haproxy as a plain child, not as its service.
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq haproxy >/dev/null
fi
if [ "${1:-}" = "--dev" ] && [ ! -f tests/a11y/node_modules/axe-core/axe.min.js ]; then
  # axe-core, which the accessibility tests inject into the page, pinned in tests/a11y/package-lock.json.
  if ! command -v npm >/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq npm >/dev/null
  fi
  (cd tests/a11y && npm ci --no-audit --no-fund --silent)
fi
