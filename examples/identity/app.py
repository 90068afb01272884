"""Sign users in with an OpenID Connect provider: user, tenant, roles and scopes from the token.

``create_app(issuer, audience)`` builds a FastAPI app whose identity comes only from
tokens the provider signed: ``JWTAuthenticator.from_oidc`` finds the provider's keys
by discovery, keeps them fresh as they rotate, and maps the claims:

* ``sub`` -> ``ctx.user_id``, ``tenant`` -> ``ctx.tenant_id`` (so ``acme/alice`` and
  ``globex/alice`` are two users), no thread claim -> the ``"default"`` thread;
* ``roles`` -> ``ctx.metadata["roles"]``, used here to let only writers add notes.

Each user's notebook is `UserScoped`: one per ``(tenant, user)``, never shared.
Run it against a local mock provider with ``python -m examples.identity``.

Example:
    >>> app = create_app("https://id.example.com/realms/acme", "notes-api")
    >>> sorted(route.path for route in app.routes if route.path.startswith("/n"))
    ['/notes']
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from dependency_injector import containers
from fastapi import Body, FastAPI, HTTPException, WebSocket, WebSocketDisconnect

import userscope as us
from userscope.adapters.fastapi import Inject, JWTAuthenticator, install, message_scope

__all__ = ["Notebook", "create_app"]


class Notebook:
    """One user's notes; lives as long as the user's session in this process."""

    def __init__(self, ctx: us.UserExecutionContext) -> None:
        self.owner = ctx.user_key
        self.notes: list[str] = []


class Container(containers.DeclarativeContainer):
    context = us.CurrentContext()
    notebook = us.UserScoped(Notebook, context)


def whoami(ctx: us.UserExecutionContext) -> dict[str, Any]:
    return {
        "user_id": ctx.user_id,
        "tenant_id": ctx.tenant_id,
        "thread_id": ctx.thread_id,
        "roles": list(ctx.metadata["roles"]),
    }


def create_app(issuer: str, audience: str, **options: Any) -> FastAPI:
    """The notes API, trusting tokens of ``issuer`` issued for ``audience``.

    Args:
        issuer: the OpenID Connect issuer URL (``https://``, or ``http://`` on localhost).
        audience: the audience the tokens must carry (your API's client id or identifier).
        **options: more `JWTAuthenticator` options (``leeway``, ``jwks_ttl``...).
    """
    authenticate = JWTAuthenticator.from_oidc(
        issuer, audience=audience, algorithms=["RS256"], tenant_claim="tenant", **options
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await authenticate.aload_keys()  # fail at start-up if the provider is misconfigured
        yield

    app = FastAPI(lifespan=lifespan)
    install(app, Container(), us.UserSessions(), authenticate=authenticate)

    @app.get("/me")
    async def me(
        ctx: Annotated[us.UserExecutionContext, Inject(Container.context)],
    ) -> dict[str, Any]:
        return whoami(ctx)

    @app.get("/notes")
    async def notes(book: Annotated[Notebook, Inject(Container.notebook)]) -> list[str]:
        return book.notes

    @app.post("/notes")
    async def add_note(
        text: Annotated[str, Body(embed=True, max_length=1000)],
        ctx: Annotated[us.UserExecutionContext, Inject(Container.context)],
        book: Annotated[Notebook, Inject(Container.notebook)],
    ) -> list[str]:
        if "writer" not in ctx.metadata["roles"]:
            raise HTTPException(403, "only writers add notes")
        book.notes.append(text)
        return book.notes

    @app.websocket("/ws")
    async def chat(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            async for text in websocket.iter_text():
                async with message_scope(websocket) as ctx:
                    await websocket.send_json({**whoami(ctx), "echo": text})
        except WebSocketDisconnect:
            pass

    return app
