"""`message_scope`: one REQUEST scope per WebSocket message (private)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Literal, NoReturn

from starlette.websockets import WebSocket

import userscope as us
from userscope._log import fields
from userscope._speedups import DONE
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
    has expired, the socket is closed with ``1008`` and no scope is opened.

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
    # the standard protocol as far as `async with` is concerned; its methods hand back
    # awaitables that need not be coroutines
    return _MessageScope(websocket)  # type: ignore[return-value]


class _MessageScope:
    """`message_scope`'s context manager: a plain class over the core scope (one per
    message, so no generator and no `contextlib` layer on this path). Both methods are
    plain methods handing back the core scope's own awaitables: while nothing suspends
    (the common case) no coroutine of ours is made on the way in or out."""

    __slots__ = ("_ctx", "_scope", "_state", "_websocket")

    _state: ConnectionState  # set when the scope opens
    _ctx: us.UserExecutionContext

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket
        self._scope: ScopeCM | Literal[False] | None = None  # False: entered (or refused)

    def __aenter__(self) -> Awaitable[us.UserExecutionContext]:
        if self._scope is not None:
            raise us.ScopeReuseError("request", "used")
        self._scope = False
        state = self._websocket.scope.get(STATE_KEY)
        if state.__class__ is not ConnectionState and not isinstance(state, ConnectionState):
            raise NotInstalledError("message_scope()", self._websocket.url.path)
        expires_at = state.expires_at
        if expires_at is not None and time.time() >= expires_at:
            return _refuse_expired(state, expires_at)
        child = state.context.for_request()
        scope = ScopeCM(state.sessions, child, _REQUEST)  # what `sessions.request()` makes
        self._state, self._ctx, self._scope = state, child, scope
        return scope.__aenter__()

    def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Awaitable[None]:
        scope = self._scope
        if not scope:
            raise us.ScopeReuseError("request", "not_open")
        self._scope = False
        try:
            leaving = scope.__aexit__(exc_type, exc, tb)
        except us.CleanupError as failure:
            if exc is not None:
                raise  # the block failed too: its exception carries the cleanup's notes
            return self._report(failure)
        if leaving is DONE:
            return DONE
        return self._leave(leaving, exc)

    async def _leave(self, leaving: Awaitable[None], exc: BaseException | None) -> None:
        """Await an exit whose cleanups suspend; report a cleanup failure to the client."""
        try:
            await leaving
        except us.CleanupError as failure:
            if exc is not None:
                raise
            await self._report(failure)

    def _report(self, failure: us.CleanupError) -> Awaitable[None]:
        return _report_cleanup_failure(self._websocket, self._state, self._ctx, failure)


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
