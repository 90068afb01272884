"""End-to-end event benchmark: agent ``run.publish`` to a real WebSocket client, 100 users.

Unlike ``bench_events.py`` (broker + ``EventBridge`` with an in-process ``send``),
this goes through the whole agent-chat demo app: uvicorn worker processes, the
userscope middleware, the connection-scoped bridge, the JSON socket protocol and
a real ``websockets`` client per user:

* ``redis``: a throwaway ``redis-server``; worker 1 holds the users' sockets,
  worker 2 runs the agents (``run.publish`` inside ``broker.run(ctx, run_id)``);
  events cross processes through Redis Streams.
* ``memory``: one worker with the in-memory broker; sockets and agents in the
  same process, through the same FastAPI app.

The clients run in this process, one ``websockets`` connection per user. Each
user's agent is started with ``POST /bench/publish`` (authenticated with the
user's token, like ``POST /api/runs``; the route exists only in this script's app
factory) and publishes ``--per-user`` events ``{"type": "token", "n", "t"}``
where ``t = time.monotonic_ns()`` just before ``run.publish``; latency is the
client's ``time.monotonic_ns()`` at receipt minus ``t`` (one system-wide clock on
Linux). Scenarios: ``max`` (every agent publishes as fast as it can: throughput)
and ``paced`` (``--rate`` events/s in total: latency at a given load). Each
scenario runs ``--reps`` times; the table gives medians over the repetitions.
Every client must receive exactly its own user's events, in order, or the script
fails. Not a test; ``--smoke`` is a tiny run for CI.

Usage:
    .venv/bin/python benchmarks/bench_events_e2e.py             # 100 users, 5 reps
    .venv/bin/python benchmarks/bench_events_e2e.py --smoke
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `examples` importable
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from bench_events import free_port, start_redis  # noqa: E402
from examples.agent_chat import Container, create_app, mint_token  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from pydantic import BaseModel, Field  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

import userscope as us  # noqa: E402
from userscope.adapters.fastapi import Inject  # noqa: E402

TOKEN_SECRET = "bench-e2e-token-secret-bench-e2e-token-secret"
EVENTS_SECRET = "bench-e2e-events-secret-0123456789abcdef012345"
GUARD = 120.0
DEFLATE = False  # --deflate: let the clients offer permessage-deflate (browsers always do)


# -- the worker side: the demo app plus one publishing route -----------------------------


class PublishRequest(BaseModel):
    """Body of ``POST /bench/publish``: how many events, how far apart."""

    events: int = Field(ge=1, le=100_000)
    interval: float = Field(ge=0, le=10)


def bench_app() -> FastAPI:
    """Uvicorn factory: the agent-chat demo app (settings and broker from the
    environment) with ``POST /bench/publish``, an agent that publishes timestamped
    events for the token's user through ``broker.run(ctx, run_id)``."""
    app = create_app()
    broker = app.state.broker
    runs = app.state.runs

    @app.post("/bench/publish", status_code=202)
    async def publish(
        body: PublishRequest,
        ctx: Annotated[us.UserExecutionContext, Inject(Container.context)],
    ) -> dict[str, str]:
        run_ctx = ctx.for_request()

        async def agent() -> None:
            loop = asyncio.get_running_loop()
            async with broker.run(run_ctx, run_ctx.request_id) as run:
                start = loop.time()
                for n in range(body.events):
                    await run.publish({"type": "token", "n": n, "t": time.monotonic_ns()})
                    # an agent yields between tokens; paced runs keep a fixed schedule
                    await asyncio.sleep(max(0.0, start + (n + 1) * body.interval - loop.time()))

        runs.spawn(agent(), name=f"bench-{run_ctx.request_id}")
        return {"run_id": run_ctx.request_id}

    return app


# -- the driver side -------------------------------------------------------------------------


@dataclass
class Worker:
    """A uvicorn process running :func:`bench_app`."""

    port: int
    proc: subprocess.Popen[bytes]

    @property
    def http(self) -> str:
        """Base HTTP URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        """Base WebSocket URL."""
        return f"ws://127.0.0.1:{self.port}"


@contextmanager
def workers(count: int, env: dict[str, str], logdir: str) -> Iterator[list[Worker]]:
    """Start ``count`` workers, wait until they answer, kill them at exit."""
    started: list[Worker] = []
    try:
        for index in range(count):
            port = free_port()
            log = open(Path(logdir) / f"worker{index}.log", "wb")  # noqa: SIM115
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "bench_events_e2e:bench_app",
                    "--factory",
                    "--app-dir",
                    str(ROOT / "benchmarks"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                    "--ws",
                    "websockets-sansio",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
            started.append(Worker(port, proc))
        for index, worker in enumerate(started):
            deadline = time.monotonic() + 30
            while True:
                if worker.proc.poll() is not None or time.monotonic() > deadline:
                    text = (Path(logdir) / f"worker{index}.log").read_text(errors="replace")
                    sys.exit(f"worker on port {worker.port} did not start:\n{text[-3000:]}")
                try:
                    if httpx.get(f"{worker.http}/health", timeout=0.5).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.05)
        yield started
    finally:
        for worker in started:
            worker.proc.kill()
            worker.proc.wait(timeout=10)


def worker_env(redis_url: str | None) -> dict[str, str]:
    """Environment of a worker: shared token secret; Redis settings when ``redis_url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("USERSCOPE_", "AGENT_"))}
    env.update({"PYTHONPATH": str(ROOT), "AGENT_CHAT_SECRET": TOKEN_SECRET})
    if redis_url is not None:
        env.update(
            {
                "USERSCOPE_REDIS_URL": redis_url,
                "USERSCOPE_EVENTS_SECRET": EVENTS_SECRET,
                "USERSCOPE_EVENTS_PREFIX": f"bench:e2e:{os.getpid()}",
            }
        )
    return env


@dataclass
class Round:
    """What the clients received in one repetition."""

    expected: int
    latencies_ms: list[float] = field(default_factory=list)
    first_t: int | None = None
    last_ns: int = 0
    errors: list[str] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, t: int, now: int) -> None:
        """One event published at ``t`` arrived at ``now`` (monotonic ns)."""
        self.latencies_ms.append((now - t) / 1e6)
        self.first_t = t if self.first_t is None else min(self.first_t, t)
        self.last_ns = max(self.last_ns, now)
        if len(self.latencies_ms) >= self.expected:
            self.done.set()


class Client:
    """One user's WebSocket: checks that every event is the user's own and in order."""

    def __init__(self, user: str, conn: ClientConnection) -> None:
        self.user = user
        self.conn = conn
        self.round: Round | None = None
        self.next_n: dict[str, int] = {}

    async def listen(self) -> None:
        """Receive until the connection closes, recording the current round's events."""
        async for raw in self.conn:
            now = time.monotonic_ns()
            message = json.loads(raw)
            current = self.round
            if current is None or message.get("type") != "token":
                continue
            if message.get("user_id") != self.user:
                current.errors.append(f"{self.user} got an event of {message.get('user_id')}")
            run_id = message["run_id"]
            if message["n"] != self.next_n.get(run_id, 0):
                current.errors.append(f"{self.user}: run {run_id} out of order at {message['n']}")
            self.next_n[run_id] = message["n"] + 1
            current.record(message["t"], now)


async def one_round(
    clients: list[Client], http: httpx.AsyncClient, publisher: Worker, per_user: int, rate: float
) -> Round:
    """Start every user's agent on ``publisher`` and wait until every event arrived."""
    current = Round(expected=len(clients) * per_user)
    for client in clients:
        client.round = current
    interval = len(clients) / rate if rate else 0.0

    async def start(client: Client) -> None:
        token = mint_token(TOKEN_SECRET, client.user)
        reply = await http.post(
            f"{publisher.http}/bench/publish",
            json={"events": per_user, "interval": interval},
            headers={"Authorization": f"Bearer {token}"},
        )
        reply.raise_for_status()

    await asyncio.gather(*(start(c) for c in clients))
    async with asyncio.timeout(GUARD):
        await current.done.wait()
    await asyncio.sleep(0.05)  # anything extra (a duplicate) would show up now
    for client in clients:
        client.round = None
    if len(current.latencies_ms) != current.expected:
        current.errors.append(f"received {len(current.latencies_ms)} of {current.expected}")
    return current


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process (Linux ``/proc``; this process when ``None``)."""
    if pid is None:
        return time.process_time()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Processes:
    """Whose CPU time is reported: name -> pid (``None``: the clients, this process)."""

    pids: dict[str, int | None]

    def snapshot(self) -> dict[str, float]:
        """CPU seconds used so far by each process."""
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}


@dataclass
class Summary:
    """One broker x scenario: per-repetition numbers, printed as medians."""

    broker: str
    scenario: str
    rates: list[float] = field(default_factory=list)
    p50s: list[float] = field(default_factory=list)
    p99s: list[float] = field(default_factory=list)
    cpu: dict[str, list[float]] = field(default_factory=dict)

    def add(self, result: Round, cpu: dict[str, float]) -> str:
        """Record one repetition; returns its printable line."""
        lat = sorted(result.latencies_ms)
        assert result.first_t is not None
        seconds = (result.last_ns - result.first_t) / 1e9
        rate = len(lat) / seconds if seconds > 0 else float("nan")
        p50 = statistics.median(lat)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        self.rates.append(rate)
        self.p50s.append(p50)
        self.p99s.append(p99)
        per_k = {name: used * 1000 / len(lat) * 1000 for name, used in cpu.items()}
        for name, value in per_k.items():
            self.cpu.setdefault(name, []).append(value)
        spent = " ".join(f"{name}={value:.0f}" for name, value in per_k.items())
        return (
            f"  {self.broker:<6} {self.scenario:<13} rep {len(self.rates)}: events={len(lat):>6} "
            f"{rate:>8.0f} events/s  p50={p50:6.2f} ms  p99={p99:6.2f} ms  "
            f"cpu ms/1k events: {spent}"
        )

    def row(self) -> str:
        """The markdown table row (medians over the repetitions)."""
        spent = ", ".join(
            f"{name} {statistics.median(values):.0f}" for name, values in self.cpu.items()
        )
        return (
            f"| {self.broker} | {self.scenario} | {statistics.median(self.rates):.0f} | "
            f"{statistics.median(self.p50s):.2f} | {statistics.median(self.p99s):.2f} | "
            f"{spent} | {len(self.rates)} |"
        )


async def bench(
    name: str,
    socket_worker: Worker,
    publisher: Worker,
    redis_pid: int | None,
    users: int,
    per_user: int,
    reps: int,
    rate: float,
) -> list[Summary]:
    """Connect one client per user to ``socket_worker``, run every scenario ``reps`` times."""
    clients: list[Client] = []
    listeners: list[asyncio.Task[None]] = []
    try:
        for n in range(users):
            user = f"bench-user-{n}"
            headers = {"Authorization": f"Bearer {mint_token(TOKEN_SECRET, user)}"}
            conn = await connect(
                f"{socket_worker.ws}/ws",
                additional_headers=headers,
                compression="deflate" if DEFLATE else None,
            )
            hello = json.loads(await conn.recv())
            if hello.get("type") != "hello" or hello.get("user_id") != user:
                sys.exit(f"unexpected first message for {user}: {hello}")
            clients.append(Client(user, conn))
        listeners = [asyncio.create_task(c.listen()) for c in clients]
        pids: dict[str, int | None] = {"sockets": socket_worker.proc.pid}
        if publisher is not socket_worker:
            pids["agents"] = publisher.proc.pid
        if redis_pid is not None:
            pids["redis"] = redis_pid
        pids["clients"] = None
        processes = Processes(pids)
        scenarios = [("max", 0.0), (f"paced {rate:.0f}/s", rate)]
        summaries = [Summary(name, label) for label, _ in scenarios]
        async with httpx.AsyncClient(timeout=30) as http:
            # warm-up round (connections, code paths), not counted
            await one_round(clients, http, publisher, min(per_user, 5), 0.0)
            for _ in range(reps):
                for summary, (_, pace) in zip(summaries, scenarios, strict=True):
                    before = processes.snapshot()
                    result = await one_round(clients, http, publisher, per_user, pace)
                    after = processes.snapshot()
                    if result.errors:
                        sys.exit(f"{name} {summary.scenario}: {result.errors[:5]}")
                    used = {key: after[key] - before[key] for key in before}
                    print(summary.add(result, used), flush=True)
        return summaries
    finally:
        for task in listeners:
            task.cancel()
        for client in clients:
            await client.conn.close()


def main() -> None:
    """Parse the arguments, start Redis and the workers, print the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--per-user", type=int, default=100, help="events per user per round")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--rate", type=float, default=2000.0, help="total events/s when paced")
    parser.add_argument("--only", choices=["memory", "redis"])
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    parser.add_argument(
        "--deflate",
        action="store_true",
        help="clients offer permessage-deflate (uvicorn accepts it by default); off by default: "
        "small JSON events gain nothing from it and both ends pay zlib per message",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    args = parser.parse_args()
    global DEFLATE
    DEFLATE = args.deflate
    if args.smoke:
        args.users, args.per_user, args.reps, args.rate = 5, 10, 1, 500.0
    print(
        f"users={args.users} events/user/round={args.per_user} reps={args.reps} "
        f"paced rate={args.rate:.0f}/s deflate={'on' if args.deflate else 'off'} "
        f"python={sys.version.split()[0]} cpus={os.cpu_count()}",
        flush=True,
    )
    summaries: list[Summary] = []
    with tempfile.TemporaryDirectory() as workdir:
        if args.only in (None, "memory"):
            with workers(1, worker_env(None), workdir) as (single,):
                summaries += asyncio.run(
                    bench(
                        "memory",
                        single,
                        single,
                        None,
                        args.users,
                        args.per_user,
                        args.reps,
                        args.rate,
                    )
                )
        if args.only in (None, "redis"):
            server = None
            url = args.redis_url
            if url is None:
                server, url = start_redis(workdir)
            try:
                with workers(2, worker_env(url), workdir) as (sockets, agents):
                    summaries += asyncio.run(
                        bench(
                            "redis",
                            sockets,
                            agents,
                            None if server is None else server.pid,
                            args.users,
                            args.per_user,
                            args.reps,
                            args.rate,
                        )
                    )
            finally:
                if server is not None:
                    server.terminate()
                    server.wait(timeout=10)
    print()
    print("| broker | scenario | events/s | p50 ms | p99 ms | CPU ms per 1000 events | reps |")
    print("|---|---|---|---|---|---|---|")
    for summary in summaries:
        print(summary.row())


if __name__ == "__main__":
    main()
