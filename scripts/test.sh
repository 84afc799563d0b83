#!/usr/bin/env bash
# Set up from scratch, lint, and run every test layer. Usage: bash scripts/test.sh [pytest args]
# The fast layer alone: bash scripts/test.sh -m "not slow and not browser" (docs/testing.md)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's chromium drives the real-browser test; without root or apt that test skips.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements-dev.txt
.venv/bin/python -m pip install -q --no-deps -e .

.venv/bin/ruff check .
.venv/bin/lint-imports --no-cache  # the import contracts in .importlinter

export LC25000_DIR="${LC25000_DIR:-$(cd .. && pwd)/shared/data/lc25000_lung}"
export TF_CPP_MIN_LOG_LEVEL=2
exec .venv/bin/python -m pytest -q -ra "$@"
