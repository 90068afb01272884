"""What every broker shares: the open check, ``subscribe`` and ``run`` (internal)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from userscope._durations import Duration, to_seconds

from ._errors import BrokerClosedError
from ._identity import KeyDeriver, UserLike, as_verified
from ._runs import RunHandle
from ._subscription import Backend, Subscription
from ._types import Broker, parse_after

__all__ = ["BrokerBase"]


class BrokerBase(Backend, Broker):
    """Base of :class:`InMemoryBroker` and :class:`RedisBroker` (internal).

    A broker derives each user's stream from the verified identity with ``_keys``,
    implements ``publish`` and ``aclose`` and provides the subscription backend
    (``_attach``, ``_detach``, ``_rewind``); subscribing and announcing runs work the
    same way on every broker.
    """

    _keys: KeyDeriver
    _closed: bool
    buffer_limit: int
    buffer_bytes: int
    heartbeat_interval: float
    heartbeat_timeout: float

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerClosedError(type(self).__name__)

    def subscribe(self, user: UserLike, after: str | None = None) -> Subscription:
        """Subscribe to the user's events.

        Args:
            user: the verified identity.
            after: resume after this event id (the last one the client got);
                ``"0-0"`` (:data:`BEGINNING`) for the whole retained history;
                ``None`` for only the events published after attaching.

        Returns:
            A :class:`Subscription` (async iterator of :class:`Delivery` / :class:`Gap`).

        Example:
            >>> import asyncio, userscope as us
            >>> from userscope.events import InMemoryBroker
            >>> async def main():
            ...     broker = InMemoryBroker()
            ...     ctx = us.UserExecutionContext(user_id="alice", thread_id="t")
            ...     last_id = await broker.publish(ctx, {"n": 1})  # the client got this one
            ...     await broker.publish(ctx, {"n": 2})
            ...     async with broker.subscribe(ctx, after=last_id) as sub:
            ...         item = await anext(sub)  # or: async for item in sub
            ...     await broker.aclose()
            ...     return item.payload
            >>> asyncio.run(main())
            {'n': 2}
        """
        self._check_open()
        identity = as_verified(user)
        return Subscription(
            self,
            identity,
            self._keys.user_hash(identity),
            parse_after(after),
            self.buffer_limit,
            self.buffer_bytes,
        )

    def run(
        self,
        user: UserLike,
        run_id: str,
        *,
        fields: Mapping[str, Any] | None = None,
        heartbeat_interval: Duration | None = None,
        heartbeat_timeout: Duration | None = None,
    ) -> RunHandle:
        """Announce a run and keep it alive with heartbeats (see :class:`RunHandle`).

        ``fields`` (a JSON object) are stamped on every event of the run; the heartbeat
        settings (seconds or ``timedelta``) default to the broker's.

        Example:
            >>> import asyncio, userscope as us
            >>> from userscope.events import BEGINNING, InMemoryBroker
            >>> async def main():
            ...     broker = InMemoryBroker()
            ...     ctx = us.UserExecutionContext(user_id="alice", thread_id="t")
            ...     async with broker.run(ctx, "run-1", fields={"agent": "coder"}) as run:
            ...         await run.publish({"type": "token", "text": "hi"})
            ...     async with broker.subscribe(ctx, after=BEGINNING) as sub:
            ...         kinds = [(await anext(sub)).type for _ in range(3)]
            ...     await broker.aclose()
            ...     return kinds
            >>> asyncio.run(main())
            ['run_started', 'token', 'run_finished']
        """
        return RunHandle(
            self,
            user,
            run_id,
            self.heartbeat_interval
            if heartbeat_interval is None
            else to_seconds("heartbeat_interval", heartbeat_interval),
            self.heartbeat_timeout
            if heartbeat_timeout is None
            else to_seconds("heartbeat_timeout", heartbeat_timeout),
            fields,
        )
