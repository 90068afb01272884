"""Per-connection state the middleware keeps in the ASGI scope (private)."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, TypeVar, cast

from dependency_injector import providers
from dependency_injector.wiring import ProvidersMap
from starlette.requests import HTTPConnection

__all__ = [
    "EXPIRY_KEY",
    "PROVIDERS_KEY",
    "STATE_KEY",
    "credentials_expiry",
    "map_provider",
    "resolve_installed",
    "set_credentials_expiry",
]

#: ASGI scope key under which an authenticator records the credentials' expiry
EXPIRY_KEY = "userscope.credentials_expire_at"
#: ASGI scope key under which the middleware keeps its per-connection state
STATE_KEY = "userscope.connection"
#: ASGI scope key under which the middleware exposes the installed container's providers
PROVIDERS_KEY = "userscope.providers"

T = TypeVar("T")


def set_credentials_expiry(connection: HTTPConnection, expires_at: float | None) -> None:
    """Tell the adapter when the credentials of this connection stop being valid.

    `JWTAuthenticator` calls it with the token's ``exp``; a custom
    ``authenticate`` callable should call it too, so that a WebSocket whose
    credentials expire is closed with ``1008`` and opens no message scope
    after that instant.

    Args:
        connection: the connection being authenticated.
        expires_at: Unix timestamp in seconds, or ``None`` for "never".

    Example:
        >>> from userscope.adapters.fastapi import set_credentials_expiry
        >>> from userscope.adapters.fastapi._state import credentials_expiry
        >>> from starlette.requests import HTTPConnection
        >>> conn = HTTPConnection({"type": "websocket", "headers": []})
        >>> set_credentials_expiry(conn, 1_700_000_000.0)
        >>> credentials_expiry(conn.scope)
        1700000000.0
    """
    if expires_at is None:
        connection.scope.pop(EXPIRY_KEY, None)
    else:
        connection.scope[EXPIRY_KEY] = float(expires_at)


def credentials_expiry(scope: MutableMapping[str, Any]) -> float | None:
    """Return the expiry recorded by :func:`set_credentials_expiry`, if any.

    Args:
        scope: the ASGI connection scope.

    Returns:
        The Unix timestamp in seconds, or ``None``.

    Example:
        >>> from userscope.adapters.fastapi._state import credentials_expiry
        >>> credentials_expiry({"type": "http"}) is None
        True
    """
    value = scope.get(EXPIRY_KEY)
    return None if value is None else float(value)


def map_provider(
    providers_map: ProvidersMap | None, provider: providers.Provider[T]
) -> providers.Provider[T]:
    """``provider`` as seen through ``providers_map`` (itself when the map does not know it)."""
    if providers_map is None:
        return provider
    target = providers_map.resolve_provider(provider)
    return provider if target is None else cast("providers.Provider[T]", target)


def resolve_installed(
    scope: MutableMapping[str, Any], provider: providers.Provider[T]
) -> providers.Provider[T]:
    """Map a container-class provider to the installed container instance's provider.

    ``Container.agent`` (class attribute) and ``container.agent`` (instance
    attribute) are different provider objects; resolving through the instance
    keeps its overrides and its scoped caches. Providers the container does not
    know are returned unchanged.
    """
    providers_map = scope.get(PROVIDERS_KEY)
    if not isinstance(providers_map, ProvidersMap):
        return provider
    return map_provider(providers_map, provider)
