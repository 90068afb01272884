"""The subscription object shared by every broker: ordering, dedupe, gaps, run liveness."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, Self

from ._errors import SubscriptionFailedError
from ._identity import VerifiedUser
from ._json import decode_event
from ._types import (
    BEGINNING,
    RUN_FINISHED,
    RUN_HEARTBEAT,
    RUN_LOST,
    RUN_STARTED,
    BrokerStats,
    Delivery,
    Gap,
    id_key,
)

__all__ = ["Backend", "Lost", "Record", "Subscription"]

logger = logging.getLogger("userscope.events")


@dataclass(frozen=True, slots=True)
class Record:
    """One stored envelope as read from a backend (payload still JSON text)."""

    id: str
    prev: str
    owner: str
    data: str
    size: int  # bytes of ``data`` encoded as UTF-8 (what buffers are bounded by)


@dataclass(frozen=True, slots=True)
class Lost:
    """Backend marker: the subscriber's stream is gone (expired, or the server lost it).

    ``silent``: the backend knows this subscriber had already been handed everything
    the lost stream held, so nothing is missing: reposition without a :class:`Gap`.
    """

    reason: Literal["missing"] = "missing"
    silent: bool = False


class _End:
    pass


_END = _End()


@dataclass(frozen=True, slots=True)
class _Failed:
    error: SubscriptionFailedError


class Backend(Protocol):
    """What a broker provides to its subscriptions (internal)."""

    stats: BrokerStats

    async def _attach(self, sub: Subscription) -> None: ...

    def _detach(self, sub: Subscription) -> None: ...

    async def _rewind(self, sub: Subscription) -> None: ...


DEFAULT_BUFFER_BYTES = 8 << 20
"""Default bound, in bytes of event JSON, of what one subscription buffers (8 MiB)."""


class Subscription:
    """An open subscription to one user's events: an async iterator and context manager.

    Yields :class:`Delivery` and :class:`Gap` items in the user's total order. Enter it
    (``async with``) or start iterating to attach: with ``after=None`` only events
    published after attaching are delivered; with an id, everything after that id.
    The iteration ends when the subscription or its broker is closed.

    Example:
        >>> import asyncio, userscope as us
        >>> from userscope.events import InMemoryBroker
        >>> async def main():
        ...     broker = InMemoryBroker()
        ...     ctx = us.UserExecutionContext(user_id="alice", thread_id="t")
        ...     async with broker.subscribe(ctx) as sub:
        ...         await broker.publish(ctx, {"type": "hello"})
        ...         item = await anext(sub)
        ...     await broker.aclose()
        ...     return item.payload
        >>> asyncio.run(main())
        {'type': 'hello'}
    """

    def __init__(
        self,
        backend: Backend,
        identity: VerifiedUser,
        owner: str,
        after: str | None,
        buffer_limit: int,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
    ) -> None:
        self._backend = backend
        self.identity = identity
        self.owner = owner
        self.requested_after = after
        self._last = BEGINNING if after is None else after
        self._buffer: deque[Record | Lost | _End | _Failed] = deque()
        self._buffer_limit = buffer_limit
        self._buffer_bytes = buffer_bytes
        self._buffered_bytes = 0
        self._wakeup = asyncio.Event()
        self._pending: deque[Delivery | Gap] = deque()
        self._runs: dict[str, tuple[float, str]] = {}
        self.lagged = False
        self.resyncing = False
        self._attached = False
        self._attach_lock = asyncio.Lock()
        self._closed = False

    # -- backend side -------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """``True`` once :meth:`aclose` ran or the broker ended the subscription."""
        return self._closed

    @property
    def last_id(self) -> str:
        """Id of the last stored event yielded (``"0-0"`` before any); resume from it."""
        return self._last

    def _set_position(self, event_id: str) -> None:
        """Backend: fix the resume position when attaching with ``after=None``."""
        self._last = event_id

    def _push(self, item: Record | Lost) -> None:
        """Backend: hand over the next stored envelope (or a loss marker)."""
        if self._closed or self.lagged or self.resyncing:
            return
        size = item.size if isinstance(item, Record) else 0
        if len(self._buffer) >= self._buffer_limit or (
            # bounded in bytes too, but one event always fits (it was accepted at publish)
            self._buffer and self._buffered_bytes + size > self._buffer_bytes
        ):
            # the consumer is slow: stop buffering, re-read the retained history later
            self.lagged = True
            return
        self._buffer.append(item)
        self._buffered_bytes += size
        self._wakeup.set()

    def _fail(self, error: SubscriptionFailedError) -> None:
        """Backend: this subscription failed alone; iteration raises ``error`` next."""
        if self._closed:
            return
        self._buffer.clear()
        self._buffered_bytes = 0
        self._buffer.append(_Failed(error))
        self._wakeup.set()

    def _end(self) -> None:
        """Backend: the broker is closing; iteration stops after buffered items."""
        self._buffer.append(_END)
        self._wakeup.set()

    # -- consumer side ------------------------------------------------------------
    async def _ensure_attached(self) -> None:
        if self._attached:
            return
        async with self._attach_lock:
            if not self._attached and not self._closed:
                await self._backend._attach(self)
                self._attached = True
                self._backend.stats.subscriptions += 1

    async def __aenter__(self) -> Self:
        await self._ensure_attached()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def aclose(self) -> None:
        """Detach from the broker; idempotent. Buffered items are discarded."""
        if self._closed:
            return
        self._closed = True
        if self._attached:
            self._backend._detach(self)
            self._backend.stats.subscriptions -= 1
        self._buffer.clear()
        self._buffered_bytes = 0
        self._wakeup.set()

    def _gap(self, next_id: str | None, reason: Literal["trimmed", "missing"]) -> Gap:
        self._backend.stats.gaps += 1
        return Gap(after=self._last, next_id=next_id, reason=reason)

    def _accept(self, rec: Record) -> None:
        if id_key(rec.id) <= id_key(self._last):
            return  # duplicate of something already yielded (rewind or resume overlap)
        if not hmac.compare_digest(rec.owner, self.owner):
            # never deliver it, but step over it so that the next genuine event
            # (whose predecessor it is) does not look like a gap
            self._last = rec.id
            self._backend.stats.dropped_foreign += 1
            logger.error(
                "dropped event %s whose owner hash does not match the subscriber; "
                "someone wrote into this user's stream outside the broker",
                rec.id,
            )
            return
        try:
            payload = decode_event(rec.data)
        except ValueError:
            self._last = rec.id
            self._backend.stats.dropped_foreign += 1
            logger.error("dropped event %s: stored payload is not a JSON object", rec.id)
            return
        if rec.prev != self._last:
            # the first event of a new incarnation of the stream (it expired, or Redis
            # lost its data) has no predecessor: the old stream is gone, not trimmed
            reason: Literal["trimmed", "missing"] = (
                "missing" if rec.prev == BEGINNING else "trimmed"
            )
            self._pending.append(self._gap(rec.id, reason))
        self._last = rec.id
        self._track_run(rec.id, payload)
        ms = id_key(rec.id)[0]
        self._pending.append(
            Delivery(
                id=rec.id,
                user_hash=rec.owner,
                payload=payload,
                timestamp=ms / 1000,
                size=rec.size,
            )
        )

    def _track_run(self, event_id: str, payload: dict[str, Any]) -> None:
        kind = payload.get("type")
        run_id = payload.get("run_id")
        if not isinstance(run_id, str):
            return
        if kind in (RUN_STARTED, RUN_HEARTBEAT):
            timeout = payload.get("heartbeat_timeout")
            if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0:
                self._runs[run_id] = (asyncio.get_running_loop().time() + timeout, event_id)
        elif kind in (RUN_FINISHED, RUN_LOST):
            self._runs.pop(run_id, None)

    def _expire_runs(self) -> None:
        now = asyncio.get_running_loop().time()
        for run_id, (deadline, seen) in sorted(self._runs.items(), key=lambda kv: kv[1][0]):
            if deadline <= now:
                del self._runs[run_id]
                self._pending.append(
                    Delivery(
                        id=self._last,
                        user_hash=self.owner,
                        payload={"type": RUN_LOST, "run_id": run_id, "last_seen_id": seen},
                        timestamp=time.time(),
                        synthetic=True,
                    )
                )

    async def __anext__(self) -> Delivery | Gap:
        await self._ensure_attached()
        while True:
            if self._pending:
                item = self._pending.popleft()
                if isinstance(item, Delivery):
                    self._backend.stats.delivered += 1
                return item
            if self._closed:
                raise StopAsyncIteration
            if self._buffer:
                head = self._buffer.popleft()
                if isinstance(head, _End):
                    self._closed = True
                    self._buffer.clear()
                    raise StopAsyncIteration
                if isinstance(head, _Failed):
                    await self.aclose()
                    raise head.error
                if isinstance(head, Lost):
                    if self._last != BEGINNING and not head.silent:
                        self._pending.append(self._gap(None, head.reason))
                    self._last = BEGINNING
                else:
                    self._buffered_bytes -= head.size
                    self._accept(head)
                continue
            self._expire_runs()
            if self._pending:
                continue
            if self.lagged:
                # we dropped envelopes while the consumer was slow: re-read them from
                # the retained history (a Gap follows only if they were trimmed meanwhile)
                self.lagged = False
                await self._backend._rewind(self)
                continue
            self._wakeup.clear()
            timeout = None
            if self._runs:
                nearest = min(deadline for deadline, _ in self._runs.values())
                timeout = max(0.0, nearest - asyncio.get_running_loop().time())
            try:
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()
            except TimeoutError:
                pass
