"""What the compiled core does in C with no pure-Python equivalent; this file is its pure twin.

The compiled build replaces this module with ``_speedups.pyx`` (same names, same
behaviour, both pass the same tests); the pure runtime imports this file. Keep the two
in step: a name added here is added there.

* :data:`Lock` — the runtime's lock: a plain :class:`threading.Lock` here; in C, a lock
  whose ``acquire()``/``release()`` skip the argument parsing of ``threading.Lock``
  (about 400 instructions per acquire) and that typed callers call directly.
* :class:`LockBase` — what the lock-order checker's lock subclasses, so that in the
  compiled build a checked lock goes wherever a :data:`Lock` goes.
* :func:`thread_ident`, :func:`call` — ``threading.get_ident()`` and
  ``function(*args, **kwargs)``; in C, direct C API calls (no bound method, no copy of
  ``kwargs``) that the compiled providers call as C functions.
* :func:`ready` and :data:`DONE` — awaitables already done, which the async scope
  methods hand back when nothing suspends (compiled: no coroutine frame at all).
* :func:`var_get`, :func:`var_set`, :func:`var_reset` — ``ContextVar.get``/``set``/
  ``reset`` called with the variable first (here: the methods themselves; compiled:
  C calls).
* :func:`screened` — the FastAPI adapter's WebSocket receive guard in its steady state:
  a small text message comes back as it is, anything else goes to a slow path
  (compiled: a C awaitable, no coroutine frame per message); :func:`watched` — the same
  guard for credentials that expire: the receive also registers with the connection's
  expiry deadline (compiled: the same C awaitable);
* :func:`agen_step` — an async generator finalizer's first step, run until it suspends
  (compiled: through the C slots, no bound method calls);
* :func:`monotonic` — :func:`time.monotonic` (compiled: ``clock_gettime`` in C, the same
  double); :func:`context_slot` — a context's key in a session table (compiled: read
  from the model's fields without its attribute hook); :func:`dict_get` —
  ``mapping.get(key)`` (compiled: a C lookup for a dict or an ``OrderedDict``).

Example:
    >>> from userscope import _speedups
    >>> lock = _speedups.Lock()
    >>> lock.acquire()
    True
    >>> lock.locked()
    True
    >>> lock.release()
    >>> with lock:
    ...     pass
"""

from __future__ import annotations

import asyncio.tasks
import os
import threading
import time
from asyncio import CancelledError, _get_running_loop, current_task
from collections.abc import Awaitable, Callable, Generator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

__all__ = [
    "DONE",
    "DeadlineSlots",
    "Lock",
    "LockBase",
    "agen_step",
    "call",
    "child_context",
    "context_slot",
    "dict_get",
    "monotonic",
    "ready",
    "request_id",
    "running_loop",
    "running_task",
    "screened",
    "thread_ident",
    "var_get",
    "var_reset",
    "var_set",
    "watched",
]

T = TypeVar("T")

Lock: Any = threading.Lock
"""Make a runtime lock: non-reentrant, ``acquire(blocking=True, timeout=-1)``,
``release()``, ``locked()``, a context manager."""


class LockBase:
    """Base class of :class:`~userscope.container._locks.CheckedLock` (nothing here).

    Example:
        >>> from userscope._speedups import LockBase
        >>> isinstance(LockBase(), LockBase)
        True
    """

    __slots__ = ()


thread_ident = threading.get_ident
"""The current thread's identifier (``threading.get_ident``)."""


def call(function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``function(*args, **kwargs)``; compiled, ``kwargs`` is handed over without a copy.

    Example:
        >>> from userscope._speedups import call
        >>> call(dict, (), {"a": 1})
        {'a': 1}
    """
    return function(*args, **kwargs)


async def ready(value: T) -> T:
    """An awaitable already done: awaiting it gives ``value`` without suspending.

    Pure: a coroutine (the cheapest such object in Python). Compiled: a small object of
    the extension's ``Ready`` type, taken from a free list, with no coroutine frame; it
    has a coroutine's ``send``/``throw``/``close`` and is registered as a
    ``collections.abc.Coroutine``, so ``asyncio.create_task()`` takes either.

    Example:
        >>> import asyncio
        >>> from userscope._speedups import ready
        >>> async def main():
        ...     return await ready(42)
        >>> asyncio.run(main())
        42
    """
    return value


class _Done:
    """The type of :data:`DONE`: awaiting it gives ``None`` at once, all in C (its
    ``__await__`` hands back an exhausted iterator)."""

    __slots__ = ()

    if TYPE_CHECKING:

        def __await__(self) -> Generator[Any, None, None]: ...

    else:
        __await__ = iter(()).__iter__


DONE: Awaitable[None] = _Done()
"""An awaitable already done with ``None`` (the async scope exit's common result).

Example:
    >>> import asyncio
    >>> from userscope._speedups import DONE
    >>> async def main():
    ...     return await DONE
    >>> asyncio.run(main()) is None
    True
"""


var_get: Callable[[ContextVar[Any]], Any] = ContextVar.get
"""``var_get(var)`` is ``var.get()``.

Example:
    >>> from contextvars import ContextVar
    >>> from userscope._speedups import var_get, var_reset, var_set
    >>> var = ContextVar("example", default=None)
    >>> token = var_set(var, 1); var_get(var)
    1
    >>> var_reset(var, token); var_get(var) is None
    True
"""

var_set: Callable[[ContextVar[Any], Any], Any] = ContextVar.set
"""``var_set(var, value)`` is ``var.set(value)`` (returns the token)."""

var_reset: Callable[[ContextVar[Any], Any], None] = ContextVar.reset
"""``var_reset(var, token)`` is ``var.reset(token)``."""


_new = object.__new__
_set = object.__setattr__  # a frozen model refuses its own __setattr__
_COPIED: frozenset[str] = frozenset({"request_id", "metadata"})  # set anew in a child


def child_context(ctx: T) -> T:
    """``ctx`` (a ``UserExecutionContext``) copied with a fresh :func:`request_id`: what
    ``ctx.for_request()`` gives with no arguments, once per WebSocket message.

    Every field was validated when ``ctx`` was built and a generated id is valid by
    construction, so the fields are copied rather than validated again; the metadata (and
    a subclass's extra and private state) is copied too, so that a child never shares it
    with its parent. Built the way pydantic's own ``__copy__`` builds a copy (its
    documented instance attributes set directly); compiled, the same steps as C calls.

    Example:
        >>> import userscope as us
        >>> from userscope._speedups import child_context
        >>> ctx = us.UserExecutionContext(user_id="alice", thread_id="t-1", request_id="r-1")
        >>> child = child_context(ctx)
        >>> (child.user_id, child.thread_id, child.request_id != "r-1", child == ctx)
        ('alice', 't-1', True, False)
    """
    child_of: Any = ctx  # a pydantic model: its documented instance attributes
    child = _new(type(ctx))
    fields = child_of.__dict__.copy()
    fields["request_id"] = request_id()
    fields["metadata"] = dict(fields["metadata"])
    _set(child, "__dict__", fields)
    _set(child, "__pydantic_fields_set__", child_of.__pydantic_fields_set__ | _COPIED)
    extra, private = child_of.__pydantic_extra__, child_of.__pydantic_private__
    _set(child, "__pydantic_extra__", None if extra is None else dict(extra))
    _set(child, "__pydantic_private__", None if private is None else dict(private))
    return child


def request_id() -> str:
    """A random UUID4 as 32 lowercase hex digits (what ``uuid.uuid4().hex`` gives, without
    building a ``UUID``); compiled, from a pool of ``os.urandom()`` bytes refilled 4 KiB at
    a time (one system call per 256 ids), which a forked child starts afresh.

    Example:
        >>> from userscope._speedups import request_id
        >>> rid = request_id()
        >>> len(rid), rid[12], rid[16] in "89ab", rid != request_id()
        (32, '4', True, True)
    """
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return raw.hex()


running_loop: Callable[[], Any] = _get_running_loop
"""``asyncio._get_running_loop()``: this thread's running event loop, or ``None``
(compiled, on Python 3.11: cached per running-loop holder, which skips asyncio's
``getpid()`` system call on each lookup).

Example:
    >>> import asyncio
    >>> from userscope._speedups import running_loop
    >>> async def main():
    ...     return running_loop() is asyncio.get_running_loop()
    >>> asyncio.run(main()), running_loop()
    (True, None)
"""

# the running task of each loop (what `asyncio.current_task()` reads; a Python function
# before 3.12), where this Python keeps it in a dict
_tasks_by_loop = getattr(asyncio.tasks, "_current_tasks", None)
_TASKS: dict[Any, Any] | None = _tasks_by_loop if isinstance(_tasks_by_loop, dict) else None


def running_task() -> Any:
    """``asyncio.current_task()``, but ``None`` off a running loop rather than an error:
    the task of this thread's running loop, read from asyncio's loop-to-task dict where
    it has an entry, else asyncio's own answer (a loop callback: ``None``).

    Example:
        >>> import asyncio
        >>> from userscope._speedups import running_task
        >>> async def main():
        ...     return running_task() is asyncio.current_task()
        >>> asyncio.run(main()), running_task()
        (True, None)
    """
    loop = _get_running_loop()
    if loop is None:
        return None
    if _TASKS is not None:
        task = _TASKS.get(loop)
        if task is not None:
            return task
    return current_task(loop)


monotonic: Callable[[], float] = time.monotonic
"""``time.monotonic()``.

Example:
    >>> from userscope._speedups import monotonic
    >>> monotonic() <= monotonic()
    True
"""


def context_slot(ctx: Any) -> Any:
    """A context's key in a session table: ``user_id`` alone without a tenant, else
    ``(tenant_id, user_id)`` (what ``table_slot(ctx.tenant_id, ctx.user_id)`` gives).

    Example:
        >>> import userscope as us
        >>> from userscope._speedups import context_slot
        >>> context_slot(us.UserExecutionContext(user_id="a", thread_id="t"))
        'a'
        >>> context_slot(us.UserExecutionContext(user_id="a", thread_id="t", tenant_id="x"))
        ('x', 'a')
    """
    tenant_id = ctx.tenant_id
    return ctx.user_id if tenant_id is None else (tenant_id, ctx.user_id)


def dict_get(mapping: Any, key: object) -> Any:
    """``mapping.get(key)``.

    Example:
        >>> from collections import OrderedDict
        >>> from userscope._speedups import dict_get
        >>> dict_get(OrderedDict(a=1), "a"), dict_get({}, "a")
        (1, None)
    """
    return mapping.get(key)


async def screened(
    awaitable: Awaitable[Any], small: int, slow: Callable[[Any], Awaitable[Any]]
) -> Any:
    """Await ``awaitable`` (a server's ``receive()``): its message itself when it is a
    dict whose ``"text"`` is a str of at most ``small`` characters, else what ``await
    slow(message)`` gives.

    Example:
        >>> import asyncio
        >>> from userscope._speedups import screened
        >>> async def receive():
        ...     return {"type": "websocket.receive", "text": "hi"}
        >>> async def slow(message):
        ...     return {"type": "websocket.disconnect", "code": 1009}
        >>> asyncio.run(screened(receive(), 2, slow))["text"]
        'hi'
        >>> asyncio.run(screened(receive(), 1, slow))["code"]
        1009
    """
    message = await awaitable
    if type(message) is dict:
        text = message.get("text")
        if type(text) is str and len(text) <= small:
            return message
    return await slow(message)


class DeadlineSlots:
    """The fields of a connection's expiry deadline that its watched receives read and
    write (:func:`watched`): the timer's ``handle`` (``None`` once it ran or was
    dropped), the ``waiter`` task registered by the pending receive, and the task the
    deadline ``fired`` on, until that receive took its cancellation back. The FastAPI
    adapter's ``ExpiryDeadline`` subclasses it (compiled: an extension type, whose
    fields the C receive reads directly).

    Example:
        >>> from userscope._speedups import DeadlineSlots
        >>> class Deadline(DeadlineSlots):
        ...     __slots__ = ()
        >>> deadline = Deadline()
        >>> deadline.handle = deadline.waiter = deadline.fired = None
        >>> deadline.waiter is None
        True
    """

    __slots__ = ("fired", "handle", "waiter")

    handle: Any
    waiter: Any
    fired: Any


async def watched(
    deadline: DeadlineSlots,
    awaitable: Awaitable[Any],
    small: int,
    slow: Callable[[Any], Awaitable[Any]],
    expired: Callable[[], Awaitable[Any]],
    fallback: Callable[[], Awaitable[Any]],
) -> Any:
    """Await ``awaitable`` (a server's ``receive()``) watched by ``deadline`` (the
    connection's expiry deadline, an ``ExpiryDeadline`` of the FastAPI adapter), then
    screen the message as :func:`screened` does.

    When the deadline's timer is pending (``deadline.handle``) and no other receive is
    registered (``deadline.waiter``), the current task registers as the waiter, noting
    its ``cancelling()`` count. If the timer fires meanwhile it cancels this task and
    marks it ``deadline.fired``: the receive takes its own cancellation back
    (``Task.uncancel``) and the outcome is ``await expired()``. A cancellation from
    anyone else, alone or together with the expiry, and any other error propagate.
    Otherwise (the timer already ran, another receive is pending) ``awaitable`` is
    closed unstarted and the message is ``await fallback()``'s, screened. Nothing is
    registered before the first step; closed (or thrown into) before it, it leaves
    ``awaitable`` as it is, as any coroutine that never started leaves its arguments.

    Example:
        >>> import asyncio
        >>> from userscope._speedups import watched
        >>> from userscope._speedups import DeadlineSlots
        >>> deadline = DeadlineSlots()  # a timer still pending, no receive registered
        >>> deadline.handle, deadline.waiter, deadline.fired = object(), None, None
        >>> async def receive():
        ...     return {"type": "websocket.receive", "text": "hi"}
        >>> async def slow(message):
        ...     return {"type": "websocket.disconnect", "code": 1009}
        >>> async def expired():
        ...     return {"type": "websocket.disconnect", "code": 1008}
        >>> asyncio.run(watched(deadline, receive(), 2, slow, expired, receive))["text"]
        'hi'
    """
    task: Any
    if (
        deadline.handle is not None
        and deadline.waiter is None
        and (task := running_task()) is not None
    ):
        base = task.cancelling()
        deadline.waiter = task
        try:
            message = await awaitable
        except BaseException as exc:
            deadline.waiter = None
            if deadline.fired is not task:
                raise  # not the expiry: someone else's cancellation, or an error
            deadline.fired = None
            if task.uncancel() > base or not isinstance(exc, CancelledError):
                raise  # another cancellation came too: it wins over the expiry
            return await expired()
        deadline.waiter = None
        if deadline.fired is task:  # the server's receive swallowed the cancellation
            deadline.fired = None
            task.uncancel()
            return await expired()
    else:
        close = getattr(awaitable, "close", None)
        if close is not None:
            close()  # never started: the fallback receives instead
        message = await fallback()
    if type(message) is dict:
        text = message.get("text")
        if type(text) is str and len(text) <= small:
            return message
    return await slow(message)


def agen_step(agen: Any, exc: BaseException | None) -> tuple[bool, Any, Any] | None:
    """Start ``agen.__anext__()`` (or ``agen.athrow(exc)`` when ``exc`` is not ``None``)
    and run it until it first suspends.

    Returns ``None`` when the generator finished (``StopAsyncIteration``),
    ``(True, step, yielded)`` when the step suspended (the caller awaits the rest of
    ``step``, which yielded ``yielded``), ``(False, None, None)`` when the generator
    yielded again. Anything else the step raised propagates.

    Example:
        >>> from userscope._speedups import agen_step
        >>> async def bridge():
        ...     yield "open"
        ...     print("cleanup")
        >>> agen = bridge()
        >>> agen.asend(None).send(None)
        Traceback (most recent call last):
        StopIteration: open
        >>> agen_step(agen, None) is None
        cleanup
        True
    """
    step = agen.__anext__() if exc is None else agen.athrow(exc)
    try:
        yielded = step.send(None)
    except StopAsyncIteration:
        return None
    except StopIteration:
        return (False, None, None)
    return (True, step, yielded)
