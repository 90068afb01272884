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
from collections import deque
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import userscope as us
from userscope._log import fields
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
ENV_API_DOCS = "AGENT_CHAT_API_DOCS"

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
        max_agents_per_user: how many named agents one user may create: the agent
            registry's own limit (``AgentLimitError``), not the runtime's
            ``max_instances_per_user``, which the demo leaves unlimited.
        token_delay: seconds between two streamed words of the fake LLM (each of
            an agent's three steps takes four times as long).
        heartbeat_interval: seconds between run heartbeats (``None``: the broker's default).
        heartbeat_timeout: seconds without heartbeat before subscribers report
            ``run_lost`` (``None``: the broker's default).
        max_queue: events buffered per socket before it is closed with 4409 (resync).
        publish_retry: seconds a run keeps retrying a token the broker refused
            (e.g. while Redis restarts) before the run fails.
        max_message_chars: longest chat message accepted (longer ones are refused
            with a message saying the limit; nothing is cut silently).
        memory_size: earlier messages each user's registry remembers.
        events_timeout: seconds a new socket or run waits for the event broker
            before the client is told that events are unavailable.
        idle_timeout: seconds without any connection or request after which a
            user's session (registry, agents, memory) is closed.
        api_docs: serve FastAPI's ``/docs`` and ``/openapi.json`` (off: the demo
            is meant to be shown, not explored).

    Example:
        >>> import secrets
        >>> DemoSettings(secret=secrets.token_urlsafe(32)).max_agents_per_user
        3
    """

    secret: str
    max_agents_per_user: int = 3
    token_delay: float = 0.03
    heartbeat_interval: float | None = None
    heartbeat_timeout: float | None = None
    max_queue: int = 256
    publish_retry: float = 5.0
    max_message_chars: int = 2000
    memory_size: int = 20
    events_timeout: float = 3.0
    idle_timeout: float = 1800.0
    api_docs: bool = False

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
        ``AGENT_CHAT_HEARTBEAT_INTERVAL``, ``AGENT_CHAT_HEARTBEAT_TIMEOUT`` and
        ``AGENT_CHAT_API_DOCS`` (``1`` serves ``/docs``).

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
            api_docs=env.get(ENV_API_DOCS, "").strip().lower() in ("1", "true", "yes"),
        )


AGENT_TOOLS: dict[str, str] = {
    "assistant": "word_count",
    "researcher": "keywords",
    "coder": "calculate",
    "critic": "readability",
}
"""The agents the page offers, each with the one tool it calls."""

_ARITHMETIC = re.compile(r"(-?\d+(?:\.\d+)?)\s*([-+*/x])\s*(-?\d+(?:\.\d+)?)")
_STOPWORDS = frozenset(
    {"about", "also", "from", "have", "into", "just", "that", "their", "there", "this"}
    | {"what", "when", "with", "your"}
)
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def run_tool(tool: str, prompt: str) -> str:
    """What the agent's tool answers for ``prompt`` (deterministic, no I/O).

    Example:
        >>> run_tool("calculate", "what is 12 * 7?")
        '12 * 7 = 84'
        >>> run_tool("word_count", "hello there")
        '2 words, 11 characters'
    """
    if tool == "word_count":
        count = len(prompt.split())
        return f"{count} word{'s' * (count != 1)}, {len(prompt)} characters"
    if tool == "keywords":
        long_words = {w.lower() for w in _WORD.findall(prompt) if len(w) > 3} - _STOPWORDS
        top = sorted(sorted(long_words, key=lambda w: (-len(w), w))[:3])
        return ", ".join(top) if top else "no keywords (every word is short)"
    if tool == "calculate":
        found = _ARITHMETIC.search(prompt)
        if found is None:
            return "no arithmetic found (try 12 * 7)"
        left, op, right = float(found[1]), found[2], float(found[3])
        if op == "/" and right == 0:
            return f"{found[0]}: cannot divide by zero"
        value = {"+": left + right, "-": left - right, "/": left / right}.get(op, left * right)
        shown = f"{value:.6g}"
        return f"{found[1]} {'*' if op == 'x' else op} {found[3]} = {shown}"
    if tool == "readability":
        letters = [len(w) for w in _WORD.findall(prompt)]
        if not letters:
            return "no words to judge"
        average = sum(letters) / len(letters)
        verdict = "easy to read" if average < 5.5 else "dense: shorter words would help"
        return f"average word length {average:.1f} letters: {verdict}"
    raise ValueError(f"unknown tool {tool!r}; known: {sorted(set(AGENT_TOOLS.values()))}")


@dataclass(frozen=True)
class Step:
    """One visible step of a run before its answer: thinking, a tool call, its result."""

    step: str
    text: str
    tool: str | None = None

    def event(self) -> dict[str, Any]:
        """The ``step`` event published for it."""
        event: dict[str, Any] = {"type": "step", "step": self.step, "text": self.text}
        if self.tool is not None:
            event["tool"] = self.tool
        return event


def _quote(text: str, limit: int = 40) -> str:
    return f"“{text if len(text) <= limit else text[: limit - 1] + '…'}”"


class FakeLLM:
    """A deterministic stand-in for a language model: no network, no randomness.

    A run shows three steps (thinking, which uses what the user's registry
    remembers; a call of the agent's tool; the tool's result), then streams the
    answer word by word.

    Example:
        >>> FakeLLM(delay=0).answer_words("coder", "what is 2 + 3")
        ['2', '+', '3', '=', '5.', 'You', 'wrote:', 'what', 'is', '2', '+', '3']
        >>> async def collect() -> list[str]:
        ...     return [w async for w in FakeLLM(delay=0).stream("assistant", "hi there")]
        >>> asyncio.run(collect())
        ['2', 'words,', '8', 'characters.', 'You', 'wrote:', 'hi', 'there']
    """

    def __init__(self, delay: float) -> None:
        self.delay = delay

    @staticmethod
    def tool(agent_name: str) -> str:
        """The tool ``agent_name`` calls (unknown agents count words)."""
        return AGENT_TOOLS.get(agent_name, "word_count")

    def plan(self, agent_name: str, prompt: str, earlier: list[str]) -> list[Step]:
        """The steps of one run; ``earlier`` are the user's previous messages, oldest first."""
        if earlier:
            recalled = ", ".join(_quote(text) for text in earlier[-2:])
            thinking = (
                f"message {len(earlier) + 1} from you; your registry remembers "
                f"{len(earlier)} earlier: {recalled}"
            )
        else:
            thinking = "your first message: nothing remembered yet"
        tool = self.tool(agent_name)
        return [
            Step("thinking", thinking),
            Step("tool_call", f"{tool}({_quote(prompt, 60)})", tool),
            Step("tool_result", run_tool(tool, prompt), tool),
        ]

    def answer_words(self, agent_name: str, prompt: str) -> list[str]:
        """The answer, as the words :meth:`stream` yields."""
        result = run_tool(self.tool(agent_name), prompt)
        return [*f"{result}.".split(), "You", "wrote:", *prompt.split()]

    async def steps(self, agent_name: str, prompt: str, earlier: list[str]) -> AsyncIterator[Step]:
        """Yield the run's steps, each after a pause of four words."""
        for step in self.plan(agent_name, prompt, earlier):
            await asyncio.sleep(self.delay * 4)
            yield step

    async def stream(self, agent_name: str, prompt: str) -> AsyncIterator[str]:
        """Yield the answer word by word, with a small delay between words."""
        for word in self.answer_words(agent_name, prompt):
            await asyncio.sleep(self.delay)
            yield word


class Tracker:
    """App-wide counters the tests and the page's scope panel read: what is open right now.

    Besides the totals it keeps, per user, how many of that user's registries,
    bridges (one per connection) and runs (one per REQUEST scope of an agent run)
    are open: ``sessions.stats()`` counts every user together, so the demo counts
    what it owns itself to show each person only their own scopes.

    Example:
        >>> tracker = Tracker()
        >>> tracker.count("bridges_opened", "alice")
        >>> tracker.live("alice")["connections"], tracker.live("bob")["connections"]
        (1, 0)
    """

    _LIVE: ClassVar[dict[str, tuple[str, int]]] = {
        "bridges_opened": ("connections", 1),
        "bridges_closed": ("connections", -1),
        "registries_opened": ("registries", 1),
        "registries_closed": ("registries", -1),
        "runs_started": ("runs", 1),
        "runs_ended": ("runs", -1),
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bridges_opened = 0
        self.bridges_closed = 0
        self.registries_opened = 0
        self.registries_closed = 0
        self.runs_started = 0
        self.runs_ended = 0
        self.runs_finished = 0
        self._live: dict[str, dict[str, int]] = {}

    def count(self, name: str, user_id: str | None = None) -> None:
        """Add one to the counter ``name`` (and to ``user_id``'s live count it moves)."""
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)
            live = self._LIVE.get(name)
            if live is not None and user_id is not None:
                counts = self._live.setdefault(user_id, {})
                counts[live[0]] = counts.get(live[0], 0) + live[1]
                if not any(counts.values()):
                    del self._live[user_id]

    def live(self, user_id: str) -> dict[str, int]:
        """``user_id``'s open ``registries``, ``connections`` and ``runs`` right now."""
        with self._lock:
            counts = self._live.get(user_id, {})
            return {key: counts.get(key, 0) for key in ("registries", "connections", "runs")}

    @property
    def bridges_open(self) -> int:
        """Bridges opened and not closed yet."""
        return self.bridges_opened - self.bridges_closed

    @property
    def registries_open(self) -> int:
        """Registries opened and not closed yet."""
        return self.registries_opened - self.registries_closed


class AgentLimitError(RuntimeError):
    """The user already has ``maximum`` agents (``in_use``); ``name`` would be one too many.

    Example:
        >>> err = AgentLimitError("alice", "critic", 2, ["coder", "assistant"])
        >>> err.in_use, err.maximum
        (['assistant', 'coder'], 2)
    """

    def __init__(self, user_id: str, name: str, maximum: int, in_use: list[str]) -> None:
        self.user_id = user_id
        self.name = name
        self.maximum = maximum
        self.in_use = sorted(in_use)
        super().__init__(
            f"you already use {maximum} agents ({', '.join(self.in_use)}), the most one user "
            f"may have: ask one of them instead of {name!r}"
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

    def __init__(
        self, context: us.UserExecutionContext, max_agents: int, memory_size: int = 20
    ) -> None:
        self.user_id = context.user_id
        self.max_agents = max_agents
        self._agents: dict[str, AgentProfile] = {}
        self._memory: deque[str] = deque(maxlen=memory_size)
        self.closed = False

    def remember(self, text: str) -> list[str]:
        """Remember one message of the user; return the ones before it, oldest first."""
        earlier = list(self._memory)
        self._memory.append(text)
        return earlier

    @property
    def memory(self) -> list[str]:
        """The user's remembered messages, oldest first."""
        return list(self._memory)

    def profiles(self) -> list[AgentProfile]:
        """The user's agents, sorted by name."""
        return [self._agents[name] for name in sorted(self._agents)]

    def get_or_create(self, name: str) -> AgentProfile:
        """Return the user's agent called ``name``, creating it if the cap allows."""
        agent = self._agents.get(name)
        if agent is None:
            if len(self._agents) >= self.max_agents:
                raise AgentLimitError(self.user_id, name, self.max_agents, list(self._agents))
            agent = self._agents[name] = AgentProfile(name=name, owner=self.user_id)
        return agent

    def names(self) -> list[str]:
        """The names of the user's agents, sorted."""
        return sorted(self._agents)

    def close(self) -> None:
        """Forget every agent and message (the user's session ended)."""
        self._agents.clear()
        self._memory.clear()
        self.closed = True


def open_registry(
    context: us.UserExecutionContext, settings: DemoSettings, tracker: Tracker
) -> Any:
    """Generator provider: one registry per user session, cleared when the session ends."""
    registry = AgentRegistry(context, settings.max_agents_per_user, settings.memory_size)
    tracker.count("registries_opened", context.user_id)
    try:
        yield registry
    finally:
        registry.close()
        tracker.count("registries_closed", context.user_id)


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
    tracker.count("bridges_opened", context.user_id)
    try:
        yield bridge
    finally:
        try:
            await bridge.aclose()
        finally:  # also when the connection's task is cancelled mid-cleanup
            tracker.count("bridges_closed", context.user_id)


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

    async def run(
        self,
        agent_name: str,
        text: str,
        *,
        conversation: str | None = None,
        ref: str | None = None,
        started: asyncio.Future[None] | None = None,
    ) -> str:
        """Run ``agent_name`` on ``text``: ``run_started``, three ``step`` events
        (thinking, tool call, tool result), ``token`` words, ``run_finished``.

        Every event carries ``agent``, ``request_id``, ``text`` (the prompt; a
        step's or token's own ``text`` is its content), ``turn`` and, when given,
        ``conversation`` and ``ref`` (the client's id for its message). Over the
        agent cap, one ``error`` event with ``code="agent_limit"`` is published
        instead. The user's registry remembers the message for later runs.

        Args:
            agent_name: which of the user's agents runs.
            text: the user's message.
            conversation: the tab the run belongs to (``None``: every tab).
            ref: the client's id for this message, echoed in the run's events.
            started: resolved once ``run_started`` is published (or failed with
                the error that kept the run from starting).

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
        if ref is not None:
            fields["ref"] = ref
        try:
            agent = self.registry.get_or_create(agent_name)
        except AgentLimitError as exc:
            refusal = {**fields, "type": "error", "code": "agent_limit", "text": str(exc)}
            refusal["max_agents"] = exc.maximum
            try:
                await self.broker.publish(self.context, refusal)
            finally:
                if started is not None and not started.done():
                    started.set_exception(exc)
            return self.run_id
        user = self.context.user_id
        self.tracker.count("runs_started", user)
        try:
            agent.turns += 1
            fields["turn"] = agent.turns
            try:
                async with self.broker.run(
                    self.context,
                    self.run_id,
                    fields=fields,
                    heartbeat_interval=self.settings.heartbeat_interval,
                    heartbeat_timeout=self.settings.heartbeat_timeout,
                ) as run:
                    if started is not None:
                        started.set_result(None)  # run_started is published
                    earlier = self.registry.remember(text)
                    async for step in self.llm.steps(agent_name, text, earlier):
                        await self._publish(run, step.event())
                    async for word in self.llm.stream(agent_name, text):
                        await self._publish(run, {"type": "token", "text": word})
            except BaseException as exc:
                if started is not None and not started.done():
                    started.set_exception(exc)  # the run never started
                raise
        finally:
            self.tracker.count("runs_ended", user)
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
                logger.warning(
                    "run %s: publish failed (%s); retrying",
                    self.run_id,
                    exc,
                    extra=fields("demo_publish_retry", self.context),
                )
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

    def spawn(self, job: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``job`` in the background, in an empty context; return its task."""
        if self.closed:
            job.close()
            raise RuntimeError("the app is shutting down; no new runs are started")
        task = asyncio.create_task(job, name=name, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:  # one line; the traceback only at debug level
            extra = fields("demo_run_failed")
            logger.warning("background run %s failed: %r", task.get_name(), error, extra=extra)
            logger.debug("background run %s failed", task.get_name(), exc_info=error, extra=extra)

    async def aclose(self) -> None:
        """Cancel every running job and wait for them to finish their cleanup."""
        self.closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
