"""`Inject`: FastAPI dependencies that resolve dependency-injector providers (private)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar, cast

from dependency_injector import providers
from dependency_injector.wiring import ProvidersMap
from fastapi import Depends, HTTPException, WebSocketException
from starlette.requests import HTTPConnection

import userscope as us
from userscope._log import fields
from userscope.providers._scoped import _is_awaitable  # one cache of plain result types

from ._errors import AuthenticationRequiredError, NotInstalledError
from ._state import PROVIDERS_KEY, map_provider

__all__ = ["Inject", "injected_provider", "raise_out_of_scope", "resolve_all"]

T = TypeVar("T")

#: attribute of an `Inject` dependency that names the provider it resolves
_PROVIDER_ATTR = "__userscope_provider__"

logger = logging.getLogger("userscope.adapters.fastapi")

#: how `Inject` in a WebSocket endpoint's signature should get a RequestScoped provider
_MESSAGE_SCOPE_HINT = (
    "a WebSocket endpoint's dependencies are resolved once per connection, with only the "
    "USER and CONNECTION scopes open; resolve RequestScoped providers per message inside "
    "`async with message_scope(websocket): agent = await container.agent.async_()` "
    "(from userscope.adapters.fastapi import message_scope)"
)


async def resolve_all(
    requested: Sequence[providers.Provider[Any]], targets: Sequence[providers.Provider[Any]]
) -> list[Any]:
    """Resolve ``targets`` in order (awaiting asynchronous results), for `Inject`.

    ``requested[i]`` is what the endpoint asked for and ``targets[i]`` the installed
    container's provider for it. Resolving a scoped provider with no signed-in user
    raises `AuthenticationRequiredError` (answered ``401``).
    """
    values: list[Any] = []
    for target in targets:
        try:
            value = target()
            if _is_awaitable(value):
                value = await value
        except us.OutOfScopeError as exc:
            raise_out_of_scope(requested[len(values)], exc)
        values.append(value)
    return values


def raise_out_of_scope(requested: providers.Provider[Any], exc: us.OutOfScopeError) -> NoReturn:
    """Re-raise ``exc`` for `Inject`: `AuthenticationRequiredError` when no user is signed
    in (answered ``401``), else unchanged."""
    if us.current_context() is None:
        raise AuthenticationRequiredError(provider=repr(requested)) from exc
    raise exc


def injected_provider(call: Callable[..., Any] | None) -> providers.Provider[Any] | None:
    """The provider behind an `Inject` dependency callable, or ``None`` for anything else."""
    found = getattr(call, _PROVIDER_ATTR, None)
    return found if isinstance(found, providers.Provider) else None


def Inject(provider: providers.Provider[T]) -> T:
    """Inject what ``provider`` provides into a FastAPI endpoint, inside the active scope.

    Use it as a default value or inside ``Annotated``; it needs no ``@inject``
    decorator and no ``container.wire(...)``. The provider is resolved once per
    request on the event loop (no threadpool hop, also for ``def`` endpoints) and
    awaited when it is asynchronous. Resolving a scoped provider without a
    signed-in user answers ``401`` (`AuthenticationRequiredError`). On an app
    without `install`, a provider that needs a scope answers ``500`` and logs
    `NotInstalledError`, which says to call ``install(app, ...)``.

    In ``async def`` HTTP endpoints, `install` resolves the endpoint's ``Inject``
    parameters itself, before FastAPI reads the body and solves the other
    dependencies, instead of going through FastAPI's dependency machinery (which
    costs about as much as a small request). Elsewhere (``def`` endpoints,
    WebSocket endpoints, inside your own dependencies) it is an ordinary
    ``async def`` FastAPI dependency.

    A provider of the container *class* (``Container.agent``) is resolved
    through the container *instance* given to `install`, so that overrides
    and scoped caches are the instance's.

    In WebSocket endpoints the connection and user scopes are open while the
    endpoint's dependencies are resolved, so inject `UserScoped` and
    `ConnectionScoped` providers there; resolve `RequestScoped` ones per
    message inside ``async with message_scope(websocket):`` (injecting one in
    the signature raises `OutOfScopeError` whose hint shows exactly that).

    Args:
        provider: any dependency-injector provider, typically ``Container.agent``.

    Returns:
        A FastAPI ``Depends`` marker, typed as the provided object so that
        ``agent: Agent = Inject(Container.agent)`` type-checks (and a wrong
        annotation does not).

    Example:
        >>> from userscope.adapters.fastapi import Inject
        >>> from typing import Annotated
        >>> from dependency_injector import containers, providers
        >>> class Container(containers.DeclarativeContainer):
        ...     greeting = providers.Object("hello")
        >>> async def endpoint(greeting: Annotated[str, Inject(Container.greeting)]) -> str:
        ...     return greeting
    """
    name = getattr(provider, "__name__", None) or type(provider).__name__
    requested = (provider,)
    # (providers map, its provider for ``provider``): one tuple, swapped whole
    cached: tuple[ProvidersMap | None, tuple[providers.Provider[Any], ...]] = (None, requested)

    async def resolve(connection: HTTPConnection) -> Any:
        nonlocal cached
        providers_map = connection.scope.get(PROVIDERS_KEY)
        seen = cached
        if providers_map is not seen[0]:
            if not isinstance(providers_map, ProvidersMap):
                providers_map = None
            seen = cached = (providers_map, (map_provider(providers_map, provider),))
        try:
            return (await resolve_all(requested, seen[1]))[0]
        except (us.OutOfScopeError, AuthenticationRequiredError) as exc:
            if PROVIDERS_KEY not in connection.scope:  # no userscope middleware on this app
                _not_installed(connection, provider, exc)
            if (
                not isinstance(exc, us.OutOfScopeError)
                or connection.scope["type"] != "websocket"
                or exc.required_scope is not us.Scope.REQUEST
            ):
                raise
            raise us.OutOfScopeError(
                exc.provider, exc.required_scope, exc.active_scope, hint=_MESSAGE_SCOPE_HINT
            ) from exc

    resolve.__name__ = resolve.__qualname__ = f"inject_{name}"
    setattr(resolve, _PROVIDER_ATTR, provider)
    return cast(T, Depends(resolve))


def _not_installed(
    connection: HTTPConnection, provider: providers.Provider[Any], cause: Exception
) -> NoReturn:
    """Log the missing `install` (one line, no traceback) and answer 500 / close 1011."""
    name = getattr(provider, "name", None)
    label = name if isinstance(name, str) else repr(provider)
    error = NotInstalledError(provider=label, path=connection.url.path)
    error.__cause__ = cause
    logger.error("%s", error, extra=fields("not_installed", provider=label))
    if connection.scope["type"] == "websocket":
        raise WebSocketException(
            code=1011, reason="internal_error: userscope is not installed"
        ) from error
    raise HTTPException(
        status_code=500, detail="internal_error: the server is misconfigured"
    ) from error
