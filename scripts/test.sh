#!/usr/bin/env bash
# Every test: set up, lint and type-check, then the whole pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check addon tests benchmarks demo custom_components tests_ha scripts
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
# The Home Assistant integration, in its own venv (HA pins numpy, paho-mqtt, ...).
bash scripts/test_ha.sh
