"""`install`: wire userscope into a FastAPI app (private)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from dependency_injector import containers
from dependency_injector.wiring import ProvidersMap
from fastapi import FastAPI

import userscope as us

from ._auth import Authenticator
from ._middleware import StatsGuard, UserscopeMiddleware
from ._routes import prepare_routes

__all__ = ["install"]

_INSTALLED = "_userscope_installed"


def install(
    app: FastAPI,
    container: containers.Container,
    sessions: us.UserSessions,
    authenticate: Authenticator,
    *,
    stats_path: str | None = None,
    stats_guard: StatsGuard | None = None,
) -> None:
    """Serve ``app`` with userscope scopes opened from verified identities.

    * validates ``container`` (`us.validate`), so captive dependencies fail at startup;
    * adds a pure ASGI middleware: every HTTP request runs inside
      ``sessions.request(ctx)``, every WebSocket inside ``sessions.connection(ctx)``,
      where ``ctx`` comes only from ``authenticate``;
    * prepares the app's ``async def`` HTTP routes so that their `Inject`
      parameters are resolved without FastAPI's dependency machinery (now, again
      at lifespan startup for routes added after ``install``, and at the first
      request when the app is served without a lifespan);
    * composes with the app's lifespan: starts the session reaper (when
      ``sessions`` has ``start_reaper``) and runs ``await sessions.aclose()``
      at shutdown, after the app's own shutdown code;
    * optionally serves ``sessions.stats()`` as JSON at ``stats_path`` to callers
      for whom ``await stats_guard(connection)`` is true (``403`` otherwise).

    Args:
        app: the FastAPI application (before it starts serving).
        container: the dependency-injector container holding the scoped providers.
        sessions: the app's `UserSessions`.
        authenticate: async ``(HTTPConnection) -> UserExecutionContext | None``,
            e.g. a `JWTAuthenticator`.
        stats_path: path of the stats endpoint, e.g. ``"/admin/userscope"``.
        stats_guard: async predicate deciding who may read the stats; required
            with ``stats_path``.

    Raises:
        us.CaptiveDependencyError: the container has a captive dependency.
        ValueError: ``stats_path`` without ``stats_guard``.
        RuntimeError: userscope is already installed on this app.

    Example:
        >>> from fastapi import FastAPI
        >>> from dependency_injector import containers
        >>> class Container(containers.DeclarativeContainer):
        ...     context = us.CurrentContext()
        >>> app = FastAPI()
        >>> install(app, Container(), us.UserSessions(),
        ...         authenticate=JWTAuthenticator(key="k" * 32, algorithms=["HS256"]))
    """
    if getattr(app.state, _INSTALLED, False):
        raise RuntimeError("userscope is already installed on this app; call install() once")
    if stats_path is not None and stats_guard is None:
        raise ValueError(
            "stats_path needs a stats_guard: pass stats_guard=<async (connection) -> bool> "
            "so that session stats are not served to everyone"
        )
    if stats_path is not None and not stats_path.startswith("/"):
        raise ValueError(f"stats_path must start with '/', got {stats_path!r}")
    us.validate(container)
    providers_map = ProvidersMap(container)  # for the route plans (the middleware has its own)

    app.add_middleware(
        UserscopeMiddleware,
        container=container,
        sessions=sessions,
        authenticate=authenticate,
        stats_path=stats_path,
        stats_guard=stats_guard,
    )

    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(lifespan_app: Any) -> AsyncIterator[Any]:
        reaper = _start_reaper(sessions)
        try:
            async with inner(lifespan_app) as state:
                prepare_routes(app.router.routes, providers_map)
                yield state
        finally:
            try:
                if reaper is not None:
                    reaper.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reaper
            finally:
                await sessions.aclose()

    app.router.lifespan_context = lifespan
    setattr(app.state, _INSTALLED, True)
    prepare_routes(app.router.routes, providers_map)


def _start_reaper(sessions: us.UserSessions) -> asyncio.Task[Any] | None:
    start = getattr(sessions, "start_reaper", None)
    if start is None:
        return None
    task = start()
    return task if isinstance(task, asyncio.Task) else None
