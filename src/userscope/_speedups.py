"""What the compiled core does in C with no pure-Python equivalent; this file is its pure twin.

The compiled build replaces this module with ``_speedups.pyx`` (same names, same
behaviour, both pass the same tests); the pure runtime imports this file. Keep the two
in step: a name added here is added there.

* :data:`Lock` — the runtime's lock: a plain :class:`threading.Lock` here; in C, a lock
  whose ``acquire()``/``release()`` skip the argument parsing of ``threading.Lock``
  (about 400 instructions per acquire) and that typed callers call directly.
* :class:`LockBase` — what the lock-order checker's lock subclasses, so that in the
  compiled build a checked lock goes wherever a :data:`Lock` goes.

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
from typing import Any

__all__ = ["Lock", "LockBase"]

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
