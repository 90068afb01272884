"""`message_scope`: one REQUEST scope per WebSocket message (private)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import NoReturn

from starlette.websockets import WebSocket

import userscope as us
from userscope._log import fields
from userscope.container._scope import Scope
from userscope.container._scopes import ScopeCM

from ._errors import CredentialsExpiredError, NotInstalledError
from ._middleware import ConnectionState
from ._state import STATE_KEY

__all__ = ["message_scope"]

logger = logging.getLogger("userscope.adapters.fastapi")

_REQUEST = Scope.REQUEST

#: the event sent to the client when the cleanup after its message failed
CLEANUP_FAILED_EVENT = {
    "type": "error",
    "error": "cleanup_failed",
    "detail": "cleaning up after this message failed on the server; the connection stays open",
}


def message_scope(websocket: WebSocket) -> AbstractAsyncContextManager[us.UserExecutionContext]:
    """Open the REQUEST scope for one WebSocket message.

    The scope belongs to the connection's verified user and gets a fresh
    ``request_id`` (``ctx.for_request()``); `RequestScoped` providers resolved
    inside it are cleaned up when the block exits. If the connection's token
    has expired when ``message_scope()`` is called, entering the block closes the
    socket with ``1008`` and opens no scope.

    When the block succeeded but a cleanup failed (the scope's `CleanupError`),
    the failure is logged and reported to this client as an error event,
    ``{"type": "error", "error": "cleanup_failed", "detail": ..., "request_id": ...}``,
    and the block exits normally: the socket stays open for the next message.
    An exception raised by the block itself propagates unchanged.

    The returned object is entered once (``async with``); entering it again raises
    `ScopeReuseError`. Call ``message_scope(websocket)`` once per message.

    Args:
        websocket: the endpoint's WebSocket (the app must use `install`).

    Returns:
        An async context manager whose ``async with ... as ctx`` gives the message's
        `UserExecutionContext`.

    Raises:
        CredentialsExpiredError: the token expired; the socket is already closed.
        NotInstalledError: the WebSocket did not come through the userscope middleware
            (`install()` was not called on its app).

    Example:
        >>> from fastapi import WebSocket
        >>> from userscope.adapters.fastapi import message_scope
        >>> async def chat(websocket: WebSocket) -> None:
        ...     await websocket.accept()
        ...     async for text in websocket.iter_text():
        ...         async with message_scope(websocket) as ctx:
        ...             await websocket.send_text(f"{ctx.user_id}: {text}")
    """
    # Both results are async context managers as far as `async with` is concerned; their
    # methods hand back awaitables that need not be coroutines (hence the ignores).
    state = websocket.scope.get(STATE_KEY)
    if type(state) is not ConnectionState and not isinstance(state, ConnectionState):
        error = NotInstalledError("message_scope()", websocket.url.path)
        return _Refused(error)  # type: ignore[return-value]
    expires_at = state.expires_at
    if expires_at is not None and time.time() >= expires_at:
        return _Refused(None, state, expires_at)  # type: ignore[return-value]
    # the core's own REQUEST scope (what `sessions.request()` makes), plus the socket
    scope = _MessageScope(state.table, state.context.for_request(), _REQUEST)
    scope._websocket = websocket
    scope._state = state
    return scope  # type: ignore[return-value]


class _MessageScope(ScopeCM):
    """`message_scope`'s context manager: the core REQUEST scope itself (entering and
    leaving it are the core's own methods, which hand back ready awaitables while
    nothing suspends), except that a cleanup failure after a block that succeeded is
    reported to the client rather than raised."""

    __slots__ = ("_state", "_websocket")

    # set by `message_scope` right after construction (no `__init__` of ours: the
    # core's runs as it is)
    _state: ConnectionState
    _websocket: WebSocket

    def _cleanups_failed(self, error: us.CleanupError) -> Awaitable[None]:
        return _report_cleanup_failure(self._websocket, self._state, self._ctx, error)


class _Refused:
    """What `message_scope` returns when it cannot open a scope: entering it raises
    ``error``, or (``error`` is ``None``: the token expired) closes the socket first."""

    __slots__ = ("_error", "_expires_at", "_state", "_used")

    def __init__(
        self,
        error: Exception | None,
        state: ConnectionState | None = None,
        expires_at: float = 0.0,
    ) -> None:
        self._error = error
        self._state = state
        self._expires_at = expires_at
        self._used = False

    def __aenter__(self) -> Awaitable[us.UserExecutionContext]:
        if self._used:
            raise us.ScopeReuseError("request", "used")
        self._used = True
        if self._error is not None:
            raise self._error
        assert self._state is not None
        return _refuse_expired(self._state, self._expires_at)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        raise us.ScopeReuseError("request", "not_open")  # never entered: refused


async def _refuse_expired(state: ConnectionState, expires_at: float) -> NoReturn:
    """Close the socket (``1008``) and refuse the message scope: the token expired."""
    await state.close_expired()
    raise CredentialsExpiredError(expires_at)


async def _report_cleanup_failure(
    websocket: WebSocket,
    state: ConnectionState,
    ctx: us.UserExecutionContext,
    failure: us.CleanupError,
) -> None:
    """Log a failed per-message cleanup (each failure was logged with its traceback by the
    scope) and tell the client, keeping the socket open."""
    logger.error(
        "cleanup after a WebSocket message failed (%d failure(s)); reported to the client, "
        "the connection stays open",
        len(failure.exceptions),
        extra=fields("message_cleanup_failed", ctx, scope=us.Scope.REQUEST),
    )
    if state.closed:
        return
    try:
        await websocket.send_json({**CLEANUP_FAILED_EVENT, "request_id": ctx.request_id})
    except Exception as exc:  # the client went away meanwhile: nothing left to tell
        logger.info(
            "could not report the cleanup failure: %s",
            type(exc).__name__,
            extra=fields("message_cleanup_unreported", ctx),
        )
