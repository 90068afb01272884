"""Verified identity: `JWTAuthenticator` on PyJWT and the `Authenticator` protocol."""

from __future__ import annotations

import base64
import json
import logging
import math
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from datetime import timedelta
from types import MappingProxyType
from typing import Any, Protocol

import jwt
from pydantic import ValidationError
from starlette.requests import HTTPConnection

import userscope as us
from userscope._log import fields
from userscope.adapters.identity._claims import MISSING, claim_value, string_list
from userscope.adapters.identity._errors import AlgorithmKeyMismatchError
from userscope.adapters.identity._jwks import JWKSKeySet, SigningKey
from userscope.adapters.identity._keys import (
    HMAC_ALGORITHMS,
    check_algorithms,
    check_key_for_algorithms,
)

from ._errors import (
    AuthenticationError,
    CredentialsExpiredError,
    CredentialsTooLargeError,
    InvalidClaimError,
    UnknownSigningKeyError,
)
from ._state import set_credentials_expiry

__all__ = [
    "Authenticator",
    "ClaimsHook",
    "DEFAULT_THREAD_ID",
    "JWTAuthenticator",
    "bearer_subprotocol_token",
]

logger = logging.getLogger("userscope.adapters.fastapi")

DEFAULT_THREAD_ID = "default"
"""The thread of a token that carries no thread claim: one stable id, never a random one."""

ClaimsHook = Callable[[Mapping[str, Any]], Mapping[str, Any] | None]
"""``hook(claims) -> extra metadata | None``: maps claims the authenticator does not know."""

#: the subprotocol that announces a token in ``Sec-WebSocket-Protocol``
BEARER_SUBPROTOCOL = "bearer"

#: longer tokens are verified every time, never remembered
_MAX_REMEMBERED_TOKEN = 4096
#: bytes an ``Authorization`` header may have beyond the token (``Bearer `` and spaces)
_SCHEME_ALLOWANCE = 64
#: bytes a WebSocket query string may have beyond the token (other parameters)
_QUERY_ALLOWANCE = 2048
#: longest JOSE header read to pick a key (real ones are under 200 characters)
_MAX_HEADER_CHARS = 2048
#: a kid-less token is tried against at most this many keys of the set
_MAX_CANDIDATE_KEYS = 8
#: claims that RFC 7519 says are NumericDate (JSON numbers)
_NUMERIC_DATES = ("exp", "nbf", "iat")

#: keys the adapter fetched for the token being verified (token, keys), see `__call__`
_PREPARED: ContextVar[list[Any] | None] = ContextVar("userscope_jwt_prepared", default=None)


class Authenticator(Protocol):
    """What `install(..., authenticate=...)` accepts.

    Any async callable ``(HTTPConnection) -> UserExecutionContext | None``:
    return ``None`` when the connection carries no credentials at all, return
    a context built **only** from verified claims, and raise
    `AuthenticationError` when credentials are present but invalid.

    Example:
        >>> import userscope as us
        >>> from starlette.requests import HTTPConnection
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
        >>> from userscope.adapters.fastapi import bearer_subprotocol_token
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
    """Authenticate connections with a signed JWT: a static key, a JWKS endpoint or OIDC.

    Three ways to say where the verification keys come from (exactly one):

    * ``key=``: an HMAC secret (``HS256``/``HS384``/``HS512``, at least 32 random
      bytes) or a public key (PEM or key object) for ``RS*``/``PS*``/``ES*``/``EdDSA``;
    * ``jwks_url=``: the identity provider's JWKS endpoint (keys rotate on their own);
    * :meth:`from_oidc`: OpenID Connect discovery from the issuer URL.

    ``algorithms`` is required and checked against the key at construction:
    symmetric and asymmetric algorithms are never mixed, ``HS*`` never runs with
    a public key, and a weak HMAC secret is refused (`WeakKeyError`).

    Where the token is read:

    * HTTP: ``Authorization: Bearer <token>``.
    * WebSocket: the same header; else ``Sec-WebSocket-Protocol: bearer, <token>``
      (what a browser can send); else, only if ``allow_query_token=True``, the
      query parameter ``query_param``.

    Credentials longer than ``max_token_bytes`` are refused before any parsing.

    The context is built only from verified claims (headers such as
    ``X-User-Id``, query or body fields are never read):

    * ``user_id`` from ``user_claim`` (default ``sub``), required;
    * ``tenant_id`` from ``tenant_claim`` (when set, then required);
    * ``thread_id`` from ``thread_claim``; a token without it gets ``default_thread``
      (:data:`DEFAULT_THREAD_ID`, ``"default"``), the same for every connection;
    * ``metadata["roles"]``, ``metadata["scopes"]`` and ``metadata["groups"]``:
      tuples of strings from the first present of ``roles_claims``,
      ``scopes_claims`` (a space-separated ``scope`` string is split) and
      ``groups_claims`` (empty when absent);
    * whatever ``claims_hook(claims)`` returns, merged into ``metadata``.

    A claim name is looked up as-is first, then as a dotted path
    (``"realm_access.roles"``). A missing or malformed mapped claim is refused
    with `InvalidClaimError` (401 ``invalid_claim``), never a 500.

    ``exp``, ``nbf`` and ``iat`` are checked with ``leeway`` seconds of clock
    skew, and must be JSON numbers. The token's ``exp`` plus ``leeway`` is
    recorded, so the adapter closes a WebSocket at the same instant an HTTP
    request with that token starts being refused.

    Verifying costs more than a small request, and a client sends the same token
    with every request, so :meth:`verify` remembers the claims of up to
    ``cache_size`` verified tokens, keyed by the exact token string, until
    ``exp`` (plus ``leeway``) passes. Changing ``key``, ``algorithms``,
    ``audience``, ``issuer``, ``leeway`` or ``required_claims``, or a JWKS
    refresh that changes the provider's keys, forgets them all, so a token
    signed with a key the provider has since removed is refused after the next
    refresh. Checks you add by overriding :meth:`verify` (and calling
    ``super().verify``) or :meth:`context_from_claims` still run on every
    connection. ``cache_size=0`` verifies every token in full.

    Args:
        key: HMAC secret, or the *public* key (PEM or key object).
        jwks_url: the provider's JWKS endpoint (``https://``; ``http://`` on loopback only).
        algorithms: accepted algorithms, e.g. ``["RS256"]`` or ``["HS256"]``.
        audience: required ``aud`` value(s), or ``None`` to not check it.
        issuer: required ``iss``, or ``None``.
        leeway: seconds (or a ``timedelta``) of clock skew tolerated on ``exp``/``nbf``/``iat``.
        user_claim: the claim holding the user id.
        tenant_claim: the claim holding the tenant id (then required), or ``None``.
        thread_claim: the claim holding the thread id, or ``None``.
        default_thread: the thread of tokens without ``thread_claim``; ``None`` refuses them.
        roles_claims: claims to read roles from, first present wins.
        scopes_claims: claims to read OAuth scopes from (``"scope"``, ``"scp"``).
        groups_claims: claims to read groups from.
        claims_hook: ``hook(claims) -> mapping | None``, merged into ``ctx.metadata``;
            raise `InvalidClaimError` in it to refuse the token.
        required_claims: claims that must be present (``exp`` by default).
        allow_query_token: also read ``?{query_param}=<token>`` on WebSockets.
        query_param: name of that query parameter.
        cache_size: how many verified tokens to remember (``0``: none).
        max_token_bytes: longest credentials read (``Authorization`` header,
            subprotocol or query token).
        jwks_ttl: seconds fetched keys stay usable without a successful refetch.
        jwks_min_refresh_interval: at most one key fetch per this many seconds.
        jwks_timeout: seconds one key or discovery fetch may take.
        key_set: a `JWKSKeySet` to share between authenticators (instead of
            ``key``/``jwks_url``).

    Raises:
        AlgorithmKeyMismatchError: the algorithms do not fit the key.
        WeakKeyError: the HMAC secret is too short or guessable.
        ValueError: no key source, several, or an invalid parameter.

    Example:
        >>> from userscope.adapters.fastapi import JWTAuthenticator
        >>> import jwt, secrets, time
        >>> secret = secrets.token_urlsafe(32)
        >>> auth = JWTAuthenticator(key=secret, algorithms=["HS256"], tenant_claim="org")
        >>> token = jwt.encode({"sub": "alice", "org": "acme", "exp": time.time() + 60},
        ...                    secret, algorithm="HS256")
        >>> ctx = auth.context_from_claims(auth.verify(token))
        >>> ctx.user_id, ctx.tenant_id, ctx.thread_id
        ('alice', 'acme', 'default')
    """

    def __init__(
        self,
        *,
        key: Any = None,
        jwks_url: str | None = None,
        algorithms: Sequence[str],
        audience: str | Sequence[str] | None = None,
        issuer: str | None = None,
        leeway: float | timedelta = 0,
        user_claim: str = "sub",
        tenant_claim: str | None = None,
        thread_claim: str | None = None,
        default_thread: str | None = DEFAULT_THREAD_ID,
        roles_claims: Sequence[str] = ("roles",),
        scopes_claims: Sequence[str] = ("scope", "scp"),
        groups_claims: Sequence[str] = ("groups",),
        claims_hook: ClaimsHook | None = None,
        required_claims: Sequence[str] = ("exp",),
        allow_query_token: bool = False,
        query_param: str = "token",
        cache_size: int = 1024,
        max_token_bytes: int = 16 * 1024,
        jwks_ttl: float | timedelta = 600.0,
        jwks_min_refresh_interval: float | timedelta = 30.0,
        jwks_timeout: float | timedelta = 5.0,
        key_set: JWKSKeySet | None = None,
    ) -> None:
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        if max_token_bytes < 256:
            raise ValueError(f"max_token_bytes must be >= 256, got {max_token_bytes}")
        if _seconds(leeway) < 0:
            raise ValueError(f"leeway must be >= 0 seconds, got {leeway!r}")
        if thread_claim is None and default_thread is None:
            raise ValueError("give a thread_claim, a default_thread, or both")
        sources = [
            name
            for name, v in (("key", key), ("jwks_url", jwks_url), ("key_set", key_set))
            if v is not None
        ]
        if len(sources) != 1:
            raise ValueError(
                "JWTAuthenticator needs exactly one key source: key= (a secret or public key), "
                f"jwks_url=, or JWTAuthenticator.from_oidc(issuer, ...); got {sources or 'none'}"
            )
        names = check_algorithms(algorithms)
        if key is not None:
            check_key_for_algorithms(key, names)
        else:
            symmetric = [a for a in names if a in HMAC_ALGORITHMS]
            if symmetric:
                raise AlgorithmKeyMismatchError(
                    names, "JWKS", f"{symmetric} are symmetric; a JWKS publishes public keys"
                )
            if key_set is None:
                assert jwks_url is not None
                key_set = JWKSKeySet(
                    jwks_url=jwks_url,
                    ttl=jwks_ttl,
                    min_refresh_interval=jwks_min_refresh_interval,
                    timeout=jwks_timeout,
                )
        if default_thread is not None:
            _check_default_thread(default_thread)
        self.key = key
        self.key_set = key_set
        self.algorithms = list(names)
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway
        self.user_claim = user_claim
        self.tenant_claim = tenant_claim
        self.thread_claim = thread_claim
        self.default_thread = default_thread
        self.roles_claims = _names("roles_claims", roles_claims)
        self.scopes_claims = _names("scopes_claims", scopes_claims)
        self.groups_claims = _names("groups_claims", groups_claims)
        self.claims_hook = claims_hook
        self.required_claims = list(required_claims)
        self.allow_query_token = allow_query_token
        self.query_param = query_param
        self.cache_size = cache_size
        self.max_token_bytes = max_token_bytes
        # token -> (valid until, claims); insertion order is eviction order
        self._verified: dict[str, tuple[float, dict[str, Any]]] = {}
        self._verified_under: tuple[Any, ...] | None = None
        self._verified_lock = threading.Lock()

    @classmethod
    def from_oidc(
        cls,
        issuer: str,
        *,
        audience: str | Sequence[str],
        algorithms: Sequence[str],
        jwks_ttl: float | timedelta = 600.0,
        jwks_min_refresh_interval: float | timedelta = 30.0,
        jwks_timeout: float | timedelta = 5.0,
        **options: Any,
    ) -> JWTAuthenticator:
        """Verify tokens of an OpenID Connect provider, found by discovery.

        Reads ``<issuer>/.well-known/openid-configuration`` (on first use, in a
        background thread; call :meth:`aload_keys` at start-up to fail fast),
        checks that it names this issuer, and verifies tokens with the keys at
        its ``jwks_uri``. ``iss`` and ``aud`` are always checked.

        Args:
            issuer: the issuer URL exactly as the tokens' ``iss`` (``https://``).
            audience: the audience your API is registered as (required).
            algorithms: what the provider signs with, e.g. ``["RS256"]``.
            jwks_ttl: seconds fetched keys stay usable without a successful refetch.
            jwks_min_refresh_interval: at most one key fetch per this many seconds.
            jwks_timeout: seconds one HTTP fetch may take.
            **options: any other `JWTAuthenticator` keyword (claims, leeway...).

        Example:
            >>> from userscope.adapters.fastapi import JWTAuthenticator
            >>> auth = JWTAuthenticator.from_oidc(
            ...     "https://id.example.com/realms/acme", audience="chat-api",
            ...     algorithms=["RS256"], tenant_claim="tenant")
            >>> auth.issuer
            'https://id.example.com/realms/acme'
        """
        if not audience:
            raise ValueError("from_oidc needs the audience your API is registered as")
        for name in ("key", "jwks_url", "key_set", "issuer"):
            if name in options:
                raise TypeError(f"from_oidc() takes no {name}=; the issuer's discovery gives it")
        key_set = JWKSKeySet(
            issuer=issuer,
            ttl=jwks_ttl,
            min_refresh_interval=jwks_min_refresh_interval,
            timeout=jwks_timeout,
        )
        return cls(
            key_set=key_set, algorithms=algorithms, audience=audience, issuer=issuer, **options
        )

    def load_keys(self) -> None:
        """Fetch the provider's keys now (discovery first for OIDC), blocking.

        Does nothing for a static ``key``.

        Raises:
            IdentityProviderUnavailableError: the provider could not be reached.
            OIDCDiscoveryError: the discovery document does not fit the issuer.

        Example:
            >>> from userscope.adapters.fastapi import JWTAuthenticator
            >>> JWTAuthenticator(key=b"\\x8f" * 8 + bytes(range(24)),
            ...                  algorithms=["HS256"]).load_keys()
        """
        if self.key_set is not None:
            self.key_set.load()

    async def aload_keys(self) -> None:
        """Like :meth:`load_keys`, without blocking the event loop (e.g. in a lifespan).

        Example:
            >>> from userscope.adapters.fastapi import JWTAuthenticator
            >>> import asyncio
            >>> auth = JWTAuthenticator(key=bytes(range(32)), algorithms=["HS512"])
            >>> asyncio.run(auth.aload_keys())
        """
        if self.key_set is not None:
            await self.key_set.aload()

    def __repr__(self) -> str:
        source = "key" if self.key_set is None else repr(self.key_set)
        return (
            f"JWTAuthenticator({source}, algorithms={self.algorithms!r}, "
            f"audience={self.audience!r}, issuer={self.issuer!r}, user_claim={self.user_claim!r})"
        )

    # -- where the token is -----------------------------------------------------------------

    def token_from(self, connection: HTTPConnection) -> str | None:
        """Return the raw token the connection carries, or ``None``.

        Args:
            connection: the HTTP request or WebSocket handshake.

        Raises:
            CredentialsTooLargeError: the credentials exceed ``max_token_bytes``.
            AuthenticationError: a ``Bearer`` header or ``bearer`` subprotocol without a token.

        Example:
            >>> from userscope.adapters.fastapi import JWTAuthenticator
            >>> from starlette.requests import HTTPConnection
            >>> headers = [(b"authorization", b"Bearer t0k")]
            >>> conn = HTTPConnection({"type": "http", "headers": headers})
            >>> JWTAuthenticator(key=bytes(range(32)), algorithms=["HS256"]).token_from(conn)
            't0k'
        """
        limit = self.max_token_bytes
        scope = connection.scope
        for name, raw in scope.get("headers") or ():
            if name == b"authorization" and len(raw) > limit + _SCHEME_ALLOWANCE:
                raise CredentialsTooLargeError(len(raw), limit)
        header = connection.headers.get("authorization")
        if header is not None:
            scheme, _, value = header.strip().partition(" ")
            if scheme.lower() == "bearer":
                token = value.strip()
                if not token:
                    raise AuthenticationError("empty Bearer token")
                return token
        if scope.get("type") != "websocket":
            return None
        subprotocols = scope.get("subprotocols") or ()
        for offered_protocol in subprotocols:
            if len(offered_protocol) > limit:
                raise CredentialsTooLargeError(len(offered_protocol), limit)
        offered = bearer_subprotocol_token(subprotocols)
        if offered is not None:
            return offered
        if self.allow_query_token:
            query = scope.get("query_string") or b""
            if len(query) > limit + _QUERY_ALLOWANCE:
                raise CredentialsTooLargeError(len(query), limit)
            in_query = connection.query_params.get(self.query_param)
            if in_query is not None:
                if not in_query.strip():
                    raise AuthenticationError(
                        f"empty token in query parameter {self.query_param!r}"
                    )
                return in_query.strip()
        return None

    # -- verification -----------------------------------------------------------------------

    def verify(self, token: str) -> dict[str, Any]:
        """Check the token's signature and claims and return the claims.

        With a JWKS, a key that must be fetched first is fetched here,
        blocking; the adapter calls this after fetching without blocking.

        Args:
            token: the encoded JWT.

        Returns:
            The verified claims.

        Raises:
            CredentialsExpiredError: the token's ``exp`` has passed.
            UnknownSigningKeyError: the provider publishes no key for the token.
            InvalidClaimError: ``exp``/``nbf``/``iat`` are not numbers.
            AuthenticationError: any other verification failure.
            IdentityProviderUnavailableError: the keys cannot be fetched.

        Example:
            >>> from userscope.adapters.fastapi import JWTAuthenticator
            >>> JWTAuthenticator(key=bytes(range(32)), algorithms=["HS256"]).verify("not-a-jwt")
            Traceback (most recent call last):
            ...
            userscope.adapters.fastapi._errors.AuthenticationError: invalid credentials: ...
        """
        keys: tuple[SigningKey, ...] | None = None
        if self.key_set is not None:
            prepared = _PREPARED.get()
            if prepared is not None and prepared[0] == token:
                keys = prepared[1]
            else:
                return self._verify_blocking(token, self.key_set)
        remember = self.cache_size > 0 and len(token) <= _MAX_REMEMBERED_TOKEN
        if remember:
            settings = self._settings()
            found = self._recall(token, settings)
            if found is not None:
                return found
        claims = self._decode(token, keys)
        if remember:
            self._remember(token, settings, claims)
        return claims

    def _verify_blocking(self, token: str, key_set: JWKSKeySet) -> dict[str, Any]:
        """:meth:`verify` called directly (not by the adapter): fetch keys here, blocking."""
        kid, alg = self._header(token)
        keys = key_set.keys_for(kid, alg)
        if not keys:
            raise UnknownSigningKeyError(kid)
        generation = key_set.generation
        prepared: list[Any] = [token, keys]
        reset = _PREPARED.set(prepared)
        try:
            try:
                return JWTAuthenticator.verify(self, token)
            except AuthenticationError as exc:
                if not _may_be_rotated(kid, exc):
                    raise
                rotated = key_set.keys_for(kid, alg, retry=generation)
                if not rotated or key_set.generation == generation:
                    raise
                prepared[1] = rotated
                return JWTAuthenticator.verify(self, token)
        finally:
            _PREPARED.reset(reset)

    def _header(self, token: str) -> tuple[str | None, str]:
        """The token header's ``kid`` and ``alg``, checked before any key is looked up."""
        header = _unverified_header(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise AuthenticationError(f"the token's algorithm {str(alg)[:16]!r} is not accepted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthenticationError("the token's 'kid' header must be a string")
        return kid, alg

    def _settings(self) -> tuple[Any, ...]:
        """Everything a verification result depends on, besides the token and the clock."""
        audience = self.audience
        key_set = self.key_set
        return (
            self.key if key_set is None else (key_set, key_set.generation, key_set.issuer),
            tuple(self.algorithms),
            audience if audience is None or isinstance(audience, str) else tuple(audience),
            self.issuer,
            self.leeway,
            self.user_claim,
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
        valid_until = self._valid_until(claims)
        if valid_until is None:
            return
        with self._verified_lock:
            if settings != self._verified_under:
                self._verified.clear()
                self._verified_under = settings
            verified = self._verified
            while len(verified) >= self.cache_size:
                del verified[next(iter(verified))]
            verified[token] = (valid_until, {k: _copy_claims(v) for k, v in claims.items()})

    def _valid_until(self, claims: Mapping[str, Any]) -> float | None:
        """When PyJWT starts refusing these claims: ``int(exp) + leeway`` (inf: no ``exp``)."""
        if "exp" not in claims:
            return math.inf
        try:
            return int(claims["exp"]) + _seconds(self.leeway)
        except (ValueError, TypeError, OverflowError):
            return None

    def _decode(self, token: str, keys: tuple[SigningKey, ...] | None = None) -> dict[str, Any]:
        require = list(dict.fromkeys([*self.required_claims, self.user_claim]))
        if keys is None:
            return self._decode_with(token, self.key, require, self.issuer)
        issuer = self.issuer
        if self.key_set is not None and self.key_set.issuer is not None:
            issuer = self.key_set.issuer  # as the discovery document spells it
        failure: AuthenticationError | None = None
        for candidate in keys[:_MAX_CANDIDATE_KEYS]:
            try:
                return self._decode_with(token, candidate.key, require, issuer)
            except AuthenticationError as exc:
                if not isinstance(exc.__cause__, jwt.InvalidSignatureError):
                    raise
                failure = failure or exc
        assert failure is not None  # keys is never empty here
        raise failure

    def _decode_with(
        self, token: str, key: Any, require: list[str], issuer: str | None
    ) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=issuer,
                leeway=self.leeway,
                options={"require": require, "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError as exc:
            raise CredentialsExpiredError(_unverified_exp(token)) from exc
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidClaimError(exc.claim, "is missing") from exc
        except jwt.exceptions.InvalidSubjectError as exc:
            raise InvalidClaimError("sub", "must be a string") from exc
        except jwt.PyJWTError as exc:  # InvalidKeyError too: a key that does not fit the token
            raise AuthenticationError(str(exc) or type(exc).__name__) from exc
        except (ValueError, TypeError) as exc:  # e.g. an unusable key for this token
            raise AuthenticationError(
                f"token could not be verified ({type(exc).__name__})"
            ) from exc
        for name in _NUMERIC_DATES:
            if name in claims and not _is_number(claims[name]):
                raise InvalidClaimError(name, "must be a number of seconds, not a string")
        return claims

    # -- claims -> context ------------------------------------------------------------------

    def context_from_claims(self, claims: dict[str, Any]) -> us.UserExecutionContext:
        """Build the `UserExecutionContext` from verified claims.

        Args:
            claims: claims returned by :meth:`verify`.

        Raises:
            InvalidClaimError: a mapped claim is missing or is not a valid id
                (or list of strings), or the ``claims_hook`` refused it.

        Example:
            >>> from userscope.adapters.fastapi import JWTAuthenticator
            >>> auth = JWTAuthenticator(key=bytes(range(32)), algorithms=["HS256"])
            >>> ctx = auth.context_from_claims({"sub": "alice", "scope": "read write"})
            >>> ctx.user_id, ctx.thread_id, ctx.metadata["scopes"]
            ('alice', 'default', ('read', 'write'))
        """
        user_id = self._string_claim(claims, self.user_claim)
        tenant_id = (
            None if self.tenant_claim is None else self._string_claim(claims, self.tenant_claim)
        )
        thread_id = self.default_thread
        if self.thread_claim is not None:
            value = claim_value(claims, self.thread_claim)
            if value is not MISSING or thread_id is None:
                thread_id = self._string_claim(claims, self.thread_claim)
        assert thread_id is not None
        metadata: dict[str, Any] = {
            "roles": self._list_claim(claims, self.roles_claims, space_separated=False),
            "scopes": self._list_claim(claims, self.scopes_claims, space_separated=True),
            "groups": self._list_claim(claims, self.groups_claims, space_separated=False),
        }
        if self.claims_hook is not None:
            metadata.update(self._run_hook(claims))
        try:
            return us.UserExecutionContext(
                user_id=user_id,
                thread_id=thread_id,
                tenant_id=tenant_id,
                request_id=_new_id("r"),
                connection_id=_new_id("c"),
                metadata=metadata,
            )
        except ValidationError as exc:
            claim_of = {
                "user_id": self.user_claim,
                "tenant_id": self.tenant_claim,
                "thread_id": self.thread_claim,
            }
            bad = sorted(
                {
                    str(claim_of.get(str(err["loc"][0])) or err["loc"][0])
                    for err in exc.errors()
                    if err["loc"]
                }
            )
            raise InvalidClaimError(
                ", ".join(bad),
                "is not a valid id (the token's identity claims must be "
                "non-empty visible text, not a placeholder; field "
                + ", ".join(sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]}))
                + ")",
            ) from exc

    def _string_claim(self, claims: Mapping[str, Any], name: str) -> str:
        value = claim_value(claims, name)
        if value is MISSING:
            raise InvalidClaimError(name, "is missing")
        if not isinstance(value, str):
            raise InvalidClaimError(name, f"must be a string, not {type(value).__name__}")
        return value

    def _list_claim(
        self, claims: Mapping[str, Any], names: tuple[str, ...], *, space_separated: bool
    ) -> tuple[str, ...]:
        for name in names:
            value = claim_value(claims, name)
            if value is MISSING:
                continue
            items = string_list(value, space_separated=space_separated)
            if items is None:
                raise InvalidClaimError(name, "must be a string or a list of strings")
            return items
        return ()

    def _run_hook(self, claims: Mapping[str, Any]) -> Mapping[str, Any]:
        assert self.claims_hook is not None
        view = MappingProxyType({k: _copy_claims(v) for k, v in claims.items()})
        try:
            extra = self.claims_hook(view)
        except AuthenticationError:
            raise
        except (LookupError, ValueError, TypeError) as exc:
            logger.info(
                "claims_hook refused a token: %s: %s",
                type(exc).__name__,
                exc,
                extra=fields("claims_hook_refused"),
            )
            raise InvalidClaimError(
                "claims_hook", f"refused the token ({type(exc).__name__})"
            ) from exc
        if extra is None:
            return {}
        if not isinstance(extra, Mapping):
            raise TypeError(
                f"claims_hook must return a mapping or None, got {type(extra).__name__}"
            )
        return extra

    # -- the Authenticator protocol ---------------------------------------------------------

    async def __call__(self, connection: HTTPConnection) -> us.UserExecutionContext | None:
        """Authenticate one connection.

        Returns:
            The verified context, or ``None`` when no token was sent.

        Raises:
            AuthenticationError: a token was sent but is invalid or expired.
            IdentityProviderUnavailableError: the provider's keys cannot be fetched.
        """
        token = self.token_from(connection)
        if token is None:
            return None
        if self.key_set is None:
            claims = self.verify(token)
        else:
            claims = await self._verify_with_jwks(token, self.key_set)
        context = self.context_from_claims(claims)
        valid_until = self._valid_until(claims)
        set_credentials_expiry(
            connection, None if valid_until is None or valid_until == math.inf else valid_until
        )
        return context

    async def _verify_with_jwks(self, token: str, key_set: JWKSKeySet) -> dict[str, Any]:
        """Fetch what the token needs off the event loop, then :meth:`verify` it."""
        kid, alg = self._header(token)
        keys = await key_set.akeys_for(kid, alg)
        if not keys:
            raise UnknownSigningKeyError(kid)
        generation = key_set.generation
        prepared: list[Any] = [token, keys]
        reset = _PREPARED.set(prepared)
        try:
            try:
                return self.verify(token)
            except AuthenticationError as exc:
                if not _may_be_rotated(kid, exc):
                    raise
                rotated = await key_set.akeys_for(kid, alg, retry=generation)
                if not rotated or key_set.generation == generation:
                    raise
                prepared[1] = rotated
                return self.verify(token)
        finally:
            _PREPARED.reset(reset)


def _seconds(leeway: float | timedelta) -> float:
    return leeway.total_seconds() if isinstance(leeway, timedelta) else float(leeway)


def _unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header only, to pick a key (PyJWT checks it again when it verifies).

    ``jwt.get_unverified_header`` decodes the payload and signature too, character by
    character; this reads the first segment alone.
    """
    segment, dot, _ = token.partition(".")
    if not dot or len(segment) > _MAX_HEADER_CHARS:
        raise AuthenticationError("not a JWT: expected header.payload.signature")
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, TypeError) as exc:  # binascii.Error and JSONDecodeError are ValueErrors
        raise AuthenticationError("the token's header is not base64url JSON") from exc
    if not isinstance(header, dict):
        raise AuthenticationError("the token's header is not a JSON object")
    return header


def _may_be_rotated(kid: str | None, exc: AuthenticationError) -> bool:
    """A token without a kid whose signature failed: the provider may have rotated its key."""
    return kid is None and isinstance(exc.__cause__, jwt.InvalidSignatureError)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _names(parameter: str, names: Sequence[str]) -> tuple[str, ...]:
    if isinstance(names, str):
        return (names,)
    if not all(isinstance(name, str) and name for name in names):
        raise TypeError(f"{parameter} must be claim names, got {names!r}")
    return tuple(names)


def _check_default_thread(thread: str) -> None:
    try:
        us.UserExecutionContext(user_id="u", thread_id=thread)
    except ValidationError as exc:
        raise ValueError(f"default_thread {thread!r} is not a valid thread id: {exc}") from exc


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
