"""How errors become HTTP responses and WebSocket close codes (private).

Every refusal the adapter sends has one shape, built here and nowhere else:

* HTTP: status code, ``Content-Type: application/json``, ``Cache-Control: no-store``
  and the body ``{"error": "<code>", "detail": "<sentence>"}``;
* WebSocket: close code and the reason ``"<code>: <sentence>"`` (at most 123 bytes).

``<code>`` is a short stable machine-readable word (``invalid_token``,
``payload_too_large``...), ``<sentence>`` says what to do next. Neither ever carries
the request's input, a token, a library's message or a stack trace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import jwt
from starlette.responses import Response
from starlette.types import Scope, Send

import userscope as us
from userscope.adapters.identity._errors import IdentityProviderUnavailableError

from ._errors import (
    AuthenticationError,
    AuthenticationRequiredError,
    CredentialsExpiredError,
    InvalidClaimError,
)

__all__ = [
    "Refusal",
    "body_too_large",
    "headers_too_large",
    "message_too_big",
    "refusal_close_reason",
    "refusal_for",
    "refusal_response",
    "send_http_refusal",
]

#: WebSocket close codes (RFC 6455 section 7.4.1)
WS_POLICY_VIOLATION = 1008
WS_INTERNAL_ERROR = 1011
WS_TRY_AGAIN_LATER = 1013
WS_GOING_AWAY = 1001
WS_MESSAGE_TOO_BIG = 1009

_BEARER = 'Bearer realm="userscope"'


@dataclass(frozen=True, slots=True)
class Refusal:
    """One refusal: its HTTP status, WebSocket close code and JSON body (the one shape)."""

    status: int
    close_code: int
    error: str
    detail: str
    www_authenticate: str | None = None

    def body(self) -> bytes:
        """The JSON body: ``{"error": ..., "detail": ...}`` (never a stack trace)."""
        return json.dumps({"error": self.error, "detail": self.detail}).encode()

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The raw ASGI headers of the HTTP form (content type, length, no caching)."""
        body = self.body()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        if self.www_authenticate is not None:
            headers.append((b"www-authenticate", self.www_authenticate.encode()))
        return headers

    @property
    def close_reason(self) -> str:
        """A close reason that fits a WebSocket close frame (at most 123 bytes)."""
        return f"{self.error}: {self.detail}".encode()[:123].decode("utf-8", "ignore")


UNAUTHENTICATED = Refusal(
    401,
    WS_POLICY_VIOLATION,
    "unauthenticated",
    "this endpoint needs a signed-in user; send `Authorization: Bearer <token>`",
    _BEARER,
)
INTERNAL = Refusal(500, WS_INTERNAL_ERROR, "internal_error", "the server failed to handle this")

# What a client is told for each AuthenticationError code: fixed sentences, never the
# exception's reason (which may quote PyJWT, json or base64 internals); that is logged.
_AUTH_DETAILS = {
    "invalid_token": "the token was refused; sign in again to get a valid token",
    "token_expired": "the token expired; sign in again",
    "unauthenticated": "this endpoint needs a signed-in user; send `Authorization: Bearer <token>`",
    "unknown_key": "the token is signed with a key the identity provider does not publish; "
    "sign in again",
    "credentials_too_large": "the credentials are too large to be a token; send a valid token",
}
_AUTH_DETAIL_DEFAULT = "the credentials were refused; sign in again"


def _auth_detail(exc: AuthenticationError) -> str:
    """The client's sentence for a refused credential: our own words, never a library's.

    A refused mapped claim names the claim (from the authenticator's configuration);
    a wrong audience or issuer says which, as RFC 6750's ``error_description`` would.
    """
    if isinstance(exc, InvalidClaimError):
        return f"the token's {exc.claim!r} claim was refused; sign in again"
    cause = exc.__cause__
    if isinstance(cause, jwt.InvalidAudienceError):
        return "the token was issued for another audience; sign in to this application"
    if isinstance(cause, jwt.InvalidIssuerError):
        return "the token comes from another issuer; sign in with this application's provider"
    return _AUTH_DETAILS.get(exc.code, _AUTH_DETAIL_DEFAULT)


def body_too_large(limit: int) -> Refusal:
    """413 / 1009: the request body is larger than ``max_body_bytes``."""
    return Refusal(
        413,
        WS_MESSAGE_TOO_BIG,
        "payload_too_large",
        f"the request body is larger than {limit} bytes; send less",
    )


def message_too_big(limit: int) -> Refusal:
    """413 / 1009: a WebSocket message is larger than ``max_message_bytes``."""
    return Refusal(
        413,
        WS_MESSAGE_TOO_BIG,
        "message_too_big",
        f"a message is larger than {limit} bytes; send smaller messages",
    )


def headers_too_large(limit: int) -> Refusal:
    """431 / 1009: the request headers are larger than ``max_header_bytes``."""
    return Refusal(
        431,
        WS_MESSAGE_TOO_BIG,
        "headers_too_large",
        f"the request headers are larger than {limit} bytes; send smaller headers",
    )


def refusal_for(exc: BaseException, *, authenticated: bool) -> Refusal:
    """Map an exception raised while serving a connection to its refusal.

    Args:
        exc: what was raised (by authentication, scope entry or the endpoint).
        authenticated: whether the connection carried a verified context.
    """
    if isinstance(exc, AuthenticationRequiredError):
        return UNAUTHENTICATED
    if isinstance(exc, CredentialsExpiredError):
        return Refusal(
            401,
            WS_POLICY_VIOLATION,
            exc.code,
            _AUTH_DETAILS["token_expired"],
            f'{_BEARER}, error="invalid_token", error_description="the token expired"',
        )
    if isinstance(exc, AuthenticationError):
        return Refusal(
            401,
            WS_POLICY_VIOLATION,
            exc.code,
            _auth_detail(exc),
            f'{_BEARER}, error="invalid_token"',
        )
    if isinstance(exc, IdentityProviderUnavailableError):
        return Refusal(
            503,
            WS_TRY_AGAIN_LATER,
            "identity_provider_unavailable",
            "the identity provider's keys cannot be fetched right now; try again later",
        )
    if isinstance(exc, us.OutOfScopeError):
        return INTERNAL if authenticated else UNAUTHENTICATED
    if isinstance(exc, us.ScopeLimitError):
        return Refusal(
            429,
            WS_TRY_AGAIN_LATER,
            "too_many_requests",
            f"limit {exc.limit!s} reached for this user ({exc.maximum}); try again later",
        )
    if isinstance(exc, us.IsolationError):
        return Refusal(403, WS_POLICY_VIOLATION, "forbidden", "this object belongs to another user")
    if isinstance(exc, us.ScopeClosedError):
        return Refusal(
            503, WS_GOING_AWAY, "session_closed", "the session was closed; connect again"
        )
    return INTERNAL


async def send_http_refusal(send: Send, refusal: Refusal) -> None:
    """Send ``refusal`` as a complete JSON HTTP response on a raw ASGI ``send``."""
    await send(
        {"type": "http.response.start", "status": refusal.status, "headers": refusal.headers()}
    )
    await send({"type": "http.response.body", "body": refusal.body(), "more_body": False})


async def send_handshake_refusal(scope: Scope, send: Send, refusal: Refusal) -> None:
    """Refuse a WebSocket handshake (after ``websocket.connect``): a real HTTP response
    with the JSON body when the server supports the ``websocket.http.response``
    extension, else a close with ``refusal.close_code`` (servers answer that with 403)."""
    extensions = scope.get("extensions")
    if isinstance(extensions, dict) and "websocket.http.response" in extensions:
        await send(
            {
                "type": "websocket.http.response.start",
                "status": refusal.status,
                "headers": refusal.headers(),
            }
        )
        await send({"type": "websocket.http.response.body", "body": refusal.body()})
        return
    await send(
        {"type": "websocket.close", "code": refusal.close_code, "reason": refusal.close_reason}
    )


def refusal_response(
    status: int, error: str, detail: str, *, headers: dict[str, str] | None = None
) -> Response:
    """An HTTP error response in the adapter's one refusal shape, for your own endpoints.

    The body is ``{"error": error, "detail": detail}`` with ``Content-Type:
    application/json`` and ``Cache-Control: no-store``, exactly what the adapter sends
    for its own refusals (401, 413, 429...). Put a stable code in ``error`` and a
    sentence saying what to do next in ``detail``; never the request's input.

    Args:
        status: the HTTP status code (4xx or 5xx).
        error: short machine-readable code, e.g. ``"runs_at_capacity"``.
        detail: what happened and what to do next.
        headers: extra response headers (e.g. ``{"Retry-After": "5"}``).

    Example:
        >>> from userscope.adapters.fastapi import refusal_response
        >>> response = refusal_response(429, "runs_at_capacity", "wait for a run to finish")
        >>> response.status_code, response.body
        (429, b'{"error": "runs_at_capacity", "detail": "wait for a run to finish"}')
    """
    if not 400 <= status <= 599:
        raise ValueError(f"a refusal needs a 4xx or 5xx status, got {status}")
    refusal = Refusal(status, WS_POLICY_VIOLATION, error, detail)
    response = Response(refusal.body(), status_code=status, media_type="application/json")
    response.headers["cache-control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def refusal_close_reason(error: str, detail: str) -> str:
    """A WebSocket close reason in the adapter's one refusal shape: ``"<error>: <detail>"``.

    Cut to the 123 bytes a close frame can carry (on a character boundary).

    Example:
        >>> from userscope.adapters.fastapi import refusal_close_reason
        >>> refusal_close_reason("bad_request", "send JSON objects")
        'bad_request: send JSON objects'
        >>> len(refusal_close_reason("x", "é" * 200).encode()) <= 123
        True
    """
    return Refusal(400, WS_POLICY_VIOLATION, error, detail).close_reason
