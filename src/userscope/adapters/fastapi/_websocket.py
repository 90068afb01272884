"""`message_scope`: one REQUEST scope per WebSocket message (private)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.websockets import WebSocket

import userscope as us
from userscope._log import fields

from ._errors import CredentialsExpiredError
from ._middleware import ConnectionState
from ._state import STATE_KEY

__all__ = ["message_scope"]

logger = logging.getLogger("userscope.adapters.fastapi")

#: the event sent to the client when the cleanup after its message failed
CLEANUP_FAILED_EVENT = {
    "type": "error",
    "error": "cleanup_failed",
    "detail": "cleaning up after this message failed on the server; the connection stays open",
}


@asynccontextmanager
async def message_scope(websocket: WebSocket) -> AsyncIterator[us.UserExecutionContext]:
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

    Args:
        websocket: the endpoint's WebSocket (the app must use `install`).

    Yields:
        The message's `UserExecutionContext`.

    Raises:
        CredentialsExpiredError: the token expired; the socket is already closed.
        RuntimeError: the WebSocket did not come through the userscope middleware.

    Example:
        >>> from fastapi import WebSocket
        >>> from userscope.adapters.fastapi import message_scope
        >>> async def chat(websocket: WebSocket) -> None:
        ...     await websocket.accept()
        ...     async for text in websocket.iter_text():
        ...         async with message_scope(websocket) as ctx:
        ...             await websocket.send_text(f"{ctx.user_id}: {text}")
    """
    state = websocket.scope.get(STATE_KEY)
    if not isinstance(state, ConnectionState):
        raise RuntimeError(
            "message_scope() needs a WebSocket served through the userscope middleware; "
            "call userscope.adapters.fastapi.install(app, container, sessions, authenticate=...)"
        )
    if state.expired():
        await state.close_expired()
        raise CredentialsExpiredError(state.expires_at)
    child = state.context.for_request()
    body_failed = False
    try:
        async with state.sessions.request(child):
            try:
                yield child
            except BaseException:
                body_failed = True
                raise
    except us.CleanupError as failure:
        if body_failed:
            raise
        await _report_cleanup_failure(websocket, state, child, failure)


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
