#!/usr/bin/env sh
# Install the Debian chromium package used by the end-to-end browser test
# (tests/adapters/test_demo_browser.py drives it through Playwright with
# executable_path=/usr/bin/chromium). Idempotent: does nothing when
# /usr/bin/chromium is already there. Never runs `playwright install`.
set -eu

if [ -x /usr/bin/chromium ]; then
    echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium fonts-dejavu-core

if [ ! -x /usr/bin/chromium ]; then
    echo "install-browser.sh: apt-get finished but /usr/bin/chromium is missing" >&2
    exit 1
fi
echo "chromium installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
