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
from ._errors import AlreadyInstalledError
from ._middleware import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_MESSAGE_BYTES,
    StatsGuard,
    UserscopeMiddleware,
    check_limit,
)
from ._redact import install_redactor
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
    max_body_bytes: int | None = DEFAULT_MAX_BODY_BYTES,
    max_message_bytes: int | None = DEFAULT_MAX_MESSAGE_BYTES,
    max_header_bytes: int | None = DEFAULT_MAX_HEADER_BYTES,
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
      for whom ``await stats_guard(connection)`` is true (``403`` otherwise);
    * bounds what a client can make the server hold, before authentication:
      request headers (``431``), request bodies (``413``, announced or chunked) and
      WebSocket messages (close ``1009``); refusals never echo the input;
    * redacts token query parameters (``token``, ``access_token``, ``id_token``,
      ``jwt`` and the authenticator's ``query_param``) from uvicorn's request log
      lines (a filter on the ``uvicorn.access`` and ``uvicorn.error`` loggers).

    Args:
        app: the FastAPI application (before it starts serving).
        container: the dependency-injector container holding the scoped providers.
        sessions: the app's `UserSessions`.
        authenticate: async ``(HTTPConnection) -> UserExecutionContext | None``,
            e.g. a `JWTAuthenticator`.
        stats_path: path of the stats endpoint, e.g. ``"/admin/userscope"``.
        stats_guard: async predicate deciding who may read the stats; required
            with ``stats_path``.
        max_body_bytes: largest HTTP request body in bytes (default 1 MiB);
            ``None`` for no limit.
        max_message_bytes: largest WebSocket message in bytes (default 1 MiB);
            ``None`` for no limit. Set the server's own frame limit to match
            (``uvicorn --ws-max-size``) so bigger frames are not even buffered.
        max_header_bytes: largest total of request header names and values in
            bytes (default 32 KiB); ``None`` for no limit.

    Raises:
        us.CaptiveDependencyError: the container has a captive dependency.
        ValueError: ``stats_path`` without ``stats_guard``, or a size limit below 1.
        TypeError: a size limit that is not an ``int`` or ``None``.
        AlreadyInstalledError: userscope is already installed on this app.

    Example:
        >>> import secrets
        >>> from dependency_injector import containers
        >>> from fastapi import FastAPI
        >>> import userscope as us
        >>> from userscope.adapters.fastapi import JWTAuthenticator, install
        >>> class Container(containers.DeclarativeContainer):
        ...     context = us.CurrentContext()
        >>> secret = secrets.token_urlsafe(32)  # in production: from your secret store
        >>> app = FastAPI()
        >>> install(app, Container(), us.UserSessions(),
        ...         authenticate=JWTAuthenticator(key=secret, algorithms=["HS256"]))
    """
    if getattr(app.state, _INSTALLED, False):
        raise AlreadyInstalledError(app.title)
    if stats_path is not None and stats_guard is None:
        raise ValueError(
            "stats_path needs a stats_guard: pass stats_guard=<async (connection) -> bool> "
            "so that session stats are not served to everyone"
        )
    if stats_path is not None and not stats_path.startswith("/"):
        raise ValueError(f"stats_path must start with '/', got {stats_path!r}")
    limits = {
        "max_body_bytes": check_limit("max_body_bytes", max_body_bytes),
        "max_message_bytes": check_limit("max_message_bytes", max_message_bytes),
        "max_header_bytes": check_limit("max_header_bytes", max_header_bytes),
    }
    us.validate(container)
    providers_map = ProvidersMap(container)  # for the route plans (the middleware has its own)
    query_param = getattr(authenticate, "query_param", None)
    install_redactor([query_param] if isinstance(query_param, str) else [])

    app.add_middleware(
        UserscopeMiddleware,
        container=container,
        sessions=sessions,
        authenticate=authenticate,
        stats_path=stats_path,
        stats_guard=stats_guard,
        **limits,
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
