"""A tiny agent backend to test: per-user memory, a per-connection bridge, per-run agents.

Run the tests in ``test_chat.py`` to see the userscope testing toolkit on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from dependency_injector import containers, providers

import userscope as us


class LLM:
    """The shared model client: one per application, holds nothing per user."""

    def complete(self, prompt: str) -> str:
        return f"echo: {prompt}"


@dataclass
class Memory:
    """What one user said so far (USER scope: kept across their connections)."""

    user_id: str
    lines: list[str] = field(default_factory=list)


@dataclass
class Bridge:
    """Delivers events to one WebSocket connection (CONNECTION scope)."""

    user_id: str
    sent: list[str] = field(default_factory=list)
    open: bool = True

    def send(self, event: str) -> None:
        if not self.open:
            raise RuntimeError("bridge closed")
        self.sent.append(event)


def open_bridge(ctx: us.UserExecutionContext) -> Iterator[Bridge]:
    bridge = Bridge(ctx.user_id)
    yield bridge
    bridge.open = False  # the cleanup: runs when the connection scope exits


class Agent:
    """One agent run (REQUEST scope)."""

    def __init__(self, memory: Memory, bridge: Bridge, llm: LLM) -> None:
        self.memory = memory
        self.bridge = bridge
        self.llm = llm

    def reply(self, text: str) -> str:
        self.memory.lines.append(text)
        answer = self.llm.complete(text)
        self.bridge.send(answer)
        return answer


class Container(containers.DeclarativeContainer):
    llm = providers.Singleton(LLM)
    context = us.CurrentContext()
    memory = us.UserScoped(lambda ctx: Memory(ctx.user_id), context)
    bridge = us.ConnectionScoped(open_bridge, context)
    agent = us.RequestScoped(Agent, memory=memory, bridge=bridge, llm=llm)


async def handle_message(
    container: Container, sessions: us.UserSessions, ctx: us.UserExecutionContext, text: str
) -> str:
    """What a WebSocket handler does for one message: one REQUEST scope, one agent run."""
    async with sessions.request(ctx):
        agent = await container.agent.async_()
        return agent.reply(text)
