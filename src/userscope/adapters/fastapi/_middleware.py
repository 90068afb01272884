"""The pure ASGI middleware that opens userscope scopes around each connection (private)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import traceback
from asyncio import current_task
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import anyio
from dependency_injector import containers
from dependency_injector.wiring import ProvidersMap
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

import userscope as us
from userscope._log import fields as log_fields
from userscope._speedups import DeadlineSlots, screened, watched
from userscope.adapters.identity._errors import IdentityProviderUnavailableError
from userscope.container._sessions import table_of
from userscope.container._table import SessionTable

from ._auth import BEARER_SUBPROTOCOL, Authenticator
from ._errors import AuthenticationError, CredentialsExpiredError
from ._refusals import (
    WS_MESSAGE_TOO_BIG,
    WS_POLICY_VIOLATION,
    WS_TRY_AGAIN_LATER,
    Refusal,
    body_too_large,
    headers_too_large,
    message_too_big,
    refusal_for,
    send_handshake_refusal,
    send_http_refusal,
)
from ._routes import prepare_routes
from ._state import PROVIDERS_KEY, STATE_KEY, credentials_expiry

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "ConnectionState",
    "ExpiryDeadline",
    "StatsGuard",
    "UserscopeMiddleware",
    "start_deadline",
]

logger = logging.getLogger("userscope.adapters.fastapi")

StatsGuard = Callable[[HTTPConnection], Awaitable[bool]]

DEFAULT_MAX_BODY_BYTES = 1 << 20
"""Default bound of an HTTP request body: 1 MiB (``413`` beyond)."""
DEFAULT_MAX_MESSAGE_BYTES = 1 << 20
"""Default bound of one WebSocket message: 1 MiB (close ``1009`` beyond)."""
DEFAULT_MAX_HEADER_BYTES = 32 << 10
"""Default bound of a request's headers, names and values together: 32 KiB (``431``)."""

_flatten = chain.from_iterable


def check_limit(name: str, value: int | None) -> int | None:
    """Validate a size limit: a positive ``int`` of bytes, or ``None`` for no limit."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int number of bytes or None, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1 byte (or None for no limit), got {value}")
    return value


def _header_bytes(scope: Scope) -> int:
    # names and values in one C-level pass (this runs once per request)
    return sum(map(len, _flatten(scope.get("headers") or ())))


def _parse_length(value: bytes) -> int | None:
    """A Content-Length header's value, or ``None`` when malformed (the server refuses a
    malformed length itself)."""
    try:
        return int(value)
    except ValueError:
        return None


def _message_bytes(message: Message, limit: int) -> int:
    """Size of a WebSocket message in bytes (UTF-8 for text), exact near ``limit``."""
    data = message.get("bytes")
    if data is not None:
        return len(data)
    text = message.get("text")
    if text is None:
        return 0
    # a character takes 1-4 bytes in UTF-8: encode only when the answer depends on it
    if len(text) > limit or len(text) * 4 <= limit:
        return len(text)
    return len(text.encode())


def _log_oversize(refusal: Refusal, size: int | None) -> None:
    logger.warning(
        "refused with %s (%s): %s bytes",
        refusal.status,
        refusal.error,
        "?" if size is None else size,
        extra=log_fields(refusal.error),
    )


@dataclass(eq=False)
class ConnectionState:
    """What the middleware knows about one open WebSocket (kept in the ASGI scope)."""

    sessions: us.UserSessions
    context: us.UserExecutionContext
    expires_at: float | None
    send: Send
    bearer_offered: bool = False
    connect_received: bool = False
    accepted: bool = False
    closed: bool = False
    close_code: int | None = None
    #: the runtime's session table, what each message's REQUEST scope is opened on (looked
    #: up once here, not once per message)
    table: SessionTable = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.table = table_of(self.sessions)

    def expired(self) -> bool:
        """Whether the connection's credentials have expired by now."""
        return self.expires_at is not None and time.time() >= self.expires_at

    async def close(self, code: int, reason: str) -> None:
        """Close the socket once (before or after accept); later calls do nothing."""
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        await self.send({"type": "websocket.close", "code": code, "reason": reason})

    async def close_expired(self) -> None:
        """Close the socket with 1008 because its token expired."""
        refusal = refusal_for(CredentialsExpiredError(self.expires_at), authenticated=True)
        await self.close(refusal.close_code, refusal.close_reason)


class ExpiryDeadline(DeadlineSlots):
    """The expiry of one connection's credentials as a single timer on its asyncio loop.

    Armed once per connection (at the connect message), not once per message: a receive
    registers its task as the `waiter` and notes the task's `Task.cancelling` count (no
    timer, no cancel scope).
    When the credentials expire while a receive is pending, the timer cancels that task
    with `Task.cancel`; the receive takes its own cancellation back with `Task.uncancel`
    (the counting `asyncio.timeout` does) and ends as the expiry. A cancellation from
    anyone else (server shutdown, the client gone, the app's own timeout), alone or
    together with the expiry, propagates unchanged. When no receive is pending at expiry
    (a message is being handled) the timer only drops its handle: the next receive
    sees that and, like sends and `message_scope`, finds the expiry by the wall clock.

    A receive follows the loop's monotonic clock from the connect on (as a pending
    ``anyio.move_on_after`` did); the timer re-checks the wall clock when it fires and
    waits on if that is behind. Sends and `message_scope` read the wall clock each time.

    `cancel` drops the timer; the middleware calls it on every exit of the connection.
    """

    # `handle`, `waiter` and `fired` are `DeadlineSlots`' (compiled: read in C by the
    # watched receive)
    __slots__ = ("expires_at", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, expires_at: float) -> None:
        self.loop = loop
        #: Unix time (the wall clock the credentials are stated in)
        self.expires_at = expires_at
        #: the task waiting in `receive` right now, if any
        self.waiter: asyncio.Task[Any] | None = None
        #: the waiter this deadline cancelled, until that receive has taken it back
        self.fired: asyncio.Task[Any] | None = None
        self.handle: asyncio.TimerHandle | None = loop.call_later(
            max(0.0, expires_at - time.time()), self._expire
        )

    def _expire(self) -> None:
        remaining = self.expires_at - time.time()
        if remaining > 0:
            # the loop's monotonic clock ran ahead of the wall clock (or the wall clock
            # was set back): wait for the wall clock, which the credentials are in
            self.handle = self.loop.call_later(remaining, self._expire)
            return
        self.handle = None
        task = self.waiter
        if task is not None and self.fired is None:
            self.fired = task
            task.cancel()

    def cancel(self) -> None:
        """Drop the timer (idempotent): the connection is over."""
        handle, self.handle = self.handle, None
        if handle is not None:
            handle.cancel()
        self.waiter = None


def start_deadline(expires_at: float) -> ExpiryDeadline | None:
    """An `ExpiryDeadline` on the running asyncio loop, or ``None`` where it does not apply
    (not on asyncio, e.g. anyio's trio backend, or not in an `asyncio.Task`): then each
    receive is bounded by its own `anyio.move_on_after`."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    if not isinstance(current_task(loop), asyncio.Task):
        return None
    return ExpiryDeadline(loop, expires_at)


class UserscopeMiddleware:
    """Pure ASGI middleware: verified identity in, userscope scopes around every connection.

    Added by `install`; use that rather than this class directly.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        container: containers.Container,
        sessions: us.UserSessions,
        authenticate: Authenticator,
        stats_path: str | None = None,
        stats_guard: StatsGuard | None = None,
        max_body_bytes: int | None = DEFAULT_MAX_BODY_BYTES,
        max_message_bytes: int | None = DEFAULT_MAX_MESSAGE_BYTES,
        max_header_bytes: int | None = DEFAULT_MAX_HEADER_BYTES,
    ) -> None:
        self.max_body_bytes = check_limit("max_body_bytes", max_body_bytes)
        self.max_message_bytes = check_limit("max_message_bytes", max_message_bytes)
        self.max_header_bytes = check_limit("max_header_bytes", max_header_bytes)
        self.app = app
        self.container = container
        self.providers_map = ProvidersMap(container)
        self.sessions = sessions
        self.authenticate = authenticate
        self.stats_path = stats_path
        self.stats_guard = stats_guard
        self._routes_prepared = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The HTTP path is one coroutine (no helper calls before the scope opens): it runs
        # once per request, and each Python call layer here costs about a microsecond.
        kind = scope["type"]
        if kind != "http":
            if kind == "websocket":
                await self._websocket_entry(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or ()
        if self.max_header_bytes is not None:
            size = sum(map(len, _flatten(headers)))  # names and values, one C-level pass
            if size > self.max_header_bytes:  # refused before any credential is parsed
                refusal = headers_too_large(self.max_header_bytes)
                _log_oversize(refusal, size)
                await send_http_refusal(send, refusal)
                return
        scope[PROVIDERS_KEY] = self.providers_map
        if not self._routes_prepared:
            self._prepare_routes(scope)
        if self.stats_path is not None and scope["path"] == self.stats_path:
            await self._stats(scope, send)
            return
        limit = self.max_body_bytes
        declared: int | None = None
        if limit is not None:
            for name, value in headers:
                if name == b"content-length":
                    declared = _parse_length(value)
                    break
            if declared is not None and declared > limit:
                refusal = body_too_large(limit)  # refused before reading a byte of it
                _log_oversize(refusal, declared)
                await send_http_refusal(send, refusal)
                return
        try:
            context = await self.authenticate(HTTPConnection(scope))
        except Exception as exc:
            await self._refuse_http(send, exc, authenticated=False)
            return

        started = False
        finished = False
        too_large = False
        received = 0

        async def tracking_send(message: Message) -> None:
            nonlocal started, finished
            if too_large:
                return  # the 413 went out; whatever the app answers to the cut body is dropped
            kind = message["type"]
            if kind == "http.response.body":
                if not message.get("more_body", False):
                    finished = True
            elif kind == "http.response.start":
                started = True
            await send(message)

        app_receive = receive
        if limit is not None and declared is None:
            # a body without Content-Length (chunked) is counted as it arrives; past the
            # limit the client gets 413 and the app sees a disconnect (never the bytes).
            # With a Content-Length within the limit the server itself delivers no more
            # than that: only bodies of unannounced length need counting.
            async def limited_receive() -> Message:
                nonlocal received, too_large, started, finished
                if too_large:
                    return {"type": "http.disconnect"}
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        if not started:
                            refusal = body_too_large(limit)
                            _log_oversize(refusal, received)
                            await send_http_refusal(send, refusal)
                            started = finished = True
                        too_large = True
                        return {"type": "http.disconnect"}
                return message

            app_receive = limited_receive
        try:
            if context is None:
                await self.app(scope, app_receive, tracking_send)
            else:
                async with self.sessions.request(context):
                    await self.app(scope, app_receive, tracking_send)
        except Exception as exc:
            if too_large:
                logger.debug("endpoint failed after its body was cut off", exc_info=exc)
                return
            if finished:
                # The response went out; only a cleanup failed afterwards.
                logger.error("error after the response was sent", exc_info=exc)
                return
            if started:
                raise  # half a response is out: let the server drop the connection
            await self._refuse_http(send, exc, authenticated=context is not None)

    async def _websocket_entry(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.max_header_bytes is not None:
            size = _header_bytes(scope)
            if size > self.max_header_bytes:  # refused before any credential is parsed
                refusal = headers_too_large(self.max_header_bytes)
                _log_oversize(refusal, size)
                await _expect_connect(receive)
                await send_handshake_refusal(scope, send, refusal)
                return
        scope[PROVIDERS_KEY] = self.providers_map
        await self._websocket(scope, receive, send)

    def _prepare_routes(self, scope: Scope) -> None:
        """Once, at the first request: put routes added since `install` on the fast path.

        (`install` prepares the routes that exist then, and again at lifespan startup;
        this covers apps served without a lifespan, e.g. a ``TestClient`` used without
        ``with``.)
        """
        self._routes_prepared = True
        router = getattr(scope.get("app"), "router", None)
        routes = getattr(router, "routes", None)
        if isinstance(routes, list):
            prepare_routes(routes, self.providers_map)

    async def _refuse_http(self, send: Send, exc: Exception, *, authenticated: bool) -> None:
        refusal = refusal_for(exc, authenticated=authenticated)
        _log_refusal(refusal, exc)
        await send_http_refusal(send, refusal)

    async def _stats(self, scope: Scope, send: Send) -> None:
        connection = HTTPConnection(scope)
        if scope["method"] not in ("GET", "HEAD"):
            refusal = Refusal(405, 1008, "method_not_allowed", "use GET")
        elif self.stats_guard is None or not await self.stats_guard(connection):
            refusal = Refusal(403, 1008, "forbidden", "the stats endpoint is not open to you")
        else:
            body = json.dumps(self.sessions.stats().model_dump(mode="json")).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"cache-control", b"no-store"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await send_http_refusal(send, refusal)

    # -- WebSocket ----------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            context = await self.authenticate(HTTPConnection(scope))
            if context is None:
                raise AuthenticationError("no credentials")
        except Exception as exc:
            refusal = refusal_for(exc, authenticated=False)
            _log_refusal(refusal, exc)
            await _expect_connect(receive)
            await send(
                {
                    "type": "websocket.close",
                    "code": refusal.close_code,
                    "reason": refusal.close_reason,
                }
            )
            return
        message_limit = self.max_message_bytes
        # a text of at most this many characters is within the limit even at 4 UTF-8 bytes
        # a character: it passes without being measured (no limit: every text passes)
        small_text = sys.maxsize if message_limit is None else message_limit // 4

        offered = [p.strip().lower() for p in scope.get("subprotocols") or ()]
        state = ConnectionState(
            sessions=self.sessions,
            context=context,
            expires_at=credentials_expiry(scope),
            send=send,
            bearer_offered=BEARER_SUBPROTOCOL in offered,
        )
        scope[STATE_KEY] = state
        # connected, with credentials that never expire: each message is received as it is,
        # with no deadline (set once the connect message came through)
        steady = False
        # connected, with credentials that expire, on asyncio: the connection's one timer
        deadline: ExpiryDeadline | None = None

        def guarded_receive() -> Awaitable[Message]:
            # A plain function: the server's receive, screened (compiled: a C awaitable,
            # no coroutine of ours per message); a small text message passes unmeasured,
            # anything else goes to `settle`. Only `websocket.receive` carries "text".
            if steady:  # connected, credentials that never expire
                return screened(receive(), small_text, settle)
            if deadline is not None:
                # expiring credentials: the same receive, its task registered with the
                # connection's deadline while the timer is pending (see ExpiryDeadline);
                # once the timer ran (or with a second receive pending) the fallback
                # answers by the wall clock
                return watched(
                    deadline, receive(), small_text, settle, expired, receive_until_expiry
                )
            return screened(receive_until_expiry(), small_text, settle)

        async def settle(message: Message) -> Message:
            """A message that is not a small text: tracked, and refused when too big."""
            refusal = screen(message)
            if refusal is None:
                return message
            await state.close(WS_MESSAGE_TOO_BIG, refusal.close_reason)
            return {"type": "websocket.disconnect", "code": WS_MESSAGE_TOO_BIG}

        async def receive_until_expiry() -> Message:
            """The next message, or (the credentials expired first) a disconnect after
            closing the socket with 1008. The per-receive fallback of `ExpiryDeadline`."""
            if not state.connect_received or state.expires_at is None:
                return await receive()
            message: Message | None = None
            remaining = state.expires_at - time.time()
            if remaining > 0:
                with anyio.move_on_after(remaining):
                    message = await receive()
            if message is None:
                return await expired()
            return message

        async def expired() -> Message:
            await state.close_expired()
            return {"type": "websocket.disconnect", "code": WS_POLICY_VIOLATION}

        def screen(message: Message) -> Refusal | None:
            """Track the connection's state from ``message``; the refusal when it is a
            message over the limit (never handed to the app, never echoed)."""
            nonlocal steady, deadline
            kind = message["type"]
            if kind == "websocket.receive":
                if message_limit is not None:
                    size = _message_bytes(message, message_limit)
                    if size > message_limit:
                        refusal = message_too_big(message_limit)
                        _log_oversize(refusal, size)
                        return refusal
            elif kind == "websocket.connect":
                state.connect_received = True
                steady = state.expires_at is None
                if state.expires_at is not None and deadline is None:
                    deadline = start_deadline(state.expires_at)
            elif kind == "websocket.disconnect":
                state.closed = True
            return None

        def guarded_send(message: Message) -> Awaitable[None]:
            # a plain function: a message within its connection's credentials goes out
            # as the server's own `send(...)` awaitable, no coroutine layer of ours
            if message["type"] == "websocket.send" and not state.closed:
                expires_at = state.expires_at
                if expires_at is None or time.time() < expires_at:
                    return send(message)
            return guarded_send_slow(message)

        async def guarded_send_slow(message: Message) -> None:
            kind = message["type"]
            if state.closed:
                if kind == "websocket.close":
                    return
                raise WebSocketDisconnect(code=state.close_code or 1000)
            if kind == "websocket.send":  # its credentials expired
                await state.close_expired()
                raise WebSocketDisconnect(code=WS_POLICY_VIOLATION)
            if (
                kind == "websocket.accept"
                and state.bearer_offered
                and not message.get("subprotocol")
            ):
                message = {**message, "subprotocol": BEARER_SUBPROTOCOL}
            await send(message)
            if kind == "websocket.accept":
                state.accepted = True
            elif kind in ("websocket.close", "websocket.http.response.body"):
                state.closed = True

        try:
            async with self.sessions.connection(context):
                await self.app(scope, guarded_receive, guarded_send)
        except WebSocketDisconnect:
            return
        except Exception as exc:
            refusal = refusal_for(exc, authenticated=True)
            _log_refusal(refusal, exc)
            if state.closed:
                return
            if not state.connect_received:
                await _expect_connect(receive)
                state.connect_received = True
            if not state.accepted and refusal.close_code == WS_TRY_AGAIN_LATER:
                # Accept first so that the client sees 1013 rather than a bare HTTP 403.
                await guarded_send({"type": "websocket.accept"})
            await state.close(refusal.close_code, refusal.close_reason)
        finally:
            if deadline is not None:
                deadline.cancel()
            scope.pop(STATE_KEY, None)


async def _expect_connect(receive: Receive) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":  # pragma: no cover - server bug
        logger.warning("expected websocket.connect, got %s", message["type"])


def _log_refusal(refusal: Refusal, exc: BaseException) -> None:
    # an identity provider outage is logged once by the key set, not once per request
    if refusal.status >= 500 and not isinstance(exc, IdentityProviderUnavailableError):
        logger.error("request failed: %s", type(exc).__name__, exc_info=exc)
        # The error is handled (the client got its 500), but the traceback a log handler
        # keeps (pytest's capture, an error tracker's queue) would hold the finished
        # frames' locals, and with them the request's scoped instances, past the scope.
        traceback.clear_frames(exc.__traceback__)
    else:
        logger.info("refused with %s (%s): %s", refusal.status, refusal.error, exc)
