#!/usr/bin/env bash
# Sourced by scripts/demo and scripts/check: make a fresh machine ready.
#   source scripts/bootstrap.sh            .venv with the dev dependencies (the whole toolchain)
#   source scripts/bootstrap.sh --system   the same, plus the Debian packages the suite drives
#                                          for real (Chromium for the browser test, redis-server
#                                          for the multi-worker event tests, valgrind for the
#                                          instruction-count benchmark's smoke run, graphviz to
#                                          render `userscope graph --format dot`)
#   source scripts/bootstrap.sh --demo     .venv with only what the demo needs (the `demo` extra)
# pip's output goes to .venv/pip-install.log; it is shown only when the install fails.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

extra="dev"
need_apt=()
case "${1:-}" in
  --system)
    [ -x /usr/bin/chromium ] || need_apt+=(chromium fonts-dejavu-core)
    command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
    command -v valgrind >/dev/null 2>&1 || need_apt+=(valgrind)
    command -v dot >/dev/null 2>&1 || need_apt+=(graphviz)
    ;;
  --demo) extra="demo" ;;
  "") ;;
  *) echo "bootstrap.sh: unknown option $1 (use --system or --demo)" >&2; exit 2 ;;
esac
if [ "${#need_apt[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "==> installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${need_apt[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "userscope needs Python 3.11 or newer; $PY is $("$PY" --version 2>&1)." >&2
  echo "Install one (e.g. apt-get install python3.11-venv) or run with PYTHON=/path/to/python3.11." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi

# One stamp per extra; the dev install includes the demo extra, so it satisfies --demo too.
dev_stamp=".venv/.userscope-installed"
stamp="$dev_stamp"
[ "$extra" = "demo" ] && stamp=".venv/.userscope-installed-demo"
fresh() { [ -f "$1" ] && [ ! pyproject.toml -nt "$1" ] && [ ! setup.py -nt "$1" ]; }
if ! fresh "$stamp" && ! { [ "$extra" = "demo" ] && fresh "$dev_stamp"; }; then
  log=".venv/pip-install.log"
  echo "==> installing userscope[$extra] into .venv (pip log: $log)"
  upgrade_pip=true  # the demo makes do with the venv's own pip (one download less)
  [ "$extra" = "demo" ] && upgrade_pip=false
  if ! { { ! $upgrade_pip || .venv/bin/python -m pip install --disable-pip-version-check -q \
             --upgrade pip; } \
         && .venv/bin/python -m pip install --disable-pip-version-check -e ".[$extra]"; } \
       >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "pip install failed (full log: $log)" >&2
    exit 1
  fi
  if [ "$extra" = "demo" ]; then
    .venv/bin/python -c "import userscope, fastapi, uvicorn, websockets"
  else
    .venv/bin/python -c "import userscope, fastapi, redis, playwright"
  fi
  touch "$stamp"
fi
