"""The agent-chat demo's objects: a fake LLM, a per-user registry, a per-connection bridge.

Nothing here is global: every object is created by a userscope provider for
one user, one connection or one message, and cleaned up when that scope ends.
The one application-level object besides settings is the event broker
(``userscope.events``): agent runs publish their events to the user's stream,
and each connection's bridge forwards that user's stream to its socket — in one
process (``InMemoryBroker``) or across worker processes (``RedisBroker``).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import os
import re
import secrets
import threading
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import userscope as us
from userscope.events import (
    BridgeExit,
    Broker,
    BrokerClosedError,
    EventBridge,
    EventPayloadError,
    RunHandle,
)

logger = logging.getLogger("examples.agent_chat")

ENV_SECRET = "AGENT_CHAT_SECRET"
ENV_TOKEN_DELAY = "AGENT_CHAT_TOKEN_DELAY"
ENV_MAX_AGENTS = "AGENT_CHAT_MAX_AGENTS"
ENV_HEARTBEAT_INTERVAL = "AGENT_CHAT_HEARTBEAT_INTERVAL"
ENV_HEARTBEAT_TIMEOUT = "AGENT_CHAT_HEARTBEAT_TIMEOUT"

CONVERSATION_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""What a client-chosen conversation id may look like (it only filters the user's own stream)."""


def _env_number(env: Mapping[str, str], name: str, default: float | None) -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}={raw!r} must be a finite number >= 0")
    return value


@dataclass(frozen=True)
class DemoSettings:
    """Settings of one demo app (no module-level state).

    Attributes:
        secret: HS256 secret the sign-in tokens are signed with (32+ characters;
            identical on every worker so that a token works on all of them).
        max_agents_per_user: how many named agents one user may create.
        token_delay: seconds between two streamed words of the fake LLM.
        heartbeat_interval: seconds between run heartbeats (``None``: the broker's default).
        heartbeat_timeout: seconds without heartbeat before subscribers report
            ``run_lost`` (``None``: the broker's default).
        max_queue: events buffered per socket before it is closed with 4409 (resync).
        publish_retry: seconds a run keeps retrying a token the broker refused
            (e.g. while Redis restarts) before the run fails.

    Example:
        >>> DemoSettings(secret="s" * 32).max_agents_per_user
        3
    """

    secret: str
    max_agents_per_user: int = 3
    token_delay: float = 0.03
    heartbeat_interval: float | None = None
    heartbeat_timeout: float | None = None
    max_queue: int = 256
    publish_retry: float = 5.0

    def __post_init__(self) -> None:
        if len(self.secret) < 32:
            raise ValueError(
                f"the token secret is {len(self.secret)} characters long; use at least 32 "
                f"(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DemoSettings:
        """Read the settings from ``AGENT_CHAT_*`` environment variables.

        ``AGENT_CHAT_SECRET`` (a fresh random secret when unset: then tokens work
        on this worker only), ``AGENT_CHAT_TOKEN_DELAY``, ``AGENT_CHAT_MAX_AGENTS``,
        ``AGENT_CHAT_HEARTBEAT_INTERVAL`` and ``AGENT_CHAT_HEARTBEAT_TIMEOUT``.

        Raises:
            ValueError: a variable is set to something that is not a valid value.

        Example:
            >>> DemoSettings.from_env({"AGENT_CHAT_TOKEN_DELAY": "0"}).token_delay
            0.0
        """
        env = os.environ if environ is None else environ
        secret = env.get(ENV_SECRET, "").strip() or secrets.token_urlsafe(32)
        max_agents = env.get(ENV_MAX_AGENTS, "").strip()
        if max_agents and not (max_agents.isdigit() and int(max_agents) > 0):
            raise ValueError(f"{ENV_MAX_AGENTS}={max_agents!r} must be a positive integer")
        token_delay = _env_number(env, ENV_TOKEN_DELAY, cls.token_delay)
        assert token_delay is not None
        return cls(
            secret=secret,
            max_agents_per_user=int(max_agents) if max_agents else cls.max_agents_per_user,
            token_delay=token_delay,
            heartbeat_interval=_env_number(env, ENV_HEARTBEAT_INTERVAL, None),
            heartbeat_timeout=_env_number(env, ENV_HEARTBEAT_TIMEOUT, None),
        )


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
        """Add one to the counter ``name``."""
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    @property
    def bridges_open(self) -> int:
        """Bridges opened and not closed yet."""
        return self.bridges_opened - self.bridges_closed

    @property
    def registries_open(self) -> int:
        """Registries opened and not closed yet."""
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
        """The names of the user's agents, sorted."""
        return sorted(self._agents)

    def close(self) -> None:
        """Forget every agent (the user's session ended)."""
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


class EventSocket(Protocol):
    """Where a bridge writes events (a Starlette WebSocket in the app)."""

    async def send_json(self, data: Any, mode: str = "text") -> None:
        """Send one JSON message."""

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the connection with ``code``."""


class BridgeClosedError(RuntimeError):
    """A bridge was opened or used after its connection ended."""


class ConversationError(ValueError):
    """A client-chosen conversation id is not 1-64 letters, digits, ``_`` or ``-``."""

    def __init__(self, value: str) -> None:
        self.value = value[:80]
        super().__init__(
            f"conversation={self.value!r} is not allowed: use 1-64 letters, digits, '_' or '-'"
        )


class WebSocketBridge:
    """One WebSocket's view of its user's events (ConnectionScoped).

    It wraps a :class:`userscope.events.EventBridge` subscribed for the
    connection's **verified** user (the context the adapter built from the token):
    every event published for that user — by a run in this worker or in any other
    worker sharing the broker — is forwarded to this socket, in the user's order,
    through a bounded queue (overflow closes the socket with 4409; broker shutdown
    with 1012; the client then reconnects with ``?after=<last id>``).

    Messages on the socket are flat JSON objects: the event's fields plus ``id``
    (the broker event id, for resuming and de-duplicating), ``ts`` and the
    ``user_id`` of the connection. A gap marker is ``{"type": "gap", "after",
    "next_id", "reason"}``; the synthetic ``run_lost`` event has ``"synthetic": true``.

    Events tagged with another ``conversation`` than this socket's are skipped:
    runs started from a socket stay in that socket's conversation, while runs
    started over HTTP without a conversation reach every socket of the user. The
    tag filters within the user's own stream only; isolation between users is the
    broker's (keyed per-user streams, envelopes re-checked on delivery).

    This replaces the legacy ``get_agent_websocket_bridge()`` accessor that handed
    every caller the same bridge.
    """

    def __init__(self, context: us.UserExecutionContext, broker: Broker, max_queue: int) -> None:
        self.context = context
        self.broker = broker
        self.max_queue = max_queue
        self.socket: EventSocket | None = None
        self.conversation: str | None = None
        self.closed = False
        self.sent = 0
        self.skipped = 0
        self._events: EventBridge | None = None
        self._send_lock = asyncio.Lock()
        self._ready = asyncio.Event()
        self._stopping: set[asyncio.Future[BridgeExit]] = set()

    async def open(
        self, socket: EventSocket, *, after: str | None = None, conversation: str | None = None
    ) -> None:
        """Subscribe for the connection's user and start forwarding to ``socket``.

        Sends ``{"type": "hello", "conversation", "resumed_after"}`` first; every
        event follows it. Events published after this returns are never missed.

        Args:
            socket: the accepted WebSocket.
            after: the last event id the client received (resume), or ``None``.
            conversation: the client's conversation id (kept across reconnects);
                ``None``: the connection's own id.

        Raises:
            userscope.events.EventIdError: ``after`` is not an event id.
            ConversationError: ``conversation`` is not a valid id.
            BridgeClosedError: the connection already ended.
        """
        if self.closed:
            raise BridgeClosedError("the connection of this bridge has ended")
        if self.socket is not None:
            raise RuntimeError("this bridge is already attached to its connection")
        if conversation is None:
            conversation = self.context.connection_id or f"c-{secrets.token_hex(16)}"
        elif not CONVERSATION_RE.fullmatch(conversation):
            raise ConversationError(conversation)
        events = EventBridge(
            self.broker,
            self.context,
            self._forward,
            close=socket.close,
            after=after,
            max_queue=self.max_queue,
        )
        await events.start()  # EventIdError for a bad `after`; attached: nothing is missed
        self._events, self.socket, self.conversation = events, socket, conversation
        hello = {"type": "hello", "text": "connected", "conversation": conversation}
        await self.send({**hello, "resumed_after": after})
        self._ready.set()

    async def send(self, message: dict[str, Any]) -> None:
        """Send one connection-local message (stamped with the user id) to this socket only."""
        if self.closed or self.socket is None:
            raise BridgeClosedError("the connection of this bridge has ended")
        async with self._send_lock:
            await self.socket.send_json({**message, "user_id": self.context.user_id})
            self.sent += 1

    async def _forward(self, wire: dict[str, Any]) -> None:
        await self._ready.wait()  # the hello goes first
        if wire["kind"] == "gap":
            message = {
                "type": "gap",
                "after": wire["after"],
                "next_id": wire["next_id"],
                "reason": wire["reason"],
            }
        else:
            event: dict[str, Any] = wire["event"]
            target = event.get("conversation")
            if target is not None and target != self.conversation:
                self.skipped += 1
                return
            message = {**event, "id": wire["id"], "ts": wire["ts"]}
            if wire.get("synthetic"):
                message["synthetic"] = True
        await self.send(message)

    async def wait(self) -> BridgeExit:
        """Wait until forwarding stops by itself (overflow, broker closed, socket gone)."""
        if self._events is None:
            raise RuntimeError("open the bridge first")
        return await self._events.wait()

    async def aclose(self) -> None:
        """Stop forwarding and unsubscribe (the connection scope calls it at disconnect).

        The stop runs in a task of its own: when the connection's task is being
        cancelled (server shutdown, a test client tearing down) it still completes,
        without being awaited (an await would only be cancelled too); a cancellation
        arriving while waiting for it propagates, as it should.
        """
        self.closed = True
        self.socket = None
        events, self._events = self._events, None
        if events is None:
            return
        stopping = asyncio.ensure_future(events.aclose())
        self._stopping.add(stopping)  # keep a reference until it is done
        stopping.add_done_callback(self._stopping.discard)
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            return
        await asyncio.shield(stopping)


async def open_bridge(
    context: us.UserExecutionContext, broker: Broker, settings: DemoSettings, tracker: Tracker
) -> Any:
    """Async generator provider: one bridge per connection, closed at disconnect."""
    bridge = WebSocketBridge(context, broker, settings.max_queue)
    tracker.count("bridges_opened")
    try:
        yield bridge
    finally:
        try:
            await bridge.aclose()
        finally:  # also when the connection's task is cancelled mid-cleanup
            tracker.count("bridges_closed")


class AgentRun:
    """One agent run for one message (RequestScoped): publishes the reply as events.

    The run publishes to its user's stream through the app's broker
    (``broker.run(ctx, run_id)``: ``run_started``, ``token``..., ``run_finished``
    plus heartbeats), never to a socket: whichever worker holds the user's
    sockets delivers them. ``run_id`` is the request id of the run's scope.
    """

    def __init__(
        self,
        context: us.UserExecutionContext,
        registry: AgentRegistry,
        broker: Broker,
        llm: FakeLLM,
        tracker: Tracker,
        settings: DemoSettings,
    ) -> None:
        self.context = context
        self.registry = registry
        self.broker = broker
        self.llm = llm
        self.tracker = tracker
        self.settings = settings

    @property
    def run_id(self) -> str:
        """The id of this run (the request id of its scope)."""
        return self.context.request_id

    async def run(self, agent_name: str, text: str, *, conversation: str | None = None) -> str:
        """Run ``agent_name`` on ``text``, publishing ``run_started``/``token``/``run_finished``.

        Every event carries ``agent``, ``request_id``, ``text`` (the prompt; a
        token's own ``text`` is its word), ``turn`` and, when given, ``conversation``.
        Over the agent cap, one ``error`` event is published instead.

        Returns:
            The run id.
        """
        fields: dict[str, Any] = {
            "agent": agent_name,
            "request_id": self.context.request_id,
            "text": text,
        }
        if conversation is not None:
            fields["conversation"] = conversation
        try:
            agent = self.registry.get_or_create(agent_name)
        except AgentLimitError as exc:
            await self.broker.publish(self.context, {**fields, "type": "error", "text": str(exc)})
            return self.run_id
        agent.turns += 1
        fields["turn"] = agent.turns
        async with self.broker.run(
            self.context,
            self.run_id,
            fields=fields,
            heartbeat_interval=self.settings.heartbeat_interval,
            heartbeat_timeout=self.settings.heartbeat_timeout,
        ) as run:
            async for word in self.llm.stream(agent_name, text):
                await self._publish(run, {"type": "token", "text": word})
        self.tracker.count("runs_finished")
        return self.run_id

    async def _publish(self, run: RunHandle, event: dict[str, Any]) -> str:
        """Publish, retrying for ``publish_retry`` seconds while the broker is unreachable."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.publish_retry
        delay = 0.05
        while True:
            try:
                return await run.publish(event)
            except (BrokerClosedError, EventPayloadError):
                raise  # shutting down, or a bug: retrying cannot help
            except Exception as exc:
                if loop.time() + delay > deadline:
                    raise
                logger.warning("run %s: publish failed (%s); retrying", self.run_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)


class BackgroundRuns:
    """Agent runs started over HTTP that keep running after the response (app-level).

    Each run gets its own task in a fresh ``contextvars`` context (it must not
    inherit the finished HTTP request's scope) and opens its own REQUEST scope for
    the verified user. At shutdown :meth:`aclose` cancels what is still running
    (the runs publish ``run_finished`` with ``status="cancelled"``).
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, job: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``job`` in the background, in an empty context."""
        if self.closed:
            job.close()
            raise RuntimeError("the app is shutting down; no new runs are started")
        task = asyncio.create_task(job, name=name, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("background run %s failed", task.get_name(), exc_info=task.exception())

    async def aclose(self) -> None:
        """Cancel every running job and wait for them to finish their cleanup."""
        self.closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
