"""Fault tests with real worker processes on Redis (killed with SIGKILL mid-stream)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from events_support import RedisServer, ctx
from events_worker import SECRET

from userscope.events import RUN_LOST, RUN_STARTED, Delivery, RedisBroker

WORKER = Path(__file__).with_name("events_worker.py")
GUARD = 10.0


@contextmanager
def worker(*args: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


async def read_line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    async with asyncio.timeout(GUARD):
        line = await asyncio.to_thread(proc.stdout.readline)
    assert line, "worker exited early"
    result: dict[str, Any] = json.loads(line)
    return result


@asynccontextmanager
async def shared_broker(url: str) -> AsyncIterator[RedisBroker]:
    broker = RedisBroker(
        url, secret=SECRET, key_prefix="proc:events", block_timeout=0.5, socket_timeout=2.0
    )
    try:
        yield broker
    finally:
        await broker.aclose()


async def test_killed_socket_worker_resumes_elsewhere_without_loss_or_duplicates(
    redis_server: RedisServer,
) -> None:
    alice, bob = ctx("alice-p"), ctx("bob-p")
    async with shared_broker(redis_server.url) as broker:
        with worker("consumer", redis_server.url, alice.user_id) as socket_worker:
            assert await read_line(socket_worker) == {"ready": True}
            published = [await broker.publish(alice, {"n": n}) for n in range(30)]
            await broker.publish(bob, {"for": "bob"})
            received = [(await read_line(socket_worker))["id"] for _ in range(10)]
            socket_worker.kill()  # the socket's worker dies mid-stream
        published += [await broker.publish(alice, {"n": n}) for n in range(30, 40)]
        # the client reconnects to another worker with the last id it received
        async with broker.subscribe(alice, after=received[-1]) as sub:
            async with asyncio.timeout(GUARD):
                while len(received) < len(published):
                    item = await anext(sub)
                    assert isinstance(item, Delivery)
                    received.append(item.id)
    assert received == published  # contiguous, in order, nothing twice


async def test_killed_producer_worker_is_reported_as_run_lost(
    redis_server: RedisServer,
) -> None:
    alice = ctx("carol-p")
    async with (
        shared_broker(redis_server.url) as broker,
        broker.subscribe(alice) as sub,
    ):
        with worker("producer", redis_server.url, alice.user_id, "run-k") as producer:
            assert await read_line(producer) == {"started": True}
            for _ in range(5):
                await read_line(producer)
            producer.kill()  # no run_finished, no more heartbeats
        kinds: list[str | None] = []
        async with asyncio.timeout(GUARD):
            async for item in sub:
                assert isinstance(item, Delivery)
                kinds.append(item.type)
                if item.type == RUN_LOST:
                    assert item.synthetic
                    assert item.payload["run_id"] == "run-k"
                    break
    assert kinds[0] == RUN_STARTED
    assert kinds.count("token") >= 5
    assert "run_finished" not in kinds
