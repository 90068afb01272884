"""Process-wide switches the hot paths read, each as a global of their own.

A hot path does not read ``_flags.observing`` itself (an attribute of a module object:
a generic lookup per read, compiled or not): it registers a listener with
:func:`on_change` and keeps its own copy, a module global (compiled: a C global).
Setting the attribute (``_flags.observing = True``) tells every listener.

Example:
    >>> from userscope.container import _flags
    >>> seen = []
    >>> def listener(name, value):
    ...     seen.append((name, value == _flags.observing))
    >>> _flags.on_change(listener)
    >>> seen
    [('observing', True)]
    >>> _flags._listeners.remove(listener)
"""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Callable

__all__ = ["observing", "on_change"]

observing: bool = False
"""Set once any ``UserSessions`` got an observer: only then does the creation path look
up its runtime's observer (one global test per creation otherwise)."""

_FLAGS = ("observing",)
_lock = threading.Lock()  # a value and what the listeners are told of it change together
_listeners: list[Callable[[str, bool], None]] = []


def on_change(listener: Callable[[str, bool], None]) -> None:
    """Call ``listener(name, value)`` for each flag now, and whenever one is set.

    Listeners run under a lock that orders the changes: they must only store the value.
    """
    with _lock:
        _listeners.append(listener)
        for name in _FLAGS:
            listener(name, vars(_module)[name])


class _FlagsModule(types.ModuleType):
    """This module's class: setting a flag also tells the listeners."""

    def __setattr__(self, name: str, value: object) -> None:
        if name not in _FLAGS:
            super().__setattr__(name, value)
            return
        on = bool(value)
        with _lock:
            super().__setattr__(name, on)
            for listener in _listeners:
                listener(name, on)


_module = sys.modules[__name__]
_module.__class__ = _FlagsModule
