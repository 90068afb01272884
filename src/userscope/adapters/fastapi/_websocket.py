"""`message_scope`: one REQUEST scope per WebSocket message (private)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.websockets import WebSocket

import userscope as us

from ._errors import CredentialsExpiredError
from ._middleware import ConnectionState
from ._state import STATE_KEY

__all__ = ["message_scope"]


@asynccontextmanager
async def message_scope(websocket: WebSocket) -> AsyncIterator[us.UserExecutionContext]:
    """Open the REQUEST scope for one WebSocket message.

    The scope belongs to the connection's verified user and gets a fresh
    ``request_id`` (``ctx.for_request()``); `RequestScoped` providers resolved
    inside it are cleaned up when the block exits. If the connection's token
    has expired, the socket is closed with ``1008`` and no scope is opened.

    Args:
        websocket: the endpoint's WebSocket (the app must use `install`).

    Yields:
        The message's `UserExecutionContext`.

    Raises:
        CredentialsExpiredError: the token expired; the socket is already closed.
        RuntimeError: the WebSocket did not come through the userscope middleware.

    Example:
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
    async with state.sessions.request(child):
        yield child
