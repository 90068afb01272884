#!/usr/bin/env bash
# Sourced by scripts/demo and scripts/check: make a fresh machine ready.
# Installs the Debian packages the suite drives for real (Chromium for the browser test,
# redis-server for the multi-worker event tests, valgrind for the instruction-count
# benchmark's smoke run, graphviz to render `userscope graph --format dot` in its test),
# then a project virtualenv in .venv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

need_apt=()
if [ "${1:-}" = "--system" ]; then
  [ -x /usr/bin/chromium ] || need_apt+=(chromium fonts-dejavu-core)
  command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
  command -v valgrind >/dev/null 2>&1 || need_apt+=(valgrind)
  command -v dot >/dev/null 2>&1 || need_apt+=(graphviz)
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "==> installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${need_apt[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=".venv/.userscope-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "==> installing userscope and its dev dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import userscope, fastapi, redis, playwright" 
  touch "$stamp"
fi
