"""`_speedups.watched`: a WebSocket receive under its connection's expiry deadline.

The FastAPI adapter's receive guard for credentials that expire (compiled: the same C
awaitable as `screened`; pure: a coroutine). These tests drive it directly with a
hand-made deadline and fire the expiry by hand, as `ExpiryDeadline._expire` does: mark
the waiting task ``fired`` and cancel it. The adapter-level behaviour (real timers, the
1008 close, uvloop, a real server) is in tests/adapters/test_fastapi_expiry_deadline.py.
Runs in both modes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

import pytest

import userscope
from userscope._speedups import DeadlineSlots, watched

TEXT = {"type": "websocket.receive", "text": "hello", "bytes": None}
BIG = {"type": "websocket.receive", "text": "x" * 100, "bytes": None}
REFUSED = {"type": "websocket.disconnect", "code": 1009}
EXPIRED = {"type": "websocket.disconnect", "code": 1008}
FALLBACK = {"type": "websocket.receive", "text": "from the fallback", "bytes": None}


class Deadline(DeadlineSlots):
    """A deadline whose timer is pending (``handle`` set) and has no waiter yet."""

    __slots__ = ()

    def __init__(self, pending: bool = True) -> None:
        self.handle = object() if pending else None
        self.waiter = None
        self.fired = None

    def fire(self) -> None:
        """What the timer does at expiry: cancel the registered receive's task."""
        task = self.waiter
        assert task is not None, "no receive is registered"
        self.handle = None
        self.fired = task
        task.cancel()


class Receive:
    """A server's receive: suspends until released, then hands out ``message``."""

    def __init__(self, message: Any = TEXT, *, swallow: bool = False) -> None:
        self.message = message
        self.swallow = swallow  # return the message even when cancelled
        self.released = asyncio.Event()
        self.started = asyncio.Event()
        self.cancelled = 0

    async def __call__(self) -> Any:
        self.started.set()
        try:
            await self.released.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            if not self.swallow:
                raise
        return self.message


class Calls:
    """The slow path, the expiry outcome and the fallback, recording their calls."""

    def __init__(self) -> None:
        self.slow: list[Any] = []
        self.expired = 0
        self.fallback = 0

    async def on_slow(self, message: Any) -> Any:
        self.slow.append(message)
        return REFUSED

    async def on_expired(self) -> Any:
        self.expired += 1
        return EXPIRED

    async def on_fallback(self) -> Any:
        self.fallback += 1
        return FALLBACK


def watch(deadline: Deadline, receive: Receive, calls: Calls, small: int = 5) -> Any:
    return watched(deadline, receive(), small, calls.on_slow, calls.on_expired, calls.on_fallback)


async def test_the_receive_registers_while_pending_and_leaves_after() -> None:
    deadline, receive, calls = Deadline(), Receive(), Calls()
    task = asyncio.create_task(watch(deadline, receive, calls))
    await receive.started.wait()
    assert deadline.waiter is task  # registered while it waits
    receive.released.set()
    assert await task is TEXT
    assert deadline.waiter is None
    assert deadline.fired is None
    assert (calls.slow, calls.expired, calls.fallback) == ([], 0, 0)


async def test_nothing_registers_before_the_first_step() -> None:
    deadline, receive, calls = Deadline(), Receive(), Calls()
    inner = receive()
    awaitable = watched(deadline, inner, 5, calls.on_slow, calls.on_expired, calls.on_fallback)
    assert asyncio.iscoroutine(awaitable)
    assert (type(awaitable).__name__ == "Screened") is userscope.COMPILED
    assert deadline.waiter is None
    awaitable.close()
    assert deadline.waiter is None
    assert not receive.started.is_set()
    inner.close()  # never awaited: as any coroutine handed to one that never started


async def test_a_message_that_is_not_a_small_text_goes_to_the_slow_path() -> None:
    deadline, calls = Deadline(), Calls()
    receive = Receive(BIG)
    receive.released.set()
    assert await watch(deadline, receive, calls) is REFUSED
    assert calls.slow == [BIG]
    assert deadline.waiter is None


async def test_the_expiry_ends_the_receive_with_the_expired_outcome() -> None:
    deadline, receive, calls = Deadline(), Receive(), Calls()
    task = asyncio.create_task(watch(deadline, receive, calls))
    await receive.started.wait()
    deadline.fire()
    assert await task is EXPIRED  # the cancellation was the expiry's: taken back
    assert task.cancelling() == 0
    assert not task.cancelled()
    assert (deadline.waiter, deadline.fired) == (None, None)
    assert (receive.cancelled, calls.expired, calls.slow) == (1, 1, [])


async def test_another_cancellation_alone_propagates() -> None:
    deadline, receive, calls = Deadline(), Receive(), Calls()
    task = asyncio.create_task(watch(deadline, receive, calls))
    await receive.started.wait()
    task.cancel()  # the server shutting down, say
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (deadline.waiter, deadline.fired) == (None, None)
    assert deadline.handle is not None  # the deadline itself is untouched
    assert calls.expired == 0


async def test_another_cancellation_together_with_the_expiry_wins() -> None:
    deadline, receive, calls = Deadline(), Receive(), Calls()
    task = asyncio.create_task(watch(deadline, receive, calls))
    await receive.started.wait()
    task.cancel()  # someone else's, first
    deadline.fire()  # then the expiry, before the task ran again
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelling() == 1  # the expiry's was taken back, the other one stands
    assert (deadline.waiter, deadline.fired) == (None, None)
    assert calls.expired == 0


async def test_a_cancellation_already_counted_before_the_receive_still_expires() -> None:
    """A task that caught a cancellation earlier without `uncancel()` keeps a count: the
    expiry is compared with the count noted at registration, not with zero."""
    deadline, receive, calls = Deadline(), Receive(), Calls()
    started = asyncio.Event()

    async def handler() -> Any:
        try:
            started.set()
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass  # swallowed, still counted
        return await watch(deadline, receive, calls)

    task = asyncio.create_task(handler())
    await started.wait()
    task.cancel()
    await receive.started.wait()
    assert task.cancelling() == 1
    deadline.fire()
    assert await task is EXPIRED
    assert task.cancelling() == 1


async def test_a_receive_that_swallows_the_expiry_still_ends_as_expired() -> None:
    deadline, calls = Deadline(), Calls()
    receive = Receive(TEXT, swallow=True)
    task = asyncio.create_task(watch(deadline, receive, calls))
    await receive.started.wait()
    deadline.fire()
    assert await task is EXPIRED  # its message is dropped: the credentials expired
    assert task.cancelling() == 0
    assert (deadline.waiter, deadline.fired) == (None, None)


@pytest.mark.parametrize("why", ["timer already ran", "another receive is pending"])
async def test_without_the_deadline_the_fallback_receives_and_is_screened(why: str) -> None:
    deadline, receive, calls = Deadline(pending=why != "timer already ran"), Receive(), Calls()
    other = object()
    if why == "another receive is pending":
        deadline.waiter = other
    message = await watch(deadline, receive, calls, small=len("from the fallback"))
    assert message is FALLBACK
    assert calls.fallback == 1
    assert not receive.started.is_set()  # closed unstarted: no warning, no receive
    assert deadline.waiter is (other if why == "another receive is pending" else None)
    refused = await watch(deadline, Receive(), calls, small=3)  # screened like any other
    assert refused is REFUSED
    assert calls.slow == [FALLBACK]


async def test_errors_propagate_and_leave_the_deadline() -> None:
    async def broken() -> Any:
        raise OSError("the connection broke")

    deadline, calls = Deadline(), Calls()
    with pytest.raises(OSError, match="connection broke"):
        await watched(deadline, broken(), 5, calls.on_slow, calls.on_expired, calls.on_fallback)
    assert (deadline.waiter, deadline.fired) == (None, None)


class Pause:
    """Suspends once (yields ``"paused"``), with no event loop needed."""

    def __await__(self) -> Generator[str, None, None]:
        yield "paused"


async def test_closing_a_registered_receive_leaves_the_deadline() -> None:
    steps: list[str] = []

    async def receive() -> Any:
        try:
            await Pause()
        finally:
            steps.append("receive closed")
        return TEXT

    deadline, calls = Deadline(), Calls()
    task = asyncio.current_task()
    assert task is not None
    awaitable = watched(deadline, receive(), 5, calls.on_slow, calls.on_expired, calls.on_fallback)
    assert awaitable.send(None) == "paused"  # stepped by hand, inside this task
    assert deadline.waiter is task
    awaitable.close()
    assert steps == ["receive closed"]
    assert deadline.waiter is None
    awaitable.close()  # again: nothing left
    assert calls.expired == 0


async def test_a_throw_before_the_first_step_raises_and_registers_nothing() -> None:
    deadline, receive, calls = Deadline(), Receive(), Calls()
    inner = receive()
    awaitable = watched(deadline, inner, 5, calls.on_slow, calls.on_expired, calls.on_fallback)
    with pytest.raises(asyncio.CancelledError):
        awaitable.throw(asyncio.CancelledError())
    assert deadline.waiter is None
    assert not receive.started.is_set()
    inner.close()
