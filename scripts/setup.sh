#!/usr/bin/env bash
# Set up a fresh machine: Debian packages (ffmpeg, mosquitto), then a Python 3.13 venv with the
# engine and its dev tools in .venv. Idempotent; re-running is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
ldconfig -p 2>/dev/null | grep -q 'libGL.so.1' || need_apt+=(libgl1)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# The web page's browser tests drive Debian's Chromium (Playwright never downloads a browser here).
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
[ -d /usr/share/fonts/truetype/liberation ] || need_apt+=(fonts-liberation)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${need_apt[*]} from Debian" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

source "$(dirname "$0")/lib.sh"
PY=$(find_python)

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.facetrack-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # The degirum extra too: CI runs the identification and tracking tests on both backends.
  .venv/bin/python -m pip install -q -e ".[dev,degirum]"
  touch "$stamp"
fi
# DeGirum's ONNX/CPU runtime must be listed (the engine preloads onnxruntime's library for it).
.venv/bin/python -c 'from facetrack.inference.degirum import preload_onnxruntime; import degirum; assert preload_onnxruntime() and "ONNX/CPU" in degirum.get_supported_devices("@local"), "DeGirum ONNX/CPU runtime missing"' \
  || { echo "setup: DeGirum ONNX/CPU runtime is not available (onnxruntime==1.20.1?)" >&2; exit 1; }
echo "setup: engine ready in .venv ($(.venv/bin/python -V))" >&2
