"""Run liveness: a producer announces a run and keeps it visibly alive."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._errors import BrokerClosedError
from ._json import encode_event
from ._types import RUN_FINISHED, RUN_HEARTBEAT, RUN_STARTED

if TYPE_CHECKING:
    from ._identity import UserLike
    from ._types import Broker

__all__ = ["RunHandle", "check_heartbeat"]

logger = logging.getLogger("userscope.events")


def check_heartbeat(interval: float, timeout: float) -> None:
    """Refuse heartbeat settings that would report live runs as lost."""
    if not (math.isfinite(interval) and interval > 0):
        raise ValueError(f"heartbeat_interval must be a positive number of seconds, got {interval}")
    if not (math.isfinite(timeout) and timeout >= 2 * interval):
        raise ValueError(
            f"heartbeat_timeout={timeout} must be at least twice heartbeat_interval={interval} "
            "so that one late heartbeat does not report a live run as lost"
        )


class RunHandle:
    """Announces a run on a user's stream and publishes heartbeats while it is alive.

    Entering publishes ``{"type": "run_started", "run_id", "heartbeat_timeout"}``; a
    background task then publishes ``run_heartbeat`` every ``heartbeat_interval``
    seconds; leaving publishes ``run_finished`` with ``status`` ``"ok"``, ``"error"``
    or ``"cancelled"``. If the producing process dies, heartbeats stop and every
    subscriber of the user yields a synthetic ``run_lost`` event once
    ``heartbeat_timeout`` has passed. Get one from ``broker.run(user, run_id)``.

    Example:
        >>> import asyncio, userscope as us
        >>> from userscope.events import InMemoryBroker
        >>> async def main():
        ...     broker = InMemoryBroker()
        ...     ctx = us.UserExecutionContext(user_id="alice", thread_id="t")
        ...     async with broker.run(ctx, "run-1") as run:
        ...         await run.publish({"type": "token", "text": "hi"})
        ...     await broker.aclose()
        >>> asyncio.run(main())
    """

    def __init__(
        self,
        broker: Broker,
        user: UserLike,
        run_id: str,
        heartbeat_interval: float,
        heartbeat_timeout: float,
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(run_id, str) or not run_id or len(run_id) > 256:
            raise ValueError("run_id must be a non-empty string of at most 256 characters")
        check_heartbeat(heartbeat_interval, heartbeat_timeout)
        stamped = dict(fields or {})
        reserved = sorted(set(stamped) & {"type", "run_id"})
        if reserved:
            raise ValueError(
                f"fields may not set {reserved}: the run sets them itself "
                "(pass run_id as the second argument, types in each published event)"
            )
        encode_event(stamped, 1 << 20)  # JSON only: refused here, not at the first publish
        self._broker = broker
        self._user = user
        self.run_id = run_id
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.fields: dict[str, Any] = stamped
        self._task: asyncio.Task[None] | None = None

    def _event(self, kind: str, **extra: Any) -> dict[str, Any]:
        return {**self.fields, "type": kind, "run_id": self.run_id, **extra}

    async def publish(self, event: Mapping[str, Any]) -> str:
        """Publish an event of this run (``run_id`` and ``fields`` are added when missing).

        Args:
            event: a JSON object.

        Returns:
            The event id.

        Example:
            >>> import asyncio, userscope as us
            >>> from userscope.events import InMemoryBroker
            >>> async def main():
            ...     broker = InMemoryBroker()
            ...     ctx = us.UserExecutionContext(user_id="alice", thread_id="t")
            ...     async with broker.run(ctx, "r1", fields={"agent": "coder"}) as run:
            ...         event_id = await run.publish({"type": "token", "text": "hi"})
            ...         async with broker.subscribe(ctx, after="0-0") as sub:
            ...             items = [await anext(sub), await anext(sub)]
            ...     await broker.aclose()
            ...     return items[-1].id == event_id, items[-1].payload
            >>> asyncio.run(main())
            (True, {'agent': 'coder', 'type': 'token', 'text': 'hi', 'run_id': 'r1'})
        """
        payload = {**self.fields, **event} if self.fields else dict(event)
        payload.setdefault("run_id", self.run_id)
        return await self._broker.publish(self._user, payload)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                await self._broker.publish(
                    self._user,
                    self._event(RUN_HEARTBEAT, heartbeat_timeout=self.heartbeat_timeout),
                )
            except asyncio.CancelledError:
                raise
            except BrokerClosedError:
                return  # the broker is shutting down: nothing left to keep alive
            except Exception:  # broker briefly unreachable: keep beating, subscribers decide
                logger.warning("heartbeat of run %s failed", self.run_id, exc_info=True)

    async def __aenter__(self) -> RunHandle:
        await self._broker.publish(
            self._user, self._event(RUN_STARTED, heartbeat_timeout=self.heartbeat_timeout)
        )
        self._task = asyncio.create_task(self._beat(), name=f"userscope-heartbeat-{self.run_id}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        extra: dict[str, str] = {}
        if exc is None:
            status = "ok"
        elif isinstance(exc, asyncio.CancelledError):
            status = "cancelled"
        else:
            status, extra = "error", {"error": type(exc).__name__}
        try:
            await self._broker.publish(
                self._user, self._event(RUN_FINISHED, status=status, **extra)
            )
        except Exception:
            if exc is None:
                raise  # the run itself succeeded: the caller must learn the end was not sent
            # never mask the run's own exception; subscribers will see run_lost instead
            logger.warning("could not publish run_finished of run %s", self.run_id, exc_info=True)
