"""The agent-chat demo's objects: a fake LLM, a per-user registry, a per-connection bridge.

Nothing here is global: every object is created by a userscope provider for
one user, one connection or one message, and cleaned up when that scope ends.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import userscope as us


@dataclass(frozen=True)
class DemoSettings:
    """Settings of one demo app (no module-level state).

    Attributes:
        secret: HS256 secret the sign-in tokens are signed with.
        max_agents_per_user: how many named agents one user may create.
        token_delay: seconds between two streamed words of the fake LLM.
    """

    secret: str
    max_agents_per_user: int = 3
    token_delay: float = 0.03


class FakeLLM:
    """A deterministic stand-in for a language model: no network, no randomness.

    Example:
        >>> async def collect() -> list[str]:
        ...     return [w async for w in FakeLLM(delay=0).stream("assistant", "hi there")]
        >>> asyncio.run(collect())
        ['assistant', 'heard:', 'hi', 'there']
    """

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def stream(self, agent_name: str, prompt: str) -> AsyncIterator[str]:
        """Yield the reply word by word, with a small delay between words."""
        for word in [agent_name, "heard:", *prompt.split()]:
            await asyncio.sleep(self.delay)
            yield word


class Tracker:
    """App-wide counters the tests (and the page's footer) read: what is open right now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bridges_opened = 0
        self.bridges_closed = 0
        self.registries_opened = 0
        self.registries_closed = 0
        self.runs_finished = 0

    def count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    @property
    def bridges_open(self) -> int:
        return self.bridges_opened - self.bridges_closed

    @property
    def registries_open(self) -> int:
        return self.registries_opened - self.registries_closed


class AgentLimitError(RuntimeError):
    """The user already has ``maximum`` agents; ``name`` would be one too many."""

    def __init__(self, user_id: str, name: str, maximum: int) -> None:
        self.user_id = user_id
        self.name = name
        self.maximum = maximum
        super().__init__(
            f"user {user_id!r} already has {maximum} agents; reuse one of them instead of {name!r}"
        )


@dataclass
class AgentProfile:
    """One named agent of one user, with its own little memory."""

    name: str
    owner: str
    turns: int = 0


class AgentRegistry:
    """Each user's agents (UserScoped: shared by all of that user's connections).

    This replaces the legacy module-level ``AgentRegistry()`` singleton that let
    one user's agents be found by another user.
    """

    def __init__(self, context: us.UserExecutionContext, max_agents: int) -> None:
        self.user_id = context.user_id
        self.max_agents = max_agents
        self._agents: dict[str, AgentProfile] = {}
        self.closed = False

    def get_or_create(self, name: str) -> AgentProfile:
        """Return the user's agent called ``name``, creating it if the cap allows."""
        agent = self._agents.get(name)
        if agent is None:
            if len(self._agents) >= self.max_agents:
                raise AgentLimitError(self.user_id, name, self.max_agents)
            agent = self._agents[name] = AgentProfile(name=name, owner=self.user_id)
        return agent

    def names(self) -> list[str]:
        return sorted(self._agents)

    def close(self) -> None:
        self._agents.clear()
        self.closed = True


def open_registry(
    context: us.UserExecutionContext, settings: DemoSettings, tracker: Tracker
) -> Any:
    """Generator provider: one registry per user session, cleared when the session ends."""
    registry = AgentRegistry(context, settings.max_agents_per_user)
    tracker.count("registries_opened")
    try:
        yield registry
    finally:
        registry.close()
        tracker.count("registries_closed")


class EventSink(Protocol):
    """Where a bridge writes events (a Starlette WebSocket in the app)."""

    async def send_json(self, data: Any, mode: str = "text") -> None: ...


class BridgeClosedError(RuntimeError):
    """An event was emitted on a bridge whose connection has ended."""


@dataclass(eq=False)
class WebSocketBridge:
    """Events of one WebSocket connection (ConnectionScoped).

    A bridge writes only to the socket it was attached to and stamps every
    event with its own user id; it refuses events once closed. This replaces
    the legacy ``get_agent_websocket_bridge()`` accessor that handed every
    caller the same bridge.
    """

    context: us.UserExecutionContext
    sink: EventSink | None = None
    closed: bool = False
    sent: int = 0
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def attach(self, sink: EventSink) -> None:
        """Bind the bridge to its connection's socket (once)."""
        if self.sink is not None:
            raise RuntimeError("this bridge is already attached to its connection")
        self.sink = sink

    async def emit(self, event: dict[str, Any]) -> None:
        """Send one event to this connection only."""
        if self.closed:
            raise BridgeClosedError("the connection of this bridge has ended")
        if self.sink is None:
            raise RuntimeError("attach the bridge to its WebSocket before emitting")
        current = us.current_context()
        if current is not None and current.user_id != self.context.user_id:
            raise us.IsolationError(
                expected_user_id=self.context.user_id, actual_user_id=current.user_id
            )
        await self.sink.send_json(
            {**event, "user_id": self.context.user_id, "seq": next(self._seq)}
        )
        self.sent += 1

    async def aclose(self) -> None:
        self.closed = True
        self.sink = None


async def open_bridge(context: us.UserExecutionContext, tracker: Tracker) -> Any:
    """Async generator provider: one bridge per connection, closed at disconnect."""
    bridge = WebSocketBridge(context)
    tracker.count("bridges_opened")
    try:
        yield bridge
    finally:
        await bridge.aclose()
        tracker.count("bridges_closed")


class AgentRun:
    """One agent run for one message (RequestScoped): streams the reply as events."""

    def __init__(
        self,
        context: us.UserExecutionContext,
        registry: AgentRegistry,
        bridge: WebSocketBridge,
        llm: FakeLLM,
        tracker: Tracker,
    ) -> None:
        self.context = context
        self.registry = registry
        self.bridge = bridge
        self.llm = llm
        self.tracker = tracker

    async def run(self, agent_name: str, text: str) -> None:
        """Run ``agent_name`` on ``text``, streaming ``run_started``/``token``/``run_finished``."""
        base = {"request_id": self.context.request_id, "agent": agent_name}
        try:
            agent = self.registry.get_or_create(agent_name)
        except AgentLimitError as exc:
            await self.bridge.emit({**base, "type": "error", "text": str(exc)})
            return
        agent.turns += 1
        await self.bridge.emit({**base, "type": "run_started", "text": text})
        async for word in self.llm.stream(agent_name, text):
            await self.bridge.emit({**base, "type": "token", "text": word})
        await self.bridge.emit({**base, "type": "run_finished", "turn": agent.turns})
        self.tracker.count("runs_finished")
