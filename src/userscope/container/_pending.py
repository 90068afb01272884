"""A creation in flight, and how its one outcome reaches every waiter.

While a scoped instance is being built (outside any lock), its scope holds a
:class:`PendingCreation`. A concurrent resolver of the same instance waits on it,
whatever thread or event loop it runs in: a thread on a :class:`threading.Event`, a
task on a future of its own loop, woken with ``call_soon_threadsafe`` when the outcome
comes from another thread. The outcome is exactly one of: the instance, the factory's
exception, :class:`~userscope.ScopeClosedError` (the scope closed first), or
:data:`RETRY` (the creating task was cancelled: a waiter builds the instance itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any, Final

from userscope._speedups import running_loop

__all__ = ["RETRY", "PendingCreation"]

RETRY: Final[Any] = object()
"""Outcome of a creation whose creator was cancelled: the waiter creates it again."""


class PendingCreation:
    """One instance being created (internal; mutated under its session's lock).

    Made by the first waiter (an uncontended creation never allocates one).

    Attributes:
        thread: ident of the thread creating it synchronously (``None``: a task does).
        task: the asyncio task creating it, when created asynchronously.
        done: whether the outcome is known.
        value: the instance, or :data:`RETRY`.
        error: the failure, when it failed.
    """

    thread: int | None
    task: asyncio.Task[Any] | None
    done: bool
    value: Any
    error: BaseException | None
    event: threading.Event | None
    futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] | None

    def __init__(self, thread: int | None, task: asyncio.Task[Any] | None) -> None:
        # every field set here, none as a class default: the compiled build makes this
        # an extension type (_pending.pxd), whose fields cannot have class defaults
        self.thread = thread
        self.task = task
        self.done = False
        self.value = None
        self.error = None
        self.event = None
        self.futures = None

    # -- waiters register under the session lock ------------------------------------
    def sync_waiter(self) -> threading.Event:
        """An event set when the outcome is known (lock held)."""
        if self.event is None:
            self.event = threading.Event()
        return self.event

    def async_waiter(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
        """A future of ``loop`` that gets the outcome (lock held)."""
        future = loop.create_future()
        if self.futures is None:
            self.futures = []
        self.futures.append((loop, future))
        return future

    # -- the creator settles under the lock, then wakes after releasing it ----------
    def settle(self, value: Any, error: BaseException | None) -> bool:
        """Record the outcome (lock held); whether anyone waits (then call :meth:`wake`)."""
        self.done = True
        self.value = value
        self.error = error
        return self.event is not None or bool(self.futures)

    def wake(self) -> None:
        """Deliver the outcome to every waiter, in its own thread or event loop."""
        if self.event is not None:
            self.event.set()
        futures, self.futures = self.futures or [], None
        here = running_loop()
        for loop, future in futures:
            if loop is here:
                _deliver(future, self.value, self.error)
                continue
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody left to wake
                loop.call_soon_threadsafe(_deliver, future, self.value, self.error)

    def outcome(self) -> Any:
        """The instance (or :data:`RETRY`), or raise the failure (after the wait)."""
        if self.error is not None:
            raise self.error
        return self.value


def _deliver(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():  # the waiter was cancelled meanwhile
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)
