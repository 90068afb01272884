#!/usr/bin/env bash
# Run a throwaway redis-server on loopback for trying the Redis event broker by hand
# (demo, examples/events, benchmarks/bench_events.py --redis-url). Persistence is off;
# stop it with Ctrl-C. The test suite does not need this: it starts its own servers.
#
#   scripts/redis-test-server.sh [PORT]          (default port 6379)
#   USERSCOPE_REDIS_URL=redis://127.0.0.1:6379/0 \
#   USERSCOPE_EVENTS_SECRET=$(python -c 'import secrets; print(secrets.token_hex(32))') \
#       .venv/bin/python examples/events/agent_events.py
set -euo pipefail

port="${1:-6379}"
if ! command -v redis-server >/dev/null 2>&1; then
    echo "redis-server is not installed: apt-get update && apt-get install -y redis-server" >&2
    exit 1
fi
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
echo "redis://127.0.0.1:${port}/0  (persistence off, Ctrl-C to stop)"
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$workdir" --protected-mode yes
