"""Stand-in for the ``cython`` module where Cython is not installed (a pure install).

The hot-path modules declare C types for the compiled build with Cython's
pure-Python-mode decorators (``@cython.locals(...)``); run as plain Python they do
nothing. Cython itself ships the same no-op "shadow" module, but a pure install has no
Cython, so the modules import this one instead::

    if TYPE_CHECKING:
        from userscope import _nocython as cython
    else:
        try:
            import cython
        except ImportError:
            from userscope import _nocython as cython

Example:
    >>> from userscope import _nocython as cython
    >>> @cython.locals(count=int)
    ... def double(count):
    ...     return count * 2
    >>> double(2), cython.compiled
    (4, False)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["bint", "compiled", "int", "locals"]

F = TypeVar("F", bound=Callable[..., Any])

compiled = False
"""Whether this code runs compiled: never, here."""

bint = bool
"""Cython's C boolean: a ``bool`` here."""

int = int  # the name of Cython's C int
"""Cython's C int: an ``int`` here."""


def locals(**types: Any) -> Callable[[F], F]:
    """Declare the C types of a function's locals (ignored when not compiled)."""

    def keep(function: F) -> F:
        return function

    return keep
