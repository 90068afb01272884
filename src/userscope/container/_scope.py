"""Scope levels and the active-scope frame, kept in one :class:`~contextvars.ContextVar`.

The frame (:data:`ActiveFrame`) is a plain tuple ``(ctx, request, connection, user,
table, async_)``, always read through the index names :data:`CTX`,
:data:`REQUEST_STATE`, :data:`CONNECTION_STATE`, :data:`USER_STATE`, :data:`SESSIONS`
and :data:`ASYNC`: the context, the open state of each level (``None`` when that level
is not open), the :class:`~userscope.container._table.SessionTable` of the
:class:`~userscope.UserSessions` that opened them (always the table, never the public
object: compare it with ``is`` against the table, e.g.
``frame[SESSIONS] is table_of(sessions)``), and whether the innermost scope was
entered with ``async with``. The three state fields sit at the
index of their :class:`Scope` value, so a provider finds its state with one
``ContextVar.get`` and one tuple index (``frame[provider.scope]``). A plain tuple
literal (not a named tuple) because opening a scope builds one: it is the hot path.
"""

from __future__ import annotations

import contextvars
from enum import IntEnum
from typing import TYPE_CHECKING, Final

from userscope.context import UserExecutionContext

if TYPE_CHECKING:
    from userscope.container._state import ScopeState
    from userscope.container._table import SessionTable

__all__ = [
    "ACTIVE",
    "ASYNC",
    "CONNECTION_STATE",
    "CTX",
    "REQUEST_STATE",
    "SESSIONS",
    "USER_STATE",
    "ActiveFrame",
    "Scope",
    "current_context",
    "current_scope",
]


class Scope(IntEnum):
    """Scope levels, widest first: ``USER > CONNECTION > REQUEST``.

    ``USER`` spans everything one user does in this process, ``CONNECTION`` one
    HTTP request or one WebSocket connection, ``REQUEST`` one unit of work (an
    HTTP request, one WebSocket message, one agent run).

    Example:
        >>> import userscope as us
        >>> us.Scope.USER > us.Scope.CONNECTION > us.Scope.REQUEST
        True
    """

    REQUEST = 1
    CONNECTION = 2
    USER = 3


ActiveFrame = tuple[
    UserExecutionContext,
    "ScopeState | None",
    "ScopeState | None",
    "ScopeState",
    "SessionTable",
    bool,
]
"""The active scope chain: a plain tuple read through the index names below."""

Frame = ActiveFrame  # the name the provider modules use

# The frame's fields by name. The three states sit at their Scope's value.
CTX: Final = 0
REQUEST_STATE: Final = 1  # == Scope.REQUEST
CONNECTION_STATE: Final = 2  # == Scope.CONNECTION
USER_STATE: Final = 3  # == Scope.USER
SESSIONS: Final = 4  # the runtime's SessionTable
ASYNC: Final = 5  # whether the innermost scope was entered with `async with`

ACTIVE: Final[contextvars.ContextVar[ActiveFrame | None]] = contextvars.ContextVar(
    "userscope_active", default=None
)


def current_context() -> UserExecutionContext | None:
    """Return the active :class:`~userscope.UserExecutionContext`, or ``None``.

    Example:
        >>> import userscope as us
        >>> us.current_context() is None
        True
    """
    frame = ACTIVE.get()
    return None if frame is None else frame[CTX]


def current_scope() -> Scope | None:
    """Return the innermost active scope level, or ``None`` when no scope is active.

    Example:
        >>> import userscope as us
        >>> us.current_scope() is None
        True
    """
    return innermost(ACTIVE.get())


def innermost(frame: ActiveFrame | None) -> Scope | None:
    """Innermost open level of a frame.

    Example:
        >>> from userscope.container._scope import innermost
        >>> innermost(None) is None
        True
    """
    if frame is None:
        return None
    if frame[REQUEST_STATE] is not None:
        return Scope.REQUEST
    if frame[CONNECTION_STATE] is not None:
        return Scope.CONNECTION
    return Scope.USER
