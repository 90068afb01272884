"""Connection-side bridge: one user's events to one socket through a bounded queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Final, Self

from userscope._log import fields as log_fields

from ._errors import BridgeStateError, SubscriptionFailedError
from ._identity import UserLike, as_verified
from ._types import RUN_HEARTBEAT, Broker, Delivery, Gap

__all__ = [
    "BROKER_GONE_CLOSE_CODE",
    "FAILED_CLOSE_CODE",
    "RESYNC_CLOSE_CODE",
    "UNAVAILABLE_CLOSE_CODE",
    "BridgeExit",
    "EventBridge",
]

logger = logging.getLogger("userscope.events")

RESYNC_CLOSE_CODE: Final = 4409
"""WebSocket close code sent when a client cannot keep up with its events.

The bridge's bounded queue overflowed, so it stopped forwarding and asks the client
to reconnect with ``after=<id of the last event it received>``: it then gets every
event after that id (or a :class:`Gap` if history was trimmed meanwhile).
"""

BROKER_GONE_CLOSE_CODE: Final = 1012
"""WebSocket close code ("service restart") sent when the broker shuts down."""

UNAVAILABLE_CLOSE_CODE: Final = 1013
"""WebSocket close code ("try again later") for :class:`BrokerUnavailableError`.

The bridge does not close the socket itself when ``start()`` raises (nothing was
accepted on its behalf); close with this code, e.g.
``await websocket.close(UNAVAILABLE_CLOSE_CODE, "events unavailable; retry later")``.
"""

FAILED_CLOSE_CODE: Final = 1011
"""WebSocket close code sent when the connection's subscription failed alone
(:class:`SubscriptionFailedError`); other users' sockets are unaffected."""

SendFn = Callable[[dict[str, Any]], Awaitable[None]]
CloseFn = Callable[[int, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class BridgeExit:
    """Why a bridge stopped.

    Attributes:
        code: the close code the bridge asked for (:data:`RESYNC_CLOSE_CODE` on
            overflow, :data:`BROKER_GONE_CLOSE_CODE` when the broker closed,
            :data:`FAILED_CLOSE_CODE` when the subscription failed), or ``None``
            when its owner closed it or ``send`` failed.
        reason: human-readable reason (also the close reason sent).
        last_sent_id: id of the last event ``send`` completed for, or ``None``.
        error: the exception ``send`` (or the subscription) raised, if that is why
            it stopped.

    Example:
        >>> from userscope.events import BridgeExit, RESYNC_CLOSE_CODE
        >>> BridgeExit(RESYNC_CLOSE_CODE, "resync", "5-0").code
        4409
    """

    code: int | None
    reason: str
    last_sent_id: str | None
    error: BaseException | None = None


class EventBridge:
    """Forwards one verified user's events to one connection (e.g. a WebSocket).

    It subscribes through ``broker`` for ``user`` and hands each item's wire form
    (:meth:`Delivery.to_wire` / :meth:`Gap.to_wire`) to ``send``. A bounded queue of
    ``max_queue`` items sits between the subscription and ``send``; when it is full
    the client is too slow: the bridge stops, drops the queue and calls
    ``close(RESYNC_CLOSE_CODE, reason)`` — the client reconnects with its last id.
    The queue is bounded in bytes of event JSON too (``max_queue_bytes``), so a
    stalled client never holds more than that, whatever the size of its events.
    Heartbeats are not forwarded unless ``forward_heartbeats``; synthetic
    ``run_lost`` events are.

    Make it connection-scoped: enter it when the socket opens, leave it when the
    socket closes (a ``us.ConnectionScoped`` async generator does exactly that).

    Args:
        broker: any :class:`Broker`.
        user: the socket's verified identity (never a client-supplied id).
        send: coroutine function sending one JSON-ready dict (``websocket.send_json``).
        close: coroutine function ``close(code, reason)`` (``websocket.close``).
        after: the client's last event id, to resume; ``None`` for new events only.
        max_queue: items buffered for a slow client before it must resync.
        max_queue_bytes: bytes of event JSON buffered for a slow client before it
            must resync (one event always fits).
        forward_heartbeats: also forward ``run_heartbeat`` events.

    Example:
        >>> import asyncio, userscope as us
        >>> from userscope.events import EventBridge, InMemoryBroker
        >>> async def main():
        ...     broker, inbox = InMemoryBroker(), asyncio.Queue()
        ...     ctx = us.UserExecutionContext(user_id="alice", thread_id="t")
        ...     async with EventBridge(broker, ctx, inbox.put):
        ...         await broker.publish(ctx, {"type": "token", "text": "hi"})
        ...         message = await inbox.get()
        ...     await broker.aclose()
        ...     return [message["event"]]
        >>> asyncio.run(main())
        [{'type': 'token', 'text': 'hi'}]
    """

    def __init__(
        self,
        broker: Broker,
        user: UserLike,
        send: SendFn,
        *,
        close: CloseFn | None = None,
        after: str | None = None,
        max_queue: int = 256,
        max_queue_bytes: int = 8 << 20,
        forward_heartbeats: bool = False,
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue}")
        if max_queue_bytes < 1:
            raise ValueError(f"max_queue_bytes must be at least 1, got {max_queue_bytes}")
        self._broker = broker
        self._user = as_verified(user)
        self._send = send
        self._close = close
        self._after = after
        self._forward_heartbeats = forward_heartbeats
        self._queue: asyncio.Queue[tuple[str | None, dict[str, Any], int]] = asyncio.Queue(
            max_queue
        )
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes
        self._queued_bytes = 0
        self.last_sent_id: str | None = None
        self.exit: BridgeExit | None = None
        self._sub: AsyncIterator[Delivery | Gap] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._done = asyncio.Event()
        self._finished: asyncio.Task[BridgeExit] | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Subscribe and start forwarding (``async with`` calls it).

        Raises:
            EventIdError: ``after`` is not an event id.
            BrokerUnavailableError: the broker's server cannot be reached; close the
                socket with :data:`UNAVAILABLE_CLOSE_CODE` and let the client retry.
            SubscriptionFailedError: the broker refused this user's subscription.

        Example:
            >>> import asyncio, userscope as us
            >>> from userscope.events import EventBridge, InMemoryBroker
            >>> async def main():
            ...     broker, inbox = InMemoryBroker(), asyncio.Queue()
            ...     ctx = us.UserExecutionContext(user_id="alice", thread_id="t")
            ...     bridge = EventBridge(broker, ctx, inbox.put)
            ...     await bridge.start()  # subscribed: nothing published from now on is missed
            ...     await broker.publish(ctx, {"type": "token", "text": "hi"})
            ...     message = await inbox.get()
            ...     await bridge.aclose()
            ...     await broker.aclose()
            ...     return message["event"]
            >>> asyncio.run(main())
            {'type': 'token', 'text': 'hi'}
        """
        if self._sub is not None:
            raise BridgeStateError("start", started=True)
        sub = self._broker.subscribe(self._user, after=self._after)
        enter = getattr(sub, "__aenter__", None)
        if enter is not None:
            await enter()  # attach now: events published after start() are not missed
        self._sub = sub
        self._tasks = [
            asyncio.create_task(self._pump(sub), name="userscope-bridge-pump"),
            asyncio.create_task(self._sender(), name="userscope-bridge-send"),
        ]
        self._finished = asyncio.create_task(self._supervise(), name="userscope-bridge")

    def _stop(self, code: int | None, reason: str, error: BaseException | None = None) -> None:
        if self.exit is None:
            self.exit = BridgeExit(code, reason, self.last_sent_id, error)
            self._done.set()

    async def _pump(self, sub: AsyncIterator[Delivery | Gap]) -> None:
        try:
            await self._forward(sub)
        except SubscriptionFailedError as exc:
            self._stop(FAILED_CLOSE_CODE, "events_failed: the event subscription failed", exc)
        except Exception as exc:  # never leave the bridge running without its pump
            logger.exception(
                "event bridge subscription raised", extra=log_fields("events_bridge_failed")
            )
            self._stop(FAILED_CLOSE_CODE, "events_failed: the event subscription failed", exc)

    async def _forward(self, sub: AsyncIterator[Delivery | Gap]) -> None:
        async for item in sub:
            if isinstance(item, Delivery):
                if item.type == RUN_HEARTBEAT and not self._forward_heartbeats:
                    continue
                entry: tuple[str | None, dict[str, Any], int] = (
                    item.id,
                    item.to_wire(),
                    item.size,
                )
            else:
                entry = (None, item.to_wire(), 0)
            try:
                if not self._queue.empty() and (
                    self._queued_bytes + entry[2] > self.max_queue_bytes
                ):
                    raise asyncio.QueueFull
                self._queue.put_nowait(entry)
                self._queued_bytes += entry[2]
            except asyncio.QueueFull:
                self._stop(
                    RESYNC_CLOSE_CODE,
                    f"resync: more than {self.max_queue} events or {self.max_queue_bytes} "
                    "bytes waiting for this client; reconnect with after=<last id received>",
                )
                return
        self._stop(BROKER_GONE_CLOSE_CODE, "event broker closed; reconnect to resume")

    async def _sender(self) -> None:
        while True:
            event_id, wire, size = await self._queue.get()
            self._queued_bytes -= size
            try:
                await self._send(wire)
            except Exception as exc:
                self._stop(None, f"send failed: {type(exc).__name__}", exc)
                return
            if event_id is not None:
                self.last_sent_id = event_id

    async def _supervise(self) -> BridgeExit:
        await self._done.wait()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while not self._queue.empty():  # the client resumes from last_sent_id instead
            self._queued_bytes -= self._queue.get_nowait()[2]
        if self._sub is not None:
            closer = getattr(self._sub, "aclose", None)
            if closer is not None:
                await closer()
        assert self.exit is not None
        # report what was really sent: the sender may have finished one more send
        exit_ = self.exit = replace(self.exit, last_sent_id=self.last_sent_id)
        if exit_.code is not None and self._close is not None:
            try:
                await self._close(exit_.code, exit_.reason[:120])
            except Exception:  # the socket may already be gone
                logger.debug("closing the connection failed", exc_info=True)
        return exit_

    async def wait(self) -> BridgeExit:
        """Wait until the bridge stops by itself (overflow, broker closed, send failed).

        Returns:
            Why it stopped; the close code was already sent through ``close``.

        Example:
            >>> import asyncio, userscope as us
            >>> from userscope.events import EventBridge, InMemoryBroker
            >>> async def main():
            ...     broker, closed = InMemoryBroker(), []
            ...     ctx = us.UserExecutionContext(user_id="alice", thread_id="t")
            ...     async def send(message):
            ...         pass
            ...     async def close(code, reason):  # stands in for websocket.close
            ...         closed.append(code)
            ...     async with EventBridge(broker, ctx, send, close=close) as bridge:
            ...         await broker.aclose()  # e.g. the worker shuts down
            ...         exit = await bridge.wait()
            ...     return exit.code, exit.reason, closed
            >>> asyncio.run(main())
            (1012, 'event broker closed; reconnect to resume', [1012])
        """
        if self._finished is None:
            raise BridgeStateError("wait", started=False)
        return await asyncio.shield(self._finished)

    async def aclose(self) -> BridgeExit:
        """Stop forwarding and unsubscribe; idempotent. Does not close the socket.

        Returns:
            Why the bridge stopped (``code`` is ``None`` when stopped by its owner).

        Example:
            >>> import asyncio, userscope as us
            >>> from userscope.events import EventBridge, InMemoryBroker
            >>> async def main():
            ...     broker, inbox = InMemoryBroker(), asyncio.Queue()
            ...     ctx = us.UserExecutionContext(user_id="alice", thread_id="t")
            ...     bridge = EventBridge(broker, ctx, inbox.put)
            ...     await bridge.start()
            ...     exit = await bridge.aclose()  # the socket is closing
            ...     again = await bridge.aclose()
            ...     await broker.aclose()
            ...     return exit.code, exit.reason, again is exit
            >>> asyncio.run(main())
            (None, 'closed by its connection', True)
        """
        self._stop(None, "closed by its connection")
        if self._finished is None:
            assert self.exit is not None
            return self.exit
        return await asyncio.shield(self._finished)
