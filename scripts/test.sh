#!/usr/bin/env bash
# The test command: set up if needed, lint, then the whole suite (unit + integration),
# then the unit tests again on the oldest supported libraries (scripts/test_oldest.sh).
# Arguments go to the first pytest run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
bash scripts/test_oldest.sh -q
