#!/usr/bin/env bash
# Tests of the Home Assistant integration (custom_components/facetrack) in their own venv, .venv-ha
# (Home Assistant 2025.4.4 + pytest-homeassistant-custom-component). Idempotent: the venv is
# (re)installed only when tests_ha/requirements.txt is newer than its stamp.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  if python3.13 -c 'import sys' >/dev/null 2>&1; then command -v python3.13; return; fi
  if command -v pyenv >/dev/null 2>&1; then
    local p; p="$(pyenv root)/versions/3.13.0/bin/python3.13"
    if [ -x "$p" ]; then echo "$p"; return; fi
    p=$(ls -d "$(pyenv root)"/versions/3.13*/bin/python3.13 2>/dev/null | tail -n 1)
    if [ -n "$p" ]; then echo "$p"; return; fi
  fi
  echo "test_ha: Python 3.13 not found (set PYTHON=/path/to/python3.13)" >&2; exit 1
}

if [ ! -x .venv-ha/bin/python ]; then
  "$(find_python)" -m venv .venv-ha
fi
stamp=.venv-ha/.facetrack-ha-installed
if [ ! -f "$stamp" ] || [ tests_ha/requirements.txt -nt "$stamp" ]; then
  .venv-ha/bin/python -m pip install -q --upgrade pip
  .venv-ha/bin/python -m pip install -q -r tests_ha/requirements.txt
  touch "$stamp"
fi
echo "test_ha: Home Assistant $(.venv-ha/bin/python -c 'from homeassistant.const import __version__; print(__version__)') in .venv-ha" >&2

# tests_ha/pytest.ini is the configuration (rootdir tests_ha, asyncio auto mode).
.venv-ha/bin/python -m pytest -c tests_ha/pytest.ini tests_ha \
  --cov=custom_components.facetrack --cov-report=term-missing --cov-fail-under=95 "$@"
