"""A worker process for the multi-process tests (run as a script, not collected).

    python events_worker.py producer URL USER RUN_ID   # a run that streams tokens forever
    python events_worker.py consumer URL USER          # a bridge printing what it "sends"

Both print one JSON line per step and flush, so the test can kill them mid-stream.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import userscope as us
from userscope.events import EventBridge, RedisBroker

SECRET = "process-test-secret-0123456789abcdef0123456789"


def broker(url: str) -> RedisBroker:
    return RedisBroker(
        url,
        secret=SECRET,
        key_prefix="proc:events",
        block_timeout=0.5,
        socket_timeout=2.0,
        heartbeat_interval=0.05,
        heartbeat_timeout=0.3,
    )


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def producer(url: str, user: str, run_id: str) -> None:
    b = broker(url)
    ctx = us.UserExecutionContext(user_id=user, thread_id="t")
    async with b.run(ctx, run_id) as run:
        emit({"started": True})
        for n in range(100_000):  # killed long before the end
            emit({"published": await run.publish({"type": "token", "n": n})})
            await asyncio.sleep(0.01)


async def consumer(url: str, user: str) -> None:
    b = broker(url)
    ctx = us.UserExecutionContext(user_id=user, thread_id="t")

    async def send(message: dict[str, Any]) -> None:
        emit(message)

    async with EventBridge(b, ctx, send):
        emit({"ready": True})
        await asyncio.sleep(3600)  # killed by the test


if __name__ == "__main__":
    mode, url, user, *rest = sys.argv[1:]
    if mode == "producer":
        asyncio.run(producer(url, user, rest[0]))
    else:
        asyncio.run(consumer(url, user))
