"""Errors raised by the FastAPI adapter when credentials are missing, bad or expired."""

from __future__ import annotations

from datetime import UTC, datetime

from userscope.errors import UserscopeError

__all__ = [
    "AlreadyInstalledError",
    "AuthenticationError",
    "AuthenticationRequiredError",
    "CredentialsExpiredError",
    "CredentialsTooLargeError",
    "InvalidClaimError",
    "NotInstalledError",
    "UnknownSigningKeyError",
]


class AuthenticationError(UserscopeError, PermissionError):
    """The request carried credentials that could not be verified.

    The adapter turns it into ``401`` (HTTP, ``WWW-Authenticate: Bearer
    error="invalid_token"``) or closes the WebSocket with ``1008``.

    Attributes:
        reason: why the credentials were refused (safe to show to the client:
            it never contains the token).

    Example:
        >>> from userscope.adapters.fastapi import AuthenticationError
        >>> err = AuthenticationError("signature verification failed")
        >>> err.reason
        'signature verification failed'
    """

    #: short machine-readable code used in the JSON refusal body
    code: str = "invalid_token"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"invalid credentials: {reason}; send a valid token as "
            "`Authorization: Bearer <token>` (or, for WebSockets, in `Sec-WebSocket-Protocol`)"
        )


class AuthenticationRequiredError(AuthenticationError):
    """An endpoint needs a scoped object but the request carried no credentials.

    Raised by :func:`Inject` when the provider cannot be resolved because no
    user scope is active; the adapter answers ``401`` with
    ``WWW-Authenticate: Bearer``.

    Attributes:
        reason: why the request was refused.
        provider: repr of the provider the endpoint asked for (logged, never
            sent to the client).

    Example:
        >>> from userscope.adapters.fastapi import AuthenticationRequiredError
        >>> err = AuthenticationRequiredError(provider="Container.agent")
        >>> err.provider
        'Container.agent'
    """

    code = "unauthenticated"

    def __init__(self, provider: str, reason: str = "this endpoint needs a signed-in user") -> None:
        self.provider = provider
        super().__init__(reason)


class CredentialsExpiredError(AuthenticationError):
    """The token was valid once but its ``exp`` has passed.

    Raised at authentication time and by :func:`message_scope` when a
    WebSocket outlives its token; the adapter answers ``401`` or closes the
    WebSocket with ``1008``.

    Attributes:
        reason: why the credentials were refused.
        expired_at: the token's ``exp`` as a Unix timestamp (seconds), when known.

    Example:
        >>> from userscope.adapters.fastapi import CredentialsExpiredError
        >>> err = CredentialsExpiredError(expired_at=0.0)
        >>> err.expired_at
        0.0
    """

    code = "token_expired"

    def __init__(self, expired_at: float | None = None) -> None:
        self.expired_at = expired_at
        when = (
            ""
            if expired_at is None
            else f" at {datetime.fromtimestamp(expired_at, UTC).isoformat(timespec='seconds')}"
        )
        super().__init__(f"the token expired{when}; sign in again to get a fresh token")


class InvalidClaimError(AuthenticationError):
    """A verified token lacks a claim the authenticator maps, or it has the wrong shape.

    Raised for the user id, tenant and thread claims, the numeric date claims
    (``exp``/``nbf``/``iat`` must be JSON numbers), roles/scopes/groups of the
    wrong type, and refusals by the ``claims_hook``; the adapter answers ``401``
    with the code ``invalid_claim``, never a 500.

    Attributes:
        reason: why the credentials were refused.
        claim: the claim's name.

    Example:
        >>> from userscope.adapters.fastapi import InvalidClaimError
        >>> err = InvalidClaimError("tid", "is missing")
        >>> err.claim, err.code
        ('tid', 'invalid_claim')
    """

    code = "invalid_claim"

    def __init__(self, claim: str, problem: str) -> None:
        self.claim = claim
        super().__init__(f"claim {claim!r} {problem}")


class UnknownSigningKeyError(AuthenticationError):
    """The token names a key (``kid``) the identity provider does not publish.

    Raised after one (rate-limited) refetch of the provider's keys; the adapter
    answers ``401`` with the code ``unknown_key``.

    Attributes:
        reason: why the credentials were refused.
        kid: the token header's ``kid`` (``None`` when it named none).

    Example:
        >>> from userscope.adapters.fastapi import UnknownSigningKeyError
        >>> UnknownSigningKeyError("k-2024").kid
        'k-2024'
    """

    code = "unknown_key"

    def __init__(self, kid: str | None) -> None:
        self.kid = kid
        which = "no kid" if kid is None else f"kid {kid[:64]!r}"
        super().__init__(f"no signing key of the identity provider matches the token ({which})")


class CredentialsTooLargeError(AuthenticationError):
    """The credentials are larger than any real token; refused before any parsing.

    The adapter answers ``401`` with the code ``credentials_too_large``.

    Attributes:
        reason: why the credentials were refused.
        size: how many bytes were sent.
        limit: the most that is read (``JWTAuthenticator(max_token_bytes=...)``).

    Example:
        >>> from userscope.adapters.fastapi import CredentialsTooLargeError
        >>> err = CredentialsTooLargeError(size=8_000_000, limit=16_384)
        >>> err.limit
        16384
    """

    code = "credentials_too_large"

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"the credentials are {size} bytes long; at most {limit} are read")


class AlreadyInstalledError(UserscopeError, RuntimeError):
    """:func:`install` was called a second time on the same app.

    One app has one userscope middleware, one container and one sessions runtime; the
    app is left as the first call installed it.

    Attributes:
        app: the app's title.

    Example:
        >>> from userscope.adapters.fastapi import AlreadyInstalledError
        >>> AlreadyInstalledError("FastAPI").app
        'FastAPI'
    """

    def __init__(self, app: str) -> None:
        self.app = app
        super().__init__(
            f"userscope is already installed on app {app!r}; call install() once per app "
            "(build the app in a factory function if tests need a fresh one each time)"
        )


class NotInstalledError(UserscopeError, RuntimeError):
    """An endpoint resolved `Inject` on an app that userscope was not installed on.

    Without :func:`install` no middleware opens scopes or authenticates anyone, so no
    scoped provider could ever resolve. `Inject` logs this error once per request on
    logger ``userscope.adapters.fastapi`` (one line) and answers ``500`` (a WebSocket is
    closed with ``1011``): a misconfigured server, never a credentials problem.

    Attributes:
        provider: what needed the adapter: the provider the endpoint injects, or
            ``message_scope()`` (entered on a WebSocket the middleware never saw).
        path: the request path.

    Example:
        >>> from userscope.adapters.fastapi import NotInstalledError
        >>> err = NotInstalledError(provider="Container.agent", path="/chat")
        >>> err.path
        '/chat'
    """

    def __init__(self, provider: str, path: str) -> None:
        self.provider = provider
        self.path = path
        super().__init__(
            f"{path} needs {provider}, but userscope is not installed on this app: call "
            "userscope.adapters.fastapi.install(app, container, sessions, authenticate=...) "
            "on the app that serves this route, before it starts serving"
        )
