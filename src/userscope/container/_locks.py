"""The runtime's locks and the lock-order checker.

Two kinds of lock exist (see the concurrency model in :mod:`userscope.container._table`):

* the **table lock** of a :class:`~userscope.UserSessions` runtime (its
  ``SessionTable.lock``; rank 1), and
* one **session lock** per user session (rank 2).

A thread may take a session lock while it holds the table lock, never the other way
round, and never two session locks at once. No user code runs while either is held.

With the checker on (``USERSCOPE_LOCK_CHECK=1`` in the environment, or
:func:`enable_lock_check`, which the pytest plugin calls), locks created from then on
are :class:`CheckedLock` objects that raise :class:`~userscope.errors.LockOrderError`
the moment a thread breaks that order or runs user code (a factory or a cleanup)
while holding one. Off (the default), :func:`new_lock` returns a plain
runtime lock (:mod:`userscope._speedups`) and the checks cost nothing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, Final

from userscope._speedups import Lock, LockBase
from userscope.errors import LockOrderError

__all__ = [
    "SESSION",
    "TABLE",
    "CheckedLock",
    "assert_unlocked",
    "enable_lock_check",
    "lock_check_enabled",
    "new_lock",
]

TABLE: Final = 1
SESSION: Final = 2
_NAMES: Final = {TABLE: "table lock", SESSION: "session lock"}

_enabled = os.environ.get("USERSCOPE_LOCK_CHECK", "") not in ("", "0")
_held = threading.local()  # .ranks: list[int], the ranks this thread holds, in order
_listeners: list[Callable[[bool], None]] = []  # told when the checker is switched


def on_switch(listener: Callable[[bool], None]) -> None:
    """Call ``listener(enabled)`` now and whenever the checker is switched.

    Example:
        >>> from userscope.container._locks import on_switch
        >>> on_switch(lambda on: None)
    """
    _listeners.append(listener)
    listener(_enabled)


def enable_lock_check(on: bool = True) -> None:
    """Check the lock order of every runtime created from now on.

    Example:
        >>> from userscope.container._locks import enable_lock_check, lock_check_enabled
        >>> before = lock_check_enabled()
        >>> enable_lock_check(); lock_check_enabled()
        True
        >>> enable_lock_check(before)
    """
    global _enabled
    _enabled = on
    for listener in _listeners:
        listener(on)


def lock_check_enabled() -> bool:
    """Whether locks created now are checked.

    Example:
        >>> from userscope.container._locks import lock_check_enabled
        >>> isinstance(lock_check_enabled(), bool)
        True
    """
    return _enabled


def _ranks() -> list[int]:
    ranks: list[int] | None = getattr(_held, "ranks", None)
    if ranks is None:
        ranks = _held.ranks = []
    return ranks


class CheckedLock(LockBase):
    """A :class:`threading.Lock` that enforces the documented order (checker mode).

    It subclasses the runtime lock's base (:mod:`userscope._speedups`), so the compiled
    runtime, which calls its locks as C functions, takes a checked lock too (it then
    calls these Python methods).

    Example:
        >>> from userscope.container._locks import CheckedLock, SESSION, TABLE
        >>> table, session = CheckedLock(TABLE), CheckedLock(SESSION)
        >>> with table, session:
        ...     pass
        >>> with session:
        ...     try:
        ...         table.acquire()
        ...     except Exception as exc:
        ...         print(type(exc).__name__, exc.held)
        LockOrderError ('session lock',)
    """

    __slots__ = ("_lock", "rank")

    def __init__(self, rank: int) -> None:
        self.rank = rank
        self._lock = threading.Lock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock; raise :class:`LockOrderError` when that breaks the order."""
        ranks = _ranks()
        if ranks and ranks[-1] >= self.rank:
            raise LockOrderError(_NAMES[self.rank], tuple(_NAMES[r] for r in ranks))
        got = self._lock.acquire(blocking, timeout)
        if got:
            ranks.append(self.rank)
        return got

    def release(self) -> None:
        """Release the lock."""
        ranks = _ranks()
        if ranks and ranks[-1] == self.rank:
            ranks.pop()
        self._lock.release()

    def locked(self) -> bool:
        """Whether some thread holds the lock."""
        return self._lock.locked()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def new_lock(rank: int) -> Any:
    """A lock of ``rank``: checked in checker mode, else a plain runtime lock
    (:data:`userscope._speedups.Lock`: ``threading.Lock`` in the pure runtime).

    Example:
        >>> from userscope.container._locks import new_lock, TABLE
        >>> with new_lock(TABLE):
        ...     pass
    """
    return CheckedLock(rank) if _enabled else Lock()


def assert_unlocked(what: str) -> None:
    """Raise :class:`LockOrderError` when this thread holds a checked runtime lock.

    Called before user code (``what``: "a factory", "a cleanup") when the checker is on.

    Example:
        >>> from userscope.container._locks import assert_unlocked
        >>> assert_unlocked("a factory")
    """
    ranks = getattr(_held, "ranks", None)
    if ranks:
        raise LockOrderError(what, tuple(_NAMES[r] for r in ranks))
