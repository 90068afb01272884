"""The `Inject` fast path: routes resolve their injected providers without FastAPI's
dependency machinery (private).

FastAPI solves every ``Depends`` through ``solve_dependencies``, which costs about as
much per dependency as a small request does without any. For each ``async def`` HTTP
endpoint, `prepare_routes` takes the endpoint's own ``Inject`` parameters out of
FastAPI's dependency list and builds a plan instead: a small ASGI wrapper around the
route's app resolves them in declaration order (before FastAPI reads the body and solves
the other dependencies, as FastAPI would have done for them) and hands the values to a
wrapper of the endpoint through a ``ContextVar``.

Everything else keeps FastAPI's machinery: ``def`` endpoints, WebSocket endpoints,
``Inject`` inside your own dependencies or in ``dependencies=[...]``, and an ``Inject``
whose dependency also appears elsewhere in the route's dependency tree (FastAPI caches
it per request; the plan would not). A route that FastAPI rebuilds later simply has its
original dependencies again.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any

from dependency_injector import providers
from dependency_injector.wiring import ProvidersMap
from fastapi import routing as fastapi_routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

import userscope as us
from userscope.providers._scoped import _is_awaitable  # one cache of plain result types

from ._inject import injected_provider, raise_out_of_scope, resolve_all
from ._state import PROVIDERS_KEY, map_provider

__all__ = ["InjectPlan", "prepare_routes"]

#: attribute set on an endpoint wrapper: the plan it belongs to
_PLAN_ATTR = "__userscope_inject_plan__"

#: (plan, values) resolved by the plan's ASGI wrapper for the endpoint wrapper
_RESOLVED: ContextVar[tuple[InjectPlan, list[Any]] | None] = ContextVar(
    "userscope_injected", default=None
)

Targets = tuple[providers.Provider[Any], ...]


class InjectPlan:
    """What one route injects: parameter names, providers, and their installed targets."""

    __slots__ = ("_cached", "endpoint", "names", "providers_map", "requested")

    def __init__(
        self,
        endpoint: Callable[..., Awaitable[Any]],
        names: tuple[str, ...],
        requested: Targets,
        providers_map: ProvidersMap | None,
    ) -> None:
        self.endpoint = endpoint
        self.names = names
        self.requested = requested
        self.providers_map = providers_map  # the installed container's, at preparation
        self._cached: tuple[ProvidersMap | None, Targets] = (
            providers_map,
            self._map(providers_map),
        )

    def _map(self, providers_map: ProvidersMap | None) -> Targets:
        return tuple(map_provider(providers_map, provider) for provider in self.requested)

    def targets(self, providers_map: Any) -> Targets:
        """The providers to call for a request served with ``providers_map``."""
        cached = self._cached
        if providers_map is cached[0]:
            return cached[1]
        if not isinstance(providers_map, ProvidersMap):
            providers_map = None
        self._cached = cached = (providers_map, self._map(providers_map))
        return cached[1]

    async def resolve(self, providers_map: Any) -> list[Any]:
        """Resolve every injected provider, in the endpoint's parameter order."""
        return await resolve_all(self.requested, self.targets(providers_map))


class _ResolvingApp:
    """Wraps a route's ASGI app: resolves the plan, then runs the route with the values."""

    __slots__ = ("app", "plan")

    def __init__(self, app: ASGIApp, plan: InjectPlan) -> None:
        self.app = app
        self.plan = plan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        plan = self.plan
        providers_map = scope.get(PROVIDERS_KEY)
        cached = plan._cached
        targets = cached[1] if providers_map is cached[0] else plan.targets(providers_map)
        # `resolve_all`, inlined: one coroutine less per request
        values: list[Any] = []
        for target in targets:
            try:
                value = target()
                if _is_awaitable(value):
                    value = await value
            except us.OutOfScopeError as exc:
                raise_out_of_scope(plan.requested[len(values)], exc)
            values.append(value)
        token = _RESOLVED.set((plan, values))
        try:
            await self.app(scope, receive, send)
        finally:
            # tasks started by the endpoint copied the context: leave them no instance
            values.clear()
            _RESOLVED.reset(token)


def _endpoint_wrapper(plan: InjectPlan) -> Callable[..., Awaitable[Any]]:
    endpoint = plan.endpoint
    names = plan.names

    @functools.wraps(endpoint)
    async def with_injected(**values: Any) -> Any:
        resolved = _RESOLVED.get()
        if resolved is not None and resolved[0] is plan:
            injected = resolved[1]
        else:  # the route's app was rebuilt without our wrapper: resolve here
            injected = await plan.resolve(plan.providers_map)
        values.update(zip(names, injected, strict=True))
        return await endpoint(**values)

    setattr(with_injected, _PLAN_ATTR, plan)
    _copy_endpoint_context(with_injected, endpoint)
    return with_injected


def _copy_endpoint_context(wrapper: Callable[..., Any], endpoint: Callable[..., Any]) -> None:
    """Let FastAPI's error messages name the endpoint's file, not this module."""
    cache = getattr(fastapi_routing, "_endpoint_context_cache", None)
    extract = getattr(fastapi_routing, "_extract_endpoint_context", None)
    if isinstance(cache, dict) and callable(extract):
        with contextlib.suppress(Exception):
            cache[id(wrapper)] = extract(endpoint)


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _plan_for(
    dependant: Dependant, providers_map: ProvidersMap | None
) -> tuple[InjectPlan, list[Dependant]] | None:
    """The plan for an endpoint's own ``Inject`` parameters, and the dependencies it replaces."""
    endpoint = dependant.call
    if endpoint is None or getattr(endpoint, _PLAN_ATTR, None) is not None:
        return None  # already prepared
    if not inspect.iscoroutinefunction(endpoint):
        return None  # ``def`` endpoints (run in a thread) and anything unusual keep Depends
    calls = list(_calls(dependant))
    names: list[str] = []
    requested: list[providers.Provider[Any]] = []
    chosen: list[Dependant] = []
    for sub in dependant.dependencies:
        provider = injected_provider(sub.call)
        if sub.name is None or provider is None:
            continue
        if sum(call is sub.call for call in calls) != 1:
            continue  # FastAPI shares its value with another dependency: keep it there
        names.append(sub.name)
        requested.append(provider)
        chosen.append(sub)
    if not chosen:
        return None
    return InjectPlan(endpoint, tuple(names), tuple(requested), providers_map), chosen


def _holders(routes: Iterable[Any]) -> Iterator[Any]:
    """HTTP routes (and FastAPI's per-inclusion route contexts) under ``routes``."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
            continue
        candidates = getattr(route, "effective_candidates", None)
        if not callable(candidates):
            continue
        for candidate in candidates():
            if callable(getattr(candidate, "effective_candidates", None)):
                yield from _holders([candidate])
            elif isinstance(getattr(candidate, "original_route", None), APIRoute):
                yield candidate


def prepare_routes(routes: Iterable[Any], providers_map: ProvidersMap | None) -> int:
    """Move the ``Inject`` parameters of ``async def`` HTTP routes onto the fast path.

    Idempotent: routes already prepared are left alone. Returns how many routes it
    prepared now.
    """
    prepared = 0
    for holder in _holders(routes):
        dependant = getattr(holder, "dependant", None)
        app = getattr(holder, "app", None)
        if not isinstance(dependant, Dependant) or app is None:
            continue
        found = _plan_for(dependant, providers_map)
        if found is None:
            continue
        plan, replaced = found
        wrapper = _endpoint_wrapper(plan)
        resolving = _ResolvingApp(app, plan)
        # no await from here on: the route switches over in one step
        dependant.dependencies = [
            sub for sub in dependant.dependencies if all(sub is not r for r in replaced)
        ]
        dependant.call = wrapper
        holder.app = resolving
        prepared += 1
    return prepared
