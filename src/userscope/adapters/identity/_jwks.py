"""Signing keys from a JWKS endpoint (optionally found by OpenID Connect discovery).

One `JWKSKeySet` per authenticator. It fetches in a background thread (never on
the event loop), caches the keys for ``ttl`` seconds, refreshes them in the
background once they are half that old, and refetches at once, at most every
``min_refresh_interval`` seconds, when a token names a ``kid`` it does not know.
While the endpoint is down the cached keys keep working until ``ttl`` has passed;
after that, lookups raise `IdentityProviderUnavailableError` (a 503 at the adapter)
and one warning is logged per outage.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from jwt import PyJWK, PyJWKClient

from userscope._durations import Duration, to_seconds
from userscope._log import fields

from ._errors import IdentityProviderUnavailableError, OIDCDiscoveryError
from ._keys import ASYMMETRIC_ALGORITHMS, is_private_key, key_fits_algorithm

__all__ = ["JWKSKeySet", "SigningKey", "check_url", "discovery_url"]

logger = logging.getLogger("userscope.adapters.identity")

#: discovery documents and key sets larger than this are refused
_MAX_DOCUMENT_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One verification key of the set: its ``kid``, pinned ``alg`` (if any) and key object."""

    kid: str | None
    alg: str | None
    key: Any

    def fits(self, algorithm: str) -> bool:
        """Whether a token signed with ``algorithm`` may be verified with this key."""
        if self.alg is not None and self.alg != algorithm:
            return False
        return key_fits_algorithm(self.key, algorithm)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    keys: tuple[SigningKey, ...]
    fetched_at: float  # time.monotonic() of the successful fetch
    generation: int
    by_kid: dict[str, tuple[SigningKey, ...]] = field(default_factory=dict)

    def find(self, kid: str | None, algorithm: str) -> tuple[SigningKey, ...]:
        candidates = self.keys if kid is None else self.by_kid.get(kid, ())
        if kid is None:
            candidates = tuple(k for k in candidates if k.kid is None) or candidates
        return tuple(k for k in candidates if k.fits(algorithm))


def discovery_url(issuer: str) -> str:
    """The OpenID Connect discovery URL of ``issuer``.

    Example:
        >>> from userscope.adapters.identity._jwks import discovery_url
        >>> discovery_url("https://login.example.com/realms/acme/")
        'https://login.example.com/realms/acme/.well-known/openid-configuration'
    """
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def check_url(name: str, url: str) -> str:
    """Refuse a URL that is not ``https://`` (plain ``http://`` only on loopback hosts).

    Example:
        >>> from userscope.adapters.identity._jwks import check_url
        >>> check_url("jwks_url", "http://127.0.0.1:9400/jwks")
        'http://127.0.0.1:9400/jwks'
        >>> check_url("issuer", "http://id.example.com")
        Traceback (most recent call last):
        ...
        ValueError: issuer must be an https:// URL ...
    """
    if not isinstance(url, str):
        raise TypeError(f"{name} must be a URL string, got {type(url).__name__}")
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or ""
    if parsed.scheme == "https" and host:
        return url
    if parsed.scheme == "http" and _is_loopback(host):
        return url
    raise ValueError(
        f"{name} must be an https:// URL (plain http:// only on localhost), got {url!r}: "
        "keys fetched over plain HTTP can be swapped by anyone on the path"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _get_json(url: str, timeout: float, headers: Mapping[str, str]) -> Any:
    request = urllib.request.Request(url, headers={"Accept": "application/json", **headers})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read(_MAX_DOCUMENT_BYTES + 1)
    if len(body) > _MAX_DOCUMENT_BYTES:
        raise ValueError(f"the document is larger than {_MAX_DOCUMENT_BYTES} bytes")
    return json.loads(body)


class JWKSKeySet:
    """The signing keys of one identity provider, cached and refreshed off the event loop.

    Args:
        jwks_url: the JWKS endpoint; ``None`` to discover it from ``issuer``.
        issuer: the OpenID Connect issuer to discover (when ``jwks_url`` is ``None``).
        ttl: seconds fetched keys stay usable without a successful refetch.
        min_refresh_interval: at most one fetch per this many seconds, whatever
            the tokens say (unknown ``kid`` floods, outages).
        timeout: seconds one HTTP fetch may take.
        headers: extra HTTP headers for the fetches (e.g. a ``User-Agent``).

    Example:
        >>> from userscope.adapters.identity import JWKSKeySet
        >>> keys = JWKSKeySet(jwks_url="https://id.example.com/.well-known/jwks.json")
        >>> keys.issuer is None, keys.generation
        (True, 0)
    """

    def __init__(
        self,
        *,
        jwks_url: str | None = None,
        issuer: str | None = None,
        ttl: Duration = 600.0,
        min_refresh_interval: Duration = 30.0,
        timeout: Duration = 5.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if (jwks_url is None) == (issuer is None):
            raise ValueError("JWKSKeySet needs exactly one of jwks_url= or issuer=")
        ttl = to_seconds("jwks_ttl", ttl)
        min_refresh_interval = to_seconds("jwks_min_refresh_interval", min_refresh_interval)
        timeout = to_seconds("jwks_timeout", timeout)
        self.jwks_url = None if jwks_url is None else check_url("jwks_url", jwks_url)
        self.configured_issuer = None if issuer is None else check_url("issuer", issuer)
        #: the issuer the discovery document names (``None`` until discovered)
        self.issuer: str | None = None
        self.ttl: float = ttl
        self.min_refresh_interval: float = min_refresh_interval
        self.timeout: float = timeout
        self.headers = dict(headers or {})
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._attempted_at: float | None = None
        self._inflight: concurrent.futures.Future[None] | None = None
        self._last_error: BaseException | None = None
        self._failing = False  # in an outage (one warning each)
        #: successful fetches and failed ones, since construction
        self.fetches = 0
        self.failures = 0

    def __repr__(self) -> str:
        where = self.jwks_url if self.jwks_url is not None else self.configured_issuer
        return f"JWKSKeySet({where!r}, ttl={self.ttl}, generation={self.generation})"

    @property
    def generation(self) -> int:
        """How many times a fetch changed the keys (``0``: none fetched yet)."""
        snapshot = self._snapshot
        return 0 if snapshot is None else snapshot.generation

    # -- lookups --------------------------------------------------------------------------

    def keys_for(
        self, kid: str | None, algorithm: str, *, retry: int | None = None
    ) -> tuple[SigningKey, ...]:
        """Blocking lookup (waits for a fetch when one is needed); see :meth:`akeys_for`."""
        decision = self._decide(kid, algorithm, retry)
        if isinstance(decision, tuple):
            return decision
        with contextlib.suppress(concurrent.futures.TimeoutError):
            decision.result(timeout=self.timeout * 2 + 1)
        return self._after_fetch(kid, algorithm)

    async def akeys_for(
        self, kid: str | None, algorithm: str, *, retry: int | None = None
    ) -> tuple[SigningKey, ...]:
        """The keys that may verify a token with this ``kid`` and ``alg``.

        Waits (without blocking the event loop) for a fetch when the keys are
        missing, expired, or do not know ``kid``; rate-limited, so most calls
        never wait.

        Args:
            kid: the token header's ``kid`` (``None``: any key of the set).
            algorithm: the token header's ``alg``.
            retry: a generation the caller already tried (a kid-less token whose
                signature failed): refetch if allowed and return the new keys, or
                ``()`` when nothing changed.

        Returns:
            The candidate keys, ``()`` when the provider does not know the key.

        Raises:
            IdentityProviderUnavailableError: no usable keys and the endpoint
                cannot be reached (or was tried too recently).
        """
        decision = self._decide(kid, algorithm, retry)
        if isinstance(decision, tuple):
            return decision
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.shield(asyncio.wrap_future(decision)), self.timeout * 2 + 1
            )
        return self._after_fetch(kid, algorithm)

    def load(self) -> None:
        """Fetch the keys now, blocking (e.g. at start-up, to fail fast).

        Raises:
            IdentityProviderUnavailableError: the endpoint could not be reached.
            OIDCDiscoveryError: the discovery document is unusable.
        """
        with self._lock:
            future = self._start_fetch_locked(time.monotonic())
        future.result(timeout=self.timeout * 2 + 1)
        self._raise_last_error()

    async def aload(self) -> None:
        """Fetch the keys now without blocking the event loop; see :meth:`load`."""
        with self._lock:
            future = self._start_fetch_locked(time.monotonic())
        await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.timeout * 2 + 1)
        self._raise_last_error()

    def _raise_last_error(self) -> None:
        with self._lock:
            error = self._last_error
        if error is not None:
            raise error

    def _usable(self, now: float) -> _Snapshot | None:
        snapshot = self._snapshot
        if snapshot is None or now - snapshot.fetched_at >= self.ttl:
            return None
        return snapshot

    def _may_fetch(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self.min_refresh_interval

    def _decide(
        self, kid: str | None, algorithm: str, retry: int | None
    ) -> tuple[SigningKey, ...] | concurrent.futures.Future[None]:
        """Keys to use right now, or the fetch to wait for first."""
        now = time.monotonic()
        with self._lock:
            snapshot = self._usable(now)
            if snapshot is not None and retry is None:
                found = snapshot.find(kid, algorithm)
                if found:
                    if (
                        now - snapshot.fetched_at >= self.ttl / 2
                        and self._inflight is None
                        and self._may_fetch(now)
                    ):
                        self._start_fetch_locked(now)  # refresh in the background
                    return found
            if snapshot is not None and retry is not None and snapshot.generation != retry:
                return snapshot.find(kid, algorithm)  # rotated since the caller's try
            if self._inflight is not None:
                return self._inflight
            if self._may_fetch(now):
                return self._start_fetch_locked(now)
            if snapshot is not None:
                return ()  # unknown key, and a fetch happened moments ago
            raise self._unavailable_locked()

    def _after_fetch(self, kid: str | None, algorithm: str) -> tuple[SigningKey, ...]:
        with self._lock:
            snapshot = self._usable(time.monotonic())
            if snapshot is None:
                raise self._unavailable_locked()
            return snapshot.find(kid, algorithm)

    def _unavailable_locked(self) -> IdentityProviderUnavailableError:
        error = self._last_error
        if isinstance(error, IdentityProviderUnavailableError):
            # a fresh error per request: re-raising one instance would grow its traceback
            return IdentityProviderUnavailableError(error.url, error.reason)
        where = self.jwks_url or discovery_url(self.configured_issuer or "")
        if error is None:
            return IdentityProviderUnavailableError(where, "the keys are still being fetched")
        return IdentityProviderUnavailableError(where, str(error))

    # -- fetching -------------------------------------------------------------------------

    def _start_fetch_locked(self, now: float) -> concurrent.futures.Future[None]:
        if self._inflight is not None:
            return self._inflight
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        future.set_running_or_notify_cancel()  # never cancelled by a waiter that gives up
        self._inflight = future
        self._attempted_at = now
        thread = threading.Thread(
            target=self._fetch, args=(future,), name="userscope-jwks-fetch", daemon=True
        )
        thread.start()
        return future

    def _fetch(self, future: concurrent.futures.Future[None]) -> None:
        try:
            keys = self._fetch_keys()
        except BaseException as exc:  # recorded for the waiters, never lost
            self._record_failure(exc)
        else:
            self._record_success(keys)
        finally:
            with self._lock:
                self._inflight = None
            future.set_result(None)

    def _fetch_keys(self) -> tuple[SigningKey, ...]:
        jwks_url = self.jwks_url
        if jwks_url is None:
            jwks_url = self._discover()
        try:
            client = PyJWKClient(
                jwks_url, cache_jwk_set=False, timeout=self.timeout, headers=dict(self.headers)
            )
            data = client.fetch_data()
        except jwt.PyJWKClientConnectionError as exc:
            raise IdentityProviderUnavailableError(jwks_url, _short(exc)) from exc
        except ValueError as exc:
            raise IdentityProviderUnavailableError(jwks_url, f"not JSON ({_short(exc)})") from exc
        entries = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise IdentityProviderUnavailableError(jwks_url, "the response has no 'keys' list")
        keys: list[SigningKey] = []
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            alg = entry.get("alg")
            if alg is not None and alg not in ASYMMETRIC_ALGORITHMS:
                continue  # e.g. an "oct" HS256 key or an encryption algorithm: never for us
            try:
                parsed = PyJWK(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue  # a key type PyJWT cannot use: skip it, like PyJWKSet does
            kid = entry.get("kid")
            key = parsed.key.public_key() if is_private_key(parsed.key) else parsed.key
            keys.append(SigningKey(kid if isinstance(kid, str) else None, alg, key))
        if not keys:
            raise IdentityProviderUnavailableError(
                jwks_url, "the key set has no usable signing key"
            )
        return tuple(keys)

    def _discover(self) -> str:
        issuer = self.configured_issuer
        assert issuer is not None  # construction guarantees one of the two
        url = discovery_url(issuer)
        try:
            document = _get_json(url, self.timeout, self.headers)
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise IdentityProviderUnavailableError(url, _short(exc)) from exc
        except ValueError as exc:
            raise IdentityProviderUnavailableError(url, f"not JSON ({_short(exc)})") from exc
        if not isinstance(document, dict):
            raise OIDCDiscoveryError(issuer, url, "it is not a JSON object")
        found = document.get("issuer")
        if not isinstance(found, str) or found.rstrip("/") != issuer.rstrip("/"):
            raise OIDCDiscoveryError(
                issuer, url, f"it names the issuer {found!r}, not the one configured"
            )
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise OIDCDiscoveryError(issuer, url, "it has no jwks_uri")
        try:
            check_url("jwks_uri", jwks_uri)
        except ValueError as exc:
            raise OIDCDiscoveryError(issuer, url, str(exc)) from exc
        with self._lock:
            self.issuer = found
            self.jwks_url = jwks_uri
        return jwks_uri

    def _record_success(self, keys: tuple[SigningKey, ...]) -> None:
        with self._lock:
            old = self._snapshot
            same = old is not None and _same_keys(old.keys, keys)
            generation = (0 if old is None else old.generation) + (0 if same else 1)
            by_kid: dict[str, list[SigningKey]] = {}
            for key in keys:
                if key.kid is not None:
                    by_kid.setdefault(key.kid, []).append(key)
            self._snapshot = _Snapshot(
                keys,
                time.monotonic(),
                generation,
                {kid: tuple(found) for kid, found in by_kid.items()},
            )
            self._last_error = None
            recovered = self._failing
            self._failing = False
            self.fetches += 1
        if recovered:
            logger.info(
                "the identity provider's keys could be fetched again",
                extra=fields("jwks_recovered"),
            )

    def _record_failure(self, exc: BaseException) -> None:
        with self._lock:
            self._last_error = exc
            first = not self._failing
            self._failing = True
            self.failures += 1
            snapshot = self._snapshot
            remaining = (
                None if snapshot is None else self.ttl - (time.monotonic() - snapshot.fetched_at)
            )
        if first:
            if remaining is not None and remaining > 0:
                what = f"the cached keys are used for {remaining:.0f} s more, then requests get 503"
            else:
                what = "requests get 503 until it answers"
            logger.warning(
                "cannot fetch the identity provider's keys (%s); %s",
                exc,
                what,
                extra=fields("jwks_unavailable"),
            )


def _same_keys(old: tuple[SigningKey, ...], new: tuple[SigningKey, ...]) -> bool:
    def ident(key: SigningKey) -> tuple[Any, ...]:
        numbers: Any
        try:
            numbers = key.key.public_numbers()
        except AttributeError:  # EdDSA keys have no numbers: compare their raw bytes
            from cryptography.hazmat.primitives import serialization

            numbers = key.key.public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
        return (key.kid, key.alg, numbers)

    return sorted(map(repr, map(ident, old))) == sorted(map(repr, map(ident, new)))


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
