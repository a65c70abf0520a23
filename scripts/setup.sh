#!/usr/bin/env bash
# Set up a fresh machine: Debian packages (ffmpeg, mosquitto), then a Python 3.13 venv with the
# engine and its dev tools in .venv. Idempotent; re-running is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
ldconfig -p 2>/dev/null | grep -q 'libGL.so.1' || need_apt+=(libgl1)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${need_apt[*]} from Debian" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Python 3.13: $PYTHON, else python3.13 on PATH, else pyenv's 3.13.
find_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  if python3.13 -c 'import sys' >/dev/null 2>&1; then command -v python3.13; return; fi
  if command -v pyenv >/dev/null 2>&1; then
    local p; p="$(pyenv root)/versions/3.13.0/bin/python3.13"
    if [ -x "$p" ]; then echo "$p"; return; fi
    p=$(ls -d "$(pyenv root)"/versions/3.13*/bin/python3.13 2>/dev/null | tail -n 1)
    if [ -n "$p" ]; then echo "$p"; return; fi
  fi
  echo "setup: Python 3.13 not found (set PYTHON=/path/to/python3.13)" >&2; exit 1
}
PY=$(find_python)

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.facetrack-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev]"
  touch "$stamp"
fi
echo "setup: engine ready in .venv ($(.venv/bin/python -V))" >&2
