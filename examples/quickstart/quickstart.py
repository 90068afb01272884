"""Quickstart: per-user objects as scoped providers, isolated and cleaned up.

Run: python examples/quickstart/quickstart.py
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from dependency_injector import containers, providers

import userscope as us


class Settings:
    model = "fake-llm"


class AgentRegistry:
    """Each user's agents; one per user session."""

    def __init__(self, ctx: us.UserExecutionContext) -> None:
        self.user_id = ctx.user_id
        self.runs: list[str] = []


class WebSocketBridge:
    """Sends events to one connection only."""

    def __init__(self, ctx: us.UserExecutionContext) -> None:
        self.user_id = ctx.user_id
        self.sent: list[str] = []
        self.closed = False


def open_bridge(ctx: us.UserExecutionContext) -> Iterator[WebSocketBridge]:
    bridge = WebSocketBridge(ctx)
    yield bridge
    bridge.closed = True  # cleanup: runs when the connection scope exits
    print(f"  bridge of {ctx.user_id} closed after {len(bridge.sent)} event(s)")


class Agent:
    def __init__(
        self, registry: AgentRegistry, bridge: WebSocketBridge, settings: Settings
    ) -> None:
        self.registry = registry
        self.bridge = bridge
        self.settings = settings

    def run(self, message: str) -> str:
        reply = f"[{self.settings.model}] {self.registry.user_id}: {message}"
        self.registry.runs.append(message)
        self.bridge.sent.append(reply)
        return reply


class Container(containers.DeclarativeContainer):
    settings = providers.Singleton(Settings)
    context = us.CurrentContext()
    registry = us.UserScoped(AgentRegistry, context)
    bridge = us.ConnectionScoped(open_bridge, context)
    agent = us.RequestScoped(Agent, registry=registry, bridge=bridge, settings=settings)


def main() -> dict[str, list[str]]:
    """Run the quickstart; return each user's recorded runs."""
    container = Container()
    us.validate(container)  # no captive dependencies
    sessions = us.UserSessions()

    try:
        container.agent()
    except us.OutOfScopeError as err:
        print(f"outside a scope: {err.provider} needs {err.required_scope.name}")

    alice = us.UserExecutionContext(user_id="alice", thread_id="t-1")
    bob = us.UserExecutionContext(user_id="bob", thread_id="t-9")

    with sessions.request(alice):  # HTTP-like: connection + request together
        print(container.agent().run("hello"))

    async def websocket(ctx: us.UserExecutionContext, messages: list[str]) -> None:
        async with sessions.connection(ctx):  # one WebSocket connection
            for text in messages:
                async with sessions.request(ctx.for_request()):  # one message
                    agent = await container.agent.async_()
                    print(agent.run(text))
                    await asyncio.sleep(0)

    async def both() -> None:
        await asyncio.gather(websocket(alice, ["a1", "a2"]), websocket(bob, ["b1", "b2"]))

    asyncio.run(both())
    runs: dict[str, list[str]] = {}
    for ctx in (alice, bob):
        with sessions.user(ctx):
            runs[ctx.user_id] = list(container.registry().runs)
    print("runs per user:", runs)
    sessions.close()  # shutdown: every remaining cleanup runs
    print("stats:", sessions.stats().model_dump(include={"users", "cleanups_run"}))
    return runs


if __name__ == "__main__":
    main()
