"""`Inject`: FastAPI dependencies that resolve dependency-injector providers (private)."""

from __future__ import annotations

import inspect
from typing import Any, TypeVar, cast

from dependency_injector import providers
from fastapi import Depends
from starlette.requests import HTTPConnection

import userscope as us

from ._errors import AuthenticationRequiredError
from ._state import resolve_installed

__all__ = ["Inject"]

T = TypeVar("T")


def Inject(provider: providers.Provider[T]) -> T:
    """Inject what ``provider`` provides into a FastAPI endpoint, inside the active scope.

    Use it as a default value or inside ``Annotated``; it needs no ``@inject``
    decorator and no ``container.wire(...)``. The provider is resolved by an
    ``async def`` dependency (no threadpool hop, also for ``def`` endpoints),
    once per request, and awaited when it is asynchronous. Resolving a scoped
    provider without a signed-in user answers ``401`` (`AuthenticationRequiredError`).

    A provider of the container *class* (``Container.agent``) is resolved
    through the container *instance* given to `install`, so that overrides
    and scoped caches are the instance's.

    In WebSocket endpoints the connection and user scopes are open while the
    endpoint's dependencies are resolved, so inject `UserScoped` and
    `ConnectionScoped` providers there; resolve `RequestScoped` ones per
    message inside ``async with message_scope(websocket):``.

    Args:
        provider: any dependency-injector provider, typically ``Container.agent``.

    Returns:
        A FastAPI ``Depends`` marker, typed as the provided object so that
        ``agent: Agent = Inject(Container.agent)`` type-checks (and a wrong
        annotation does not).

    Example:
        >>> from typing import Annotated
        >>> from dependency_injector import containers, providers
        >>> class Container(containers.DeclarativeContainer):
        ...     greeting = providers.Object("hello")
        >>> async def endpoint(greeting: Annotated[str, Inject(Container.greeting)]) -> str:
        ...     return greeting
    """
    name = getattr(provider, "__name__", None) or type(provider).__name__

    async def resolve(connection: HTTPConnection) -> Any:
        target = resolve_installed(connection.scope, provider)
        try:
            value = target()
            if inspect.isawaitable(value):
                value = await value
        except us.OutOfScopeError as exc:
            if us.current_context() is None:
                raise AuthenticationRequiredError(provider=repr(provider)) from exc
            raise
        return value

    resolve.__name__ = resolve.__qualname__ = f"inject_{name}"
    return cast(T, Depends(resolve))
