"""How errors become HTTP responses and WebSocket close codes (private)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.types import Send

import userscope as us
from userscope.adapters.identity._errors import IdentityProviderUnavailableError

from ._errors import AuthenticationError, AuthenticationRequiredError, CredentialsExpiredError

__all__ = ["Refusal", "refusal_for", "send_http_refusal"]

#: WebSocket close codes (RFC 6455 section 7.4.1)
WS_POLICY_VIOLATION = 1008
WS_INTERNAL_ERROR = 1011
WS_TRY_AGAIN_LATER = 1013
WS_GOING_AWAY = 1001

_BEARER = 'Bearer realm="userscope"'


@dataclass(frozen=True, slots=True)
class Refusal:
    """One refusal: its HTTP status, WebSocket close code and JSON body."""

    status: int
    close_code: int
    error: str
    detail: str
    www_authenticate: str | None = None

    def body(self) -> bytes:
        """The JSON body: ``{"error": ..., "detail": ...}`` (never a stack trace)."""
        return json.dumps({"error": self.error, "detail": self.detail}).encode()

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
            "the token expired; sign in again",
            f'{_BEARER}, error="invalid_token", error_description="the token expired"',
        )
    if isinstance(exc, AuthenticationError):
        return Refusal(
            401,
            WS_POLICY_VIOLATION,
            exc.code,
            f"the token was refused: {exc.reason}",
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
    body = refusal.body()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if refusal.www_authenticate is not None:
        headers.append((b"www-authenticate", refusal.www_authenticate.encode()))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
