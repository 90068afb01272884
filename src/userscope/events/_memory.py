"""In-process broker: the embedded default for a single worker."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from userscope._durations import Duration, to_seconds

from ._base import BrokerBase
from ._identity import KeyDeriver, UserLike, as_verified
from ._json import encode_event
from ._runs import check_heartbeat
from ._subscription import DEFAULT_BUFFER_BYTES, Lost, Record, Subscription
from ._types import BEGINNING, BrokerStats, id_key

__all__ = ["InMemoryBroker"]


@dataclass(slots=True)
class _Stream:
    entries: deque[Record] = field(default_factory=deque)
    last_id: str = BEGINNING
    touched: float = 0.0
    subs: set[Subscription] = field(default_factory=set)
    size: int = 0  # bytes of the retained entries
    last_ms: int = 0  # this user's own id clock: ids reveal nothing about other users
    last_seq: int = 0

    def next_id(self, now_ms: int) -> str:
        if now_ms <= self.last_ms:
            self.last_seq += 1
        else:
            self.last_ms, self.last_seq = now_ms, 0
        return f"{self.last_ms}-{self.last_seq}"


class InMemoryBroker(BrokerBase):
    """Per-user event streams inside one process (no network, no persistence).

    Same semantics as :class:`RedisBroker`: total order per user, resume after an
    id, :class:`Gap` markers, history bounded to ``maxlen`` events and
    ``max_history_bytes`` bytes per user, streams of users idle (no publish) for
    ``idle_ttl`` seconds dropped, run liveness. Each user's ids come from that user's
    own sequence (``"<ms>-<n>"``), so their gaps reveal nothing about other users.
    Use it with a single worker process; use :class:`RedisBroker` as soon as there
    are several.

    Args:
        maxlen: events kept per user for resuming (exact bound).
        max_history_bytes: bytes of event JSON kept per user (the oldest go first;
            the newest event is always kept).
        idle_ttl: seconds (or ``timedelta``) without a publish after which a user's
            history is dropped.
        max_event_bytes: largest encoded event accepted.
        buffer_limit: envelopes buffered per subscription before it re-reads from history.
        buffer_bytes: bytes of event JSON buffered per subscription before it re-reads
            from history (a stalled consumer never holds more).
        heartbeat_interval: default seconds between run heartbeats.
        heartbeat_timeout: default seconds without heartbeat before ``run_lost``.
        clock: wall clock in seconds (for tests).

    Example:
        >>> import asyncio, userscope as us
        >>> from userscope.events import InMemoryBroker
        >>> async def main():
        ...     broker = InMemoryBroker(maxlen=100)
        ...     ctx = us.UserExecutionContext(user_id="alice", thread_id="t")
        ...     first = await broker.publish(ctx, {"n": 1})
        ...     await broker.publish(ctx, {"n": 2})
        ...     async with broker.subscribe(ctx, after=first) as sub:
        ...         item = await anext(sub)
        ...     await broker.aclose()
        ...     return item.payload
        >>> asyncio.run(main())
        {'n': 2}
    """

    def __init__(
        self,
        *,
        maxlen: int = 1000,
        max_history_bytes: int = 16 << 20,
        idle_ttl: Duration = 3600.0,
        max_event_bytes: int = 1 << 20,
        buffer_limit: int = 10_000,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        heartbeat_interval: Duration = 5.0,
        heartbeat_timeout: Duration = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        for name, value in (
            ("maxlen", maxlen),
            ("max_history_bytes", max_history_bytes),
            ("max_event_bytes", max_event_bytes),
            ("buffer_limit", buffer_limit),
            ("buffer_bytes", buffer_bytes),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self.heartbeat_interval = to_seconds("heartbeat_interval", heartbeat_interval)
        self.heartbeat_timeout = to_seconds("heartbeat_timeout", heartbeat_timeout)
        check_heartbeat(self.heartbeat_interval, self.heartbeat_timeout)
        self.maxlen = maxlen
        self.max_history_bytes = max_history_bytes
        self.idle_ttl = to_seconds("idle_ttl", idle_ttl)
        self.max_event_bytes = max_event_bytes
        self.buffer_limit = buffer_limit
        self.buffer_bytes = buffer_bytes
        self._clock = clock
        self._keys = KeyDeriver(os.urandom(32), "mem")
        self._streams: dict[str, _Stream] = {}
        self._last_sweep = clock()
        self._closed = False
        self.stats = BrokerStats()

    def _sweep(self, now: float) -> None:
        if now - self._last_sweep < self.idle_ttl / 4:
            return
        self._last_sweep = now
        for owner in [o for o, s in self._streams.items() if now - s.touched >= self.idle_ttl]:
            self._expire(owner)

    def _expire(self, owner: str) -> None:
        stream = self._streams[owner]
        if stream.subs:  # keep the subscriber registry, forget the history
            stream.entries.clear()
            stream.size = 0
            stream.last_id = BEGINNING
            stream.touched = float("inf")  # not idle-tracked until the next publish
        else:
            del self._streams[owner]

    def _live(self, owner: str) -> _Stream | None:
        now = self._clock()
        self._sweep(now)
        stream = self._streams.get(owner)
        if stream is not None and now - stream.touched >= self.idle_ttl:
            self._expire(owner)
            stream = self._streams.get(owner)
        return stream

    @property
    def available(self) -> bool:
        """Always ``True``: an in-process broker cannot lose its server.

        Example:
            >>> from userscope.events import InMemoryBroker
            >>> InMemoryBroker().available
            True
        """
        return True

    async def publish(self, user: UserLike, event: Mapping[str, Any]) -> str:
        """Append ``event`` to the user's stream and hand it to live subscribers.

        Args:
            user: the verified identity (a ``UserExecutionContext`` or ``VerifiedUser``).
            event: a JSON object; anything else raises :class:`EventPayloadError`.

        Returns:
            The new event id.

        Example:
            >>> import asyncio, userscope as us
            >>> from userscope.events import InMemoryBroker
            >>> async def main():
            ...     broker = InMemoryBroker()
            ...     ctx = us.UserExecutionContext(user_id="alice", thread_id="t")
            ...     first = await broker.publish(ctx, {"type": "token", "text": "hi"})
            ...     second = await broker.publish(ctx, {"type": "token", "text": "there"})
            ...     await broker.aclose()
            ...     return first != second
            >>> asyncio.run(main())
            True
        """
        self._check_open()
        identity = as_verified(user)
        data = encode_event(event, self.max_event_bytes)
        owner = self._keys.user_hash(identity)
        stream = self._live(owner)
        if stream is None:
            stream = self._streams[owner] = _Stream()
        event_id = stream.next_id(int(self._clock() * 1000))
        size = len(data.encode())
        record = Record(id=event_id, prev=stream.last_id, owner=owner, data=data, size=size)
        entries = stream.entries
        entries.append(record)
        stream.size += size
        while len(entries) > self.maxlen or (
            stream.size > self.max_history_bytes and len(entries) > 1
        ):
            stream.size -= entries.popleft().size
        stream.last_id = event_id
        stream.touched = self._clock()
        self.stats.published += 1
        for sub in stream.subs:
            sub._push(record)
        return event_id

    def _replay(self, sub: Subscription, stream: _Stream) -> None:
        last = id_key(sub.last_id)
        for record in stream.entries:
            if id_key(record.id) > last:
                sub._push(record)

    async def _attach(self, sub: Subscription) -> None:
        self._check_open()
        stream = self._live(sub.owner)
        if sub.requested_after is None:
            sub._set_position(BEGINNING if stream is None else stream.last_id)
        elif sub.requested_after != BEGINNING and (
            stream is None
            or not stream.entries
            or id_key(stream.last_id) < id_key(sub.requested_after)
        ):
            sub._push(Lost())
            if stream is not None:  # a newer incarnation of the stream: all of it is new
                for record in stream.entries:
                    sub._push(record)
        elif stream is not None:
            self._replay(sub, stream)
        if stream is None:
            stream = self._streams[sub.owner] = _Stream(touched=float("inf"))
        stream.subs.add(sub)

    def _detach(self, sub: Subscription) -> None:
        stream = self._streams.get(sub.owner)
        if stream is not None:
            stream.subs.discard(sub)
            if not stream.subs and not stream.entries:
                del self._streams[sub.owner]

    async def _rewind(self, sub: Subscription) -> None:
        stream = self._streams.get(sub.owner)
        if stream is not None:
            self._replay(sub, stream)

    async def aclose(self) -> None:
        """End every subscription and drop all history; idempotent.

        Example:
            >>> import asyncio
            >>> from userscope.events import InMemoryBroker
            >>> broker = InMemoryBroker()
            >>> asyncio.run(broker.aclose())  # at application shutdown
            >>> asyncio.run(broker.aclose())  # a second call does nothing
        """
        if self._closed:
            return
        self._closed = True
        for stream in self._streams.values():
            for sub in list(stream.subs):
                sub._end()
        self._streams.clear()
