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
  (compiled: a C awaitable, no coroutine frame per message);
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

import threading
import time
from collections.abc import Awaitable, Callable, Generator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

__all__ = [
    "DONE",
    "Lock",
    "LockBase",
    "agen_step",
    "call",
    "context_slot",
    "dict_get",
    "monotonic",
    "ready",
    "screened",
    "thread_ident",
    "var_get",
    "var_reset",
    "var_set",
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
