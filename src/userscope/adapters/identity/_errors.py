"""Errors of the identity layer: misconfigured keys, unreachable or inconsistent providers."""

from __future__ import annotations

from collections.abc import Sequence

from userscope.errors import UserscopeError

__all__ = [
    "AlgorithmKeyMismatchError",
    "IdentityProviderUnavailableError",
    "OIDCDiscoveryError",
    "WeakKeyError",
]

#: the command every "weak secret" message recommends
GENERATE_SECRET = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


class WeakKeyError(UserscopeError, ValueError):
    """An HMAC secret (``HS256``/``HS384``/``HS512``) is too short or obviously guessable.

    Attributes:
        length: the secret's length in bytes (UTF-8).
        problem: what is wrong with it (never the secret itself).

    Example:
        >>> from userscope.adapters.identity import WeakKeyError
        >>> err = WeakKeyError(length=1, problem="it is 1 bytes long; at least 32 are needed")
        >>> err.length
        1
        >>> "token_urlsafe(32)" in str(err)
        True
    """

    def __init__(self, *, length: int, problem: str) -> None:
        self.length = length
        self.problem = problem
        super().__init__(
            f"the HMAC secret is refused: {problem}. Anyone who guesses it can sign tokens for "
            f"any user; generate one with `{GENERATE_SECRET}` and keep it out of the source"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_weak_key, (self.length, self.problem))


def _rebuild_weak_key(length: int, problem: str) -> WeakKeyError:
    return WeakKeyError(length=length, problem=problem)


class AlgorithmKeyMismatchError(UserscopeError, ValueError):
    """The ``algorithms`` cannot all be verified with the given key (or key source).

    Raised at construction, so an algorithm-confusion setup (``HS256`` next to a
    public key, whose PEM text an attacker can use as the HMAC secret) never serves
    a request.

    Attributes:
        algorithms: the algorithms that were asked for.
        key_type: what the key is (``"RSA public key"``, ``"HMAC secret"``, ``"JWKS"``...).
        problem: what does not fit.

    Example:
        >>> from userscope.adapters.identity import AlgorithmKeyMismatchError
        >>> err = AlgorithmKeyMismatchError(["RS256", "HS256"], "RSA public key",
        ...                                 "HS256 is symmetric")
        >>> err.algorithms
        ('RS256', 'HS256')
    """

    def __init__(self, algorithms: Sequence[str], key_type: str, problem: str) -> None:
        self.algorithms = tuple(algorithms)
        self.key_type = key_type
        self.problem = problem
        super().__init__(
            f"algorithms {list(self.algorithms)!r} do not fit the key ({key_type}): {problem}; "
            "list only the algorithms your identity provider signs with, all of one key type "
            "(HS* with a shared secret, or RS*/PS*/ES*/EdDSA with a public key or a JWKS)"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.algorithms, self.key_type, self.problem))


class OIDCDiscoveryError(UserscopeError, ValueError):
    """The provider's discovery document is unusable (wrong issuer, no ``jwks_uri``...).

    A configuration problem, not an outage: fix the issuer URL.

    Attributes:
        issuer: the issuer you configured.
        url: the discovery URL that was read.
        problem: what is wrong with the document.

    Example:
        >>> from userscope.adapters.identity import OIDCDiscoveryError
        >>> err = OIDCDiscoveryError("https://id.example", "https://id.example/.well-known/"
        ...                          "openid-configuration", "it has no jwks_uri")
        >>> err.problem
        'it has no jwks_uri'
    """

    def __init__(self, issuer: str, url: str, problem: str) -> None:
        self.issuer = issuer
        self.url = url
        self.problem = problem
        super().__init__(
            f"OpenID Connect discovery for issuer {issuer!r} failed: {problem} (read {url}); "
            "pass the issuer exactly as your provider writes it in the tokens' `iss` claim"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.issuer, self.url, self.problem))


class IdentityProviderUnavailableError(UserscopeError, ConnectionError):
    """The signing keys could not be fetched and no usable cached keys are left.

    The FastAPI adapter answers ``503`` (WebSockets: close ``1013``), not ``401``:
    the client's token may be perfectly valid, the server just cannot check it now.

    Attributes:
        url: the discovery or JWKS URL that failed.
        reason: why (timeout, connection refused, HTTP status, bad JSON...).

    Example:
        >>> from userscope.adapters.fastapi import IdentityProviderUnavailableError
        >>> err = IdentityProviderUnavailableError("https://id.example/jwks", "timed out")
        >>> err.reason
        'timed out'
    """

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"the identity provider's keys could not be fetched from {url}: {reason}; "
            "tokens cannot be checked until it answers again (requests get 503)"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.url, self.reason))
