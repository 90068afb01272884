"""Per-user agent events: a broker, one bridge per connection, runs with heartbeats.

Two users talk to an agent at the same time. Each connection gets a
connection-scoped ``EventBridge`` (an async generator provider: it is closed when
the connection scope ends); each message runs a request-scoped ``Agent`` that
streams tokens through ``broker.run(...)``. Every socket receives its own user's
events, in order, and nothing else.

Run it:
    python examples/events/agent_events.py
    USERSCOPE_REDIS_URL=redis://127.0.0.1:6379/0 USERSCOPE_EVENTS_SECRET=$(openssl rand -hex 32) \\
        python examples/events/agent_events.py
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from dependency_injector import containers, providers

import userscope as us
from userscope.events import RUN_FINISHED, Broker, EventBridge, broker_from_env


class FakeSocket:
    """Stands in for a WebSocket: records what the bridge sends."""

    def __init__(self, ctx: us.UserExecutionContext) -> None:
        self.user_id = ctx.user_id
        self.received: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self._finished_runs = 0
        self._changed = asyncio.Event()

    async def send_json(self, message: dict[str, Any]) -> None:
        self.received.append(message)
        if message["kind"] == "event" and message["event"].get("type") == RUN_FINISHED:
            self._finished_runs += 1
        self._changed.set()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    async def wait_for_runs(self, count: int) -> None:
        async with asyncio.timeout(10):
            while self._finished_runs < count:
                self._changed.clear()
                await self._changed.wait()


async def open_bridge(
    ctx: us.UserExecutionContext, broker: Broker, socket: FakeSocket
) -> AsyncIterator[EventBridge]:
    """Connection-scoped: subscribe for the verified user while the socket is open."""
    async with EventBridge(broker, ctx, socket.send_json, close=socket.close) as bridge:
        yield bridge


class Agent:
    """Request-scoped: answers one message, streaming tokens as events of one run."""

    def __init__(self, ctx: us.UserExecutionContext, broker: Broker) -> None:
        self.ctx = ctx
        self.broker = broker

    async def answer(self, text: str) -> None:
        async with self.broker.run(self.ctx, self.ctx.request_id) as run:
            for word in text.split():
                await run.publish({"type": "token", "text": word})
                await asyncio.sleep(0)


class Container(containers.DeclarativeContainer):
    broker = providers.Dependency(instance_of=object)
    context = us.CurrentContext()
    socket = us.ConnectionScoped(FakeSocket, context)
    bridge = us.ConnectionScoped(open_bridge, context, broker, socket)
    agent = us.RequestScoped(Agent, context, broker)


async def chat(
    sessions: us.UserSessions, container: Container, user_id: str, messages: list[str]
) -> FakeSocket:
    """One user's connection: open the bridge, send messages, wait for the answers."""
    ctx = us.UserExecutionContext(user_id=user_id, thread_id="t-1")
    async with sessions.connection(ctx):
        await container.bridge.async_()  # subscribe before the first run starts
        socket: FakeSocket = await container.socket.async_()
        for text in messages:
            async with sessions.request(ctx.for_request()):
                agent: Agent = await container.agent.async_()
                await agent.answer(text)
        await socket.wait_for_runs(len(messages))
    return socket


async def main() -> dict[str, FakeSocket]:
    broker = broker_from_env()
    container = Container(broker=broker)
    us.validate(container)
    sessions = us.UserSessions()
    try:
        alice, bob = await asyncio.gather(
            chat(sessions, container, "alice", ["hello there", "how are you"]),
            chat(sessions, container, "bob", ["secret plans for bob"]),
        )
    finally:
        await sessions.aclose()
        await broker.aclose()
    for socket in (alice, bob):
        tokens = [m["event"]["text"] for m in socket.received if m["event"].get("type") == "token"]
        print(f"{socket.user_id}: {len(socket.received)} events, tokens={tokens}")
    return {"alice": alice, "bob": bob}


if __name__ == "__main__":
    asyncio.run(main())
