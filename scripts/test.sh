#!/usr/bin/env bash
# Every test: set up, lint and type-check, then the whole pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check addon tests benchmarks demo
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
