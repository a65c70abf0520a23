# Shared by the scripts: find Python 3.13 ($PYTHON, python3.13 on PATH, or pyenv's 3.13).
find_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  if python3.13 -c 'import sys' >/dev/null 2>&1; then command -v python3.13; return; fi
  if command -v pyenv >/dev/null 2>&1; then
    local p; p="$(pyenv root)/versions/3.13.0/bin/python3.13"
    if [ -x "$p" ]; then echo "$p"; return; fi
    p=$(ls -d "$(pyenv root)"/versions/3.13*/bin/python3.13 2>/dev/null | tail -n 1)
    if [ -n "$p" ]; then echo "$p"; return; fi
  fi
  echo "Python 3.13 not found (set PYTHON=/path/to/python3.13)" >&2; exit 1
}
