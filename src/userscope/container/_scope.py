"""Scope levels and the active-scope frame, kept in one :class:`~contextvars.ContextVar`.

The frame (:data:`ActiveFrame`) is a named tuple ``(ctx, request, connection, user,
sessions, async_)``: the context, the open state of each level (``None`` when that
level is not open), the :class:`~userscope.UserSessions` that opened them, and whether
the innermost scope was entered with ``async with``. The three state fields sit at the
index of their :class:`Scope` value, so a provider finds its state with one
``ContextVar.get`` and one tuple index (``frame[provider.scope]``); everything else
reads the fields by name.
"""

from __future__ import annotations

import contextvars
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from userscope.context import UserExecutionContext

if TYPE_CHECKING:
    from userscope.container._sessions import UserSessions
    from userscope.container._state import ScopeState

__all__ = ["ACTIVE", "ActiveFrame", "Scope", "current_context", "current_scope", "new_frame"]


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


# The functional form (not a class body) so a Cython build compiles it as it is.
class ActiveFrame(NamedTuple):
    ctx: UserExecutionContext
    request: ScopeState | None
    connection: ScopeState | None
    user: ScopeState
    sessions: UserSessions
    async_: bool


"""The active scope chain: see the module docstring."""

Frame = ActiveFrame  # the name the provider modules use

ACTIVE: Final[contextvars.ContextVar[ActiveFrame | None]] = contextvars.ContextVar(
    "userscope_active", default=None
)

_tuple_new: Any = tuple.__new__


def new_frame(
    ctx: UserExecutionContext,
    request: ScopeState | None,
    connection: ScopeState | None,
    user: ScopeState,
    sessions: UserSessions,
    async_: bool,
) -> ActiveFrame:
    """Build a frame (one C call: the scope-opening hot path avoids namedtuple's ``__new__``).

    Example:
        >>> from userscope.container._scope import new_frame
        >>> new_frame.__name__
        'new_frame'
    """
    frame: ActiveFrame = _tuple_new(ActiveFrame, (ctx, request, connection, user, sessions, async_))
    return frame


def current_context() -> UserExecutionContext | None:
    """Return the active :class:`~userscope.UserExecutionContext`, or ``None``.

    Example:
        >>> import userscope as us
        >>> us.current_context() is None
        True
    """
    frame = ACTIVE.get()
    return None if frame is None else frame.ctx


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
    if frame.request is not None:
        return Scope.REQUEST
    if frame.connection is not None:
        return Scope.CONNECTION
    return Scope.USER
