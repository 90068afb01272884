"""Verified identity: `JWTAuthenticator` on PyJWT and the `Authenticator` protocol."""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Awaitable, Iterable, Sequence
from datetime import timedelta
from typing import Any, Protocol

import jwt
from pydantic import ValidationError
from starlette.requests import HTTPConnection

import userscope as us

from ._errors import AuthenticationError, CredentialsExpiredError
from ._state import set_credentials_expiry

__all__ = ["Authenticator", "JWTAuthenticator", "bearer_subprotocol_token"]

#: the subprotocol that announces a token in ``Sec-WebSocket-Protocol``
BEARER_SUBPROTOCOL = "bearer"

#: longer tokens are verified every time, never remembered
_MAX_REMEMBERED_TOKEN = 4096


class Authenticator(Protocol):
    """What `install(..., authenticate=...)` accepts.

    Any async callable ``(HTTPConnection) -> UserExecutionContext | None``:
    return ``None`` when the connection carries no credentials at all, return
    a context built **only** from verified claims, and raise
    `AuthenticationError` when credentials are present but invalid.

    Example:
        >>> async def authenticate(conn: HTTPConnection) -> us.UserExecutionContext | None:
        ...     return None  # nobody is ever signed in
    """

    def __call__(self, connection: HTTPConnection, /) -> Awaitable[us.UserExecutionContext | None]:
        """Authenticate one HTTP request or WebSocket handshake."""
        ...


def _new_id(prefix: str) -> str:
    # 128 random bits as 32 hex digits: the shape of uuid4().hex at a fifth of its cost
    return f"{prefix}-{secrets.token_hex(16)}"


def bearer_subprotocol_token(subprotocols: Iterable[str]) -> str | None:
    """Find a token offered as ``Sec-WebSocket-Protocol: bearer, <token>``.

    Browsers cannot set headers on a WebSocket, so the page offers two
    subprotocols, ``"bearer"`` and the token; the adapter accepts with
    ``"bearer"`` (never echoing the token).

    Args:
        subprotocols: the subprotocols the client offered, in order.

    Returns:
        The token, or ``None`` when no ``bearer`` subprotocol was offered.

    Raises:
        AuthenticationError: ``bearer`` was offered without a token after it.

    Example:
        >>> bearer_subprotocol_token(["bearer", "eyJ.a.b"])
        'eyJ.a.b'
        >>> bearer_subprotocol_token(["chat"]) is None
        True
    """
    offered = [p.strip() for p in subprotocols]
    for index, name in enumerate(offered):
        if name.lower() == BEARER_SUBPROTOCOL:
            if index + 1 >= len(offered) or not offered[index + 1]:
                raise AuthenticationError("the 'bearer' subprotocol must be followed by the token")
            return offered[index + 1]
    return None


class JWTAuthenticator:
    """Authenticate connections with a signed JWT (PyJWT), HS256 or RS256.

    Where the token is read:

    * HTTP: ``Authorization: Bearer <token>``.
    * WebSocket: the same header; else ``Sec-WebSocket-Protocol: bearer, <token>``
      (what a browser can send); else, only if ``allow_query_token=True``, the
      query parameter ``query_param``.

    The context is built only from verified claims: ``user_id`` from
    ``user_claim``, ``thread_id`` from ``thread_claim`` (or a fresh id per
    connection when ``thread_claim`` is ``None``), fresh ``request_id`` and
    ``connection_id``. Headers such as ``X-User-Id``, query or body fields are
    never read. The token's ``exp`` is recorded so the adapter can close a
    WebSocket when it passes.

    Verifying a token costs more than a small request (tens of microseconds in
    PyJWT), and a client sends the same token with every request. So
    :meth:`verify` remembers the claims of up to ``cache_size`` tokens it has
    verified, keyed by the exact token string, and answers them again without
    decoding until ``exp`` (plus ``leeway``) passes. Only tokens that passed
    every check are remembered; a token that differs in any character is
    verified in full; changing ``key``, ``algorithms``, ``audience``, ``issuer``,
    ``leeway``, ``user_claim``, ``thread_claim`` or ``required_claims`` forgets
    them all. Checks you add by overriding :meth:`verify` (and calling
    ``super().verify``) or :meth:`context_from_claims` still run on every
    connection. ``cache_size=0`` verifies every token in full.

    Args:
        key: HS256 shared secret, or the RS256/ES256 *public* key (PEM or key object).
        algorithms: accepted algorithms, e.g. ``["HS256"]`` or ``["RS256"]``.
        audience: required ``aud`` value(s), or ``None`` to not check it.
        issuer: required ``iss``, or ``None``.
        leeway: seconds of clock skew tolerated on ``exp``/``nbf``/``iat``.
        user_claim: the claim holding the user id.
        thread_claim: the claim holding the thread id (then it is required), or ``None``.
        required_claims: claims that must be present (``exp`` by default).
        allow_query_token: also read ``?{query_param}=<token>`` on WebSockets.
        query_param: name of that query parameter.
        cache_size: how many verified tokens to remember (``0``: none).

    Example:
        >>> import jwt, time
        >>> auth = JWTAuthenticator(key="s3cret-s3cret-s3cret-s3cret-32b!", algorithms=["HS256"])
        >>> token = jwt.encode({"sub": "alice", "exp": time.time() + 60},
        ...                    "s3cret-s3cret-s3cret-s3cret-32b!", algorithm="HS256")
        >>> auth.verify(token)["sub"]
        'alice'
    """

    def __init__(
        self,
        *,
        key: Any,
        algorithms: Sequence[str],
        audience: str | Sequence[str] | None = None,
        issuer: str | None = None,
        leeway: float = 0,
        user_claim: str = "sub",
        thread_claim: str | None = None,
        required_claims: Sequence[str] = ("exp",),
        allow_query_token: bool = False,
        query_param: str = "token",
        cache_size: int = 1024,
    ) -> None:
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        if not algorithms:
            raise ValueError("JWTAuthenticator needs at least one algorithm, e.g. ['HS256']")
        if any(a.lower() == "none" for a in algorithms):
            raise ValueError("JWTAuthenticator refuses the 'none' algorithm: tokens must be signed")
        self.key = key
        self.algorithms = list(algorithms)
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway
        self.user_claim = user_claim
        self.thread_claim = thread_claim
        self.required_claims = list(required_claims)
        self.allow_query_token = allow_query_token
        self.query_param = query_param
        self.cache_size = cache_size
        # token -> (valid until, claims); insertion order is eviction order
        self._verified: dict[str, tuple[float, dict[str, Any]]] = {}
        self._verified_under: tuple[Any, ...] | None = None
        self._verified_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"JWTAuthenticator(algorithms={self.algorithms!r}, audience={self.audience!r}, "
            f"issuer={self.issuer!r}, user_claim={self.user_claim!r})"
        )

    def token_from(self, connection: HTTPConnection) -> str | None:
        """Return the raw token the connection carries, or ``None``.

        Args:
            connection: the HTTP request or WebSocket handshake.

        Raises:
            AuthenticationError: a ``Bearer`` header or ``bearer`` subprotocol without a token.

        Example:
            >>> from starlette.requests import HTTPConnection
            >>> headers = [(b"authorization", b"Bearer t0k")]
            >>> conn = HTTPConnection({"type": "http", "headers": headers})
            >>> JWTAuthenticator(key="k", algorithms=["HS256"]).token_from(conn)
            't0k'
        """
        header = connection.headers.get("authorization")
        if header is not None:
            scheme, _, value = header.strip().partition(" ")
            if scheme.lower() == "bearer":
                token = value.strip()
                if not token:
                    raise AuthenticationError("empty Bearer token")
                return token
        if connection.scope.get("type") != "websocket":
            return None
        offered = bearer_subprotocol_token(connection.scope.get("subprotocols") or ())
        if offered is not None:
            return offered
        if self.allow_query_token:
            in_query = connection.query_params.get(self.query_param)
            if in_query is not None:
                if not in_query.strip():
                    raise AuthenticationError(
                        f"empty token in query parameter {self.query_param!r}"
                    )
                return in_query.strip()
        return None

    def verify(self, token: str) -> dict[str, Any]:
        """Check the token's signature and claims and return the claims.

        Args:
            token: the encoded JWT.

        Returns:
            The verified claims.

        Raises:
            CredentialsExpiredError: the token's ``exp`` has passed.
            AuthenticationError: any other verification failure.

        Example:
            >>> JWTAuthenticator(key="k", algorithms=["HS256"]).verify("not-a-jwt")
            Traceback (most recent call last):
            ...
            userscope.adapters.fastapi._errors.AuthenticationError: invalid credentials: ...
        """
        remember = self.cache_size > 0 and len(token) <= _MAX_REMEMBERED_TOKEN
        if remember:
            settings = self._settings()
            found = self._recall(token, settings)
            if found is not None:
                return found
        claims = self._decode(token)
        if remember:
            self._remember(token, settings, claims)
        return claims

    def _settings(self) -> tuple[Any, ...]:
        """Everything a verification result depends on, besides the token and the clock."""
        audience = self.audience
        return (
            self.key,
            tuple(self.algorithms),
            audience if audience is None or isinstance(audience, str) else tuple(audience),
            self.issuer,
            self.leeway,
            self.user_claim,
            self.thread_claim,
            tuple(self.required_claims),
        )

    def _recall(self, token: str, settings: tuple[Any, ...]) -> dict[str, Any] | None:
        with self._verified_lock:
            if settings != self._verified_under:
                self._verified.clear()
                self._verified_under = settings
                return None
            found = self._verified.get(token)
            if found is None:
                return None
            if time.time() >= found[0]:  # expired since: verify in full (and refuse)
                del self._verified[token]
                return None
            return {key: _copy_claims(value) for key, value in found[1].items()}

    def _remember(self, token: str, settings: tuple[Any, ...], claims: dict[str, Any]) -> None:
        if "exp" not in claims:
            valid_until = math.inf  # no exp: nothing about the token changes with time
        else:
            try:  # the way PyJWT reads it: expired once int(exp) <= now - leeway
                valid_until = int(claims["exp"]) + _seconds(self.leeway)
            except (ValueError, TypeError, OverflowError):
                return
        with self._verified_lock:
            if settings != self._verified_under:
                self._verified.clear()
                self._verified_under = settings
            verified = self._verified
            while len(verified) >= self.cache_size:
                del verified[next(iter(verified))]
            verified[token] = (valid_until, {k: _copy_claims(v) for k, v in claims.items()})

    def _decode(self, token: str) -> dict[str, Any]:
        require = list(dict.fromkeys([*self.required_claims, self.user_claim]))
        if self.thread_claim is not None:
            require.append(self.thread_claim)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": require, "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError as exc:
            raise CredentialsExpiredError(_unverified_exp(token)) from exc
        except jwt.InvalidTokenError as exc:
            raise AuthenticationError(str(exc) or type(exc).__name__) from exc
        except (ValueError, TypeError) as exc:  # e.g. an unusable key for this token
            raise AuthenticationError(
                f"token could not be verified ({type(exc).__name__})"
            ) from exc
        return claims

    def context_from_claims(self, claims: dict[str, Any]) -> us.UserExecutionContext:
        """Build the `UserExecutionContext` from verified claims.

        Args:
            claims: claims returned by :meth:`verify`.

        Raises:
            AuthenticationError: the user (or thread) claim is not a valid id.

        Example:
            >>> auth = JWTAuthenticator(key="k", algorithms=["HS256"])
            >>> auth.context_from_claims({"sub": "alice"}).user_id
            'alice'
        """
        user_id = claims.get(self.user_claim)
        if not isinstance(user_id, str):
            raise AuthenticationError(f"claim {self.user_claim!r} must be a string")
        if self.thread_claim is not None:
            thread_id = claims.get(self.thread_claim)
            if not isinstance(thread_id, str):
                raise AuthenticationError(f"claim {self.thread_claim!r} must be a string")
        else:
            thread_id = _new_id("t")
        try:
            return us.UserExecutionContext(
                user_id=user_id,
                thread_id=thread_id,
                request_id=_new_id("r"),
                connection_id=_new_id("c"),
            )
        except ValidationError as exc:
            fields = sorted({str(err["loc"][0]) for err in exc.errors() if err["loc"]})
            raise AuthenticationError(
                f"the token's identity claims are not valid ids ({', '.join(fields)})"
            ) from exc

    async def __call__(self, connection: HTTPConnection) -> us.UserExecutionContext | None:
        """Authenticate one connection.

        Returns:
            The verified context, or ``None`` when no token was sent.

        Raises:
            AuthenticationError: a token was sent but is invalid or expired.
        """
        token = self.token_from(connection)
        if token is None:
            return None
        claims = self.verify(token)
        context = self.context_from_claims(claims)
        exp = claims.get("exp")
        set_credentials_expiry(connection, float(exp) if isinstance(exp, int | float) else None)
        return context


def _seconds(leeway: float | timedelta) -> float:
    return leeway.total_seconds() if isinstance(leeway, timedelta) else float(leeway)


def _copy_claims(value: Any) -> Any:
    """A copy of decoded JSON that shares nothing mutable with ``value``."""
    if isinstance(value, dict):
        return {key: _copy_claims(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_claims(item) for item in value]
    return value


def _unverified_exp(token: str) -> float | None:
    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.InvalidTokenError:
        return None
    return float(exp) if isinstance(exp, int | float) else None
