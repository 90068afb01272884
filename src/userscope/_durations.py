"""Durations: every parameter that takes a duration accepts seconds or a ``timedelta``.

One parser for the whole library, so ``UserSessions(max_age=timedelta(hours=1))``,
``start_reaper(interval=2.5)`` and the events timeouts behave alike, and a wrong value
is refused with the parameter's name.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TypeAlias

__all__ = ["Duration", "to_seconds", "to_seconds_or_none"]

Duration: TypeAlias = float | int | timedelta
"""A duration: seconds (``int`` or ``float``) or a :class:`datetime.timedelta`."""


def to_seconds(name: str, value: object) -> float:
    """Return ``value`` as a positive, finite number of seconds.

    Args:
        name: the parameter's name, used in the error message.
        value: seconds (``int``/``float``) or a :class:`datetime.timedelta`.

    Raises:
        TypeError: ``value`` is neither a number nor a ``timedelta`` (``bool`` included).
        ValueError: ``value`` is zero, negative, NaN or infinite.

    Example:
        >>> from userscope._durations import to_seconds
        >>> from datetime import timedelta
        >>> to_seconds("max_age", timedelta(minutes=2)), to_seconds("idle_timeout", 1.5)
        (120.0, 1.5)
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(
            f"{name} must be a number of seconds or a datetime.timedelta, got "
            f"{type(value).__name__} {value!r}"
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(
            f"{name} must be a positive, finite duration, got {value!r}; "
            "pass None where the parameter allows it to switch the limit off"
        )
    return seconds


def to_seconds_or_none(name: str, value: object) -> float | None:
    """Like :func:`to_seconds`, with ``None`` passed through (a limit that is off).

    Example:
        >>> from userscope._durations import to_seconds_or_none
        >>> to_seconds_or_none("idle_timeout", None) is None
        True
    """
    return None if value is None else to_seconds(name, value)
