"""What the compiled core does in C with no pure-Python equivalent; this file is its pure twin.

The compiled build replaces this module with ``_speedups.pyx`` (same names, same
behaviour, both pass the same tests); the pure runtime imports this file. Keep the two
in step: a name added here is added there.

* :data:`Lock` — the runtime's lock: a plain :class:`threading.Lock` here; in C, a lock
  whose ``acquire()``/``release()`` skip the argument parsing of ``threading.Lock``
  (about 400 instructions per acquire) and that typed callers call directly.
* :class:`LockBase` — what the lock-order checker's lock subclasses, so that in the
  compiled build a checked lock goes wherever a :data:`Lock` goes.
* :func:`thread_ident`, :func:`context_value`, :func:`call` — ``threading.get_ident()``,
  ``var.get()`` and ``function(*args, **kwargs)``; in C, direct C API calls (no bound
  method, no copy of ``kwargs``) that the compiled providers call as C functions.

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

import contextvars
import threading
from typing import Any

__all__ = ["Lock", "LockBase", "call", "context_value", "thread_ident"]

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

context_value: Any = contextvars.ContextVar.get
"""``context_value(var)`` is ``var.get()``: the variable's value, or its default
(``LookupError`` if neither)."""


def call(function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``function(*args, **kwargs)``; compiled, ``kwargs`` is handed over without a copy.

    Example:
        >>> from userscope._speedups import call
        >>> call(dict, (), {"a": 1})
        {'a': 1}
    """
    return function(*args, **kwargs)
