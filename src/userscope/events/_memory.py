"""In-process broker: the embedded default for a single worker."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._base import BrokerBase
from ._identity import KeyDeriver, UserLike, as_verified
from ._json import encode_event
from ._runs import check_heartbeat
from ._subscription import Lost, Record, Subscription
from ._types import BEGINNING, BrokerStats, id_key

__all__ = ["InMemoryBroker"]


@dataclass(slots=True)
class _Stream:
    entries: deque[Record]
    last_id: str = BEGINNING
    touched: float = 0.0
    subs: set[Subscription] = field(default_factory=set)


class InMemoryBroker(BrokerBase):
    """Per-user event streams inside one process (no network, no persistence).

    Same semantics as :class:`RedisBroker`: total order per user, resume after an
    id, :class:`Gap` markers, history bounded to ``maxlen`` events per user, streams
    of users idle (no publish) for ``idle_ttl`` seconds dropped, run liveness.
    Use it with a single worker process; use :class:`RedisBroker` as soon as there
    are several.

    Args:
        maxlen: events kept per user for resuming (exact bound).
        idle_ttl: seconds without a publish after which a user's history is dropped.
        max_event_bytes: largest encoded event accepted.
        buffer_limit: envelopes buffered per subscription before it re-reads from history.
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
        idle_ttl: float = 3600.0,
        max_event_bytes: int = 1 << 20,
        buffer_limit: int = 10_000,
        heartbeat_interval: float = 5.0,
        heartbeat_timeout: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen}")
        if not idle_ttl > 0:
            raise ValueError(f"idle_ttl must be positive seconds, got {idle_ttl}")
        if buffer_limit < 1:
            raise ValueError(f"buffer_limit must be at least 1, got {buffer_limit}")
        check_heartbeat(heartbeat_interval, heartbeat_timeout)
        self.maxlen = maxlen
        self.idle_ttl = idle_ttl
        self.max_event_bytes = max_event_bytes
        self.buffer_limit = buffer_limit
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self._clock = clock
        self._keys = KeyDeriver(os.urandom(32), "mem")
        self._streams: dict[str, _Stream] = {}
        self._last_ms = 0
        self._last_seq = 0
        self._last_sweep = clock()
        self._closed = False
        self.stats = BrokerStats()

    def _next_id(self) -> str:
        ms = int(self._clock() * 1000)
        if ms <= self._last_ms:
            self._last_seq += 1
        else:
            self._last_ms, self._last_seq = ms, 0
        return f"{self._last_ms}-{self._last_seq}"

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

    async def publish(self, user: UserLike, event: Mapping[str, Any]) -> str:
        """Append ``event`` to the user's stream and hand it to live subscribers.

        Args:
            user: the verified identity (a ``UserExecutionContext`` or ``VerifiedUser``).
            event: a JSON object; anything else raises :class:`EventPayloadError`.

        Returns:
            The new event id.

        Example:
            >>> # event_id = await broker.publish(ctx, {"type": "token", "text": "hi"})
        """
        self._check_open()
        identity = as_verified(user)
        data = encode_event(event, self.max_event_bytes)
        owner = self._keys.user_hash(identity)
        stream = self._live(owner)
        if stream is None:
            stream = self._streams[owner] = _Stream(entries=deque(maxlen=self.maxlen))
        event_id = self._next_id()
        record = Record(id=event_id, prev=stream.last_id, owner=owner, data=data)
        stream.entries.append(record)
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
            stream = self._streams[sub.owner] = _Stream(
                entries=deque(maxlen=self.maxlen), touched=float("inf")
            )
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
            >>> # await broker.aclose()   # at application shutdown
        """
        if self._closed:
            return
        self._closed = True
        for stream in self._streams.values():
            for sub in list(stream.subs):
                sub._end()
        self._streams.clear()
