#!/usr/bin/env bash
# Tests of the Home Assistant integration (custom_components/facetrack) in their own venv, .venv-ha
# (Home Assistant 2025.4.4 + pytest-homeassistant-custom-component). Idempotent: the venv is
# (re)installed only when tests_ha/requirements.txt is newer than its stamp.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

source "$(dirname "$0")/lib.sh"

if [ ! -x .venv-ha/bin/python ]; then
  "$(find_python)" -m venv .venv-ha
fi
stamp=.venv-ha/.facetrack-ha-installed
if [ ! -f "$stamp" ] || [ tests_ha/requirements.txt -nt "$stamp" ]; then
  # (grep drops pip's notes about unreachable local index mirrors; pip's status is kept)
  .venv-ha/bin/python -m pip install -q --upgrade pip 2> >(grep -v 'is ignored: it is neither' >&2)
  .venv-ha/bin/python -m pip install -q -r tests_ha/requirements.txt 2> >(grep -v 'is ignored: it is neither' >&2)
  touch "$stamp"
fi
echo "test_ha: Home Assistant $(.venv-ha/bin/python -c 'from homeassistant.const import __version__; print(__version__)') in .venv-ha" >&2

# tests_ha/pytest.ini is the configuration (rootdir tests_ha, asyncio auto mode); coverage data
# stays inside the venv.
COVERAGE_FILE=.venv-ha/.coverage .venv-ha/bin/python -m pytest -c tests_ha/pytest.ini tests_ha \
  --cov=custom_components.facetrack --cov-report=term-missing --cov-fail-under=95 "$@"
