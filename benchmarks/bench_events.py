"""Event delivery benchmark: events/s and publish-to-delivery latency, 100 users.

Measures, for ``--users`` users with one subscriber (through an ``EventBridge``
whose ``send`` records the arrival time) per user:

* ``memory``: InMemoryBroker, publisher and subscribers in one process;
* ``redis``: RedisBroker, subscribers in a second process (multiprocessing,
  spawn), one multiplexed reader there; publisher in this process.

A throwaway ``redis-server`` is started on a free loopback port (persistence
off) unless ``--redis-url`` is given. Latencies use ``time.monotonic_ns`` (one
system-wide clock for both processes on Linux). Not a test: it prints results
for benchmarks/RESULTS.md.

Usage:
    .venv/bin/python benchmarks/bench_events.py            # full run (100 users)
    .venv/bin/python benchmarks/bench_events.py --smoke    # tiny CI run
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import userscope as us
from userscope.events import Broker, EventBridge, InMemoryBroker, RedisBroker

SECRET = "bench-secret-0123456789abcdef0123456789abcdef"


@dataclass
class Result:
    name: str
    events: int
    seconds: float
    latencies_ms: list[float]

    def line(self) -> str:
        lat = sorted(self.latencies_ms)
        p50 = statistics.median(lat) if lat else float("nan")
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan")
        rate = self.events / self.seconds if self.seconds else float("nan")
        return (
            f"{self.name:<28} events={self.events:>6}  {rate:>8.0f} events/s  "
            f"p50={p50:6.2f} ms  p99={p99:6.2f} ms  max={max(lat, default=float('nan')):6.2f} ms"
        )


def contexts(users: int) -> list[us.UserExecutionContext]:
    return [us.UserExecutionContext(user_id=f"bench-user-{n}", thread_id="t") for n in range(users)]


RATE: float | None = None  # total events/s when paced (--rate); None: as fast as possible


async def publish_all(
    broker: Broker, users: list[us.UserExecutionContext], per_user: int, concurrency: int
) -> None:
    gate = asyncio.Semaphore(concurrency)
    interval = len(users) / RATE if RATE else 0.0

    async def one_user(index: int, ctx: us.UserExecutionContext) -> None:
        if interval:
            await asyncio.sleep(interval * index / len(users))  # spread the users out
        for n in range(per_user):
            async with gate:
                await broker.publish(ctx, {"type": "token", "n": n, "t": time.monotonic_ns()})
            # an agent yields between tokens (matters in memory, where publish never waits)
            await asyncio.sleep(interval)

    await asyncio.gather(*(one_user(i, ctx) for i, ctx in enumerate(users)))


class Collector:
    """One fake socket per user: records latency, signals when everything arrived."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.latencies_ms: list[float] = []
        self.last_ns = 0
        self.done = asyncio.Event()

    def sender(self) -> Any:
        async def send(message: dict[str, Any]) -> None:
            now = time.monotonic_ns()
            if message["kind"] == "event":
                self.latencies_ms.append((now - message["event"]["t"]) / 1e6)
                self.last_ns = now
                if len(self.latencies_ms) >= self.expected:
                    self.done.set()

        return send


async def bench_memory(users: int, per_user: int, concurrency: int) -> Result:
    broker = InMemoryBroker(maxlen=max(1000, per_user))
    ctxs = contexts(users)
    collector = Collector(users * per_user)
    bridges = [EventBridge(broker, c, collector.sender(), max_queue=per_user + 10) for c in ctxs]
    for bridge in bridges:
        await bridge.start()
    start = time.monotonic_ns()
    await publish_all(broker, ctxs, per_user, concurrency)
    async with asyncio.timeout(60):
        await collector.done.wait()
    for bridge in bridges:
        await bridge.aclose()
    await broker.aclose()
    return Result(
        "memory (1 process, bridge)",
        len(collector.latencies_ms),
        (collector.last_ns - start) / 1e9,
        collector.latencies_ms,
    )


def _subscriber_process(url: str, users: int, per_user: int, conn: Connection) -> None:
    async def main() -> None:
        broker = RedisBroker(url, secret=SECRET, key_prefix="bench", maxlen=max(1000, per_user))
        collector = Collector(users * per_user)
        bridges = [
            EventBridge(broker, c, collector.sender(), max_queue=per_user + 10)
            for c in contexts(users)
        ]
        for bridge in bridges:
            await bridge.start()
        conn.send("ready")
        try:
            async with asyncio.timeout(120):
                await collector.done.wait()
        finally:
            for bridge in bridges:
                await bridge.aclose()
            await broker.aclose()
        conn.send((collector.latencies_ms, collector.last_ns))

    asyncio.run(main())


async def bench_redis(url: str, users: int, per_user: int, concurrency: int) -> Result:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_subscriber_process, args=(url, users, per_user, child))
    proc.start()
    try:
        loop = asyncio.get_running_loop()
        ready = await loop.run_in_executor(None, parent.recv)
        assert ready == "ready"
        broker = RedisBroker(url, secret=SECRET, key_prefix="bench", maxlen=max(1000, per_user))
        start = time.monotonic_ns()
        await publish_all(broker, contexts(users), per_user, concurrency)
        latencies, last_ns = await loop.run_in_executor(None, parent.recv)
        await broker.aclose()
    finally:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
    return Result("redis (2 processes, bridge)", len(latencies), (last_ns - start) / 1e9, latencies)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(workdir: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server not found: apt-get install -y redis-server (or pass --redis-url)")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("redis-server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--per-user", type=int, default=100, help="events per user")
    parser.add_argument("--concurrency", type=int, default=8, help="publishes in flight")
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    parser.add_argument("--only", choices=["memory", "redis"])
    parser.add_argument(
        "--rate",
        type=float,
        help="pace publishing at this many events/s in total (latency "
        "at a given load); default: as fast as possible (throughput, saturated latency)",
    )
    args = parser.parse_args()
    global RATE
    RATE = args.rate
    if args.smoke:
        args.users, args.per_user = 10, 5
    print(
        f"users={args.users} events/user={args.per_user} concurrency={args.concurrency} "
        f"rate={args.rate or 'max'} "
        f"python={sys.version.split()[0]}"
    )
    results = []
    if args.only in (None, "memory"):
        results.append(asyncio.run(bench_memory(args.users, args.per_user, args.concurrency)))
        print(results[-1].line(), flush=True)
    if args.only in (None, "redis"):
        with tempfile.TemporaryDirectory() as workdir:
            server = None
            url = args.redis_url
            if url is None:
                server, url = start_redis(workdir)
            try:
                results.append(
                    asyncio.run(bench_redis(url, args.users, args.per_user, args.concurrency))
                )
                print(results[-1].line(), flush=True)
            finally:
                if server is not None:
                    server.terminate()
                    server.wait(timeout=10)
    expected = args.users * args.per_user
    if any(r.events != expected for r in results):
        sys.exit(f"wrong event count: expected exactly {expected} per run")


if __name__ == "__main__":
    main()
