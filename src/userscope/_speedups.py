"""What the compiled core does in C with no pure-Python equivalent; this file is its pure twin.

The compiled build replaces this module with ``_speedups.pyx`` (same names, same
behaviour, both pass the same tests); the pure runtime imports this file. Keep the two
in step: a name added here is added there.

* :data:`Lock` — the runtime's lock: a plain :class:`threading.Lock` here; in C, a lock
  whose ``acquire()``/``release()`` skip the argument parsing of ``threading.Lock``
  (about 400 instructions per acquire) and that typed callers call directly.
* :class:`LockBase` — what the lock-order checker's lock subclasses, so that in the
  compiled build a checked lock goes wherever a :data:`Lock` goes.
* :func:`ready` and :data:`DONE` — awaitables already done, which the async scope
  methods hand back when nothing suspends (compiled: no coroutine frame at all).

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
from collections.abc import Awaitable, Generator
from typing import TYPE_CHECKING, Any, TypeVar

__all__ = ["DONE", "Lock", "LockBase", "ready"]

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


async def ready(value: T) -> T:
    """An awaitable already done: awaiting it gives ``value`` without suspending.

    Pure: a coroutine (the cheapest such object in Python). Compiled: a small object of
    the extension's ``Ready`` type, taken from a free list, with no coroutine frame.

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
