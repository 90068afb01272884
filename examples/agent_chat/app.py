"""The agent-chat demo app: FastAPI + userscope, in-memory, one process.

Run it with ``python -m examples.agent_chat`` (see ``__main__.py``).
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Annotated, Any

import jwt
from dependency_injector import containers, providers
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

import userscope as us
from userscope.adapters.fastapi import Inject, JWTAuthenticator, install, message_scope

from .domain import (
    AgentRegistry,
    AgentRun,
    DemoSettings,
    FakeLLM,
    Tracker,
    WebSocketBridge,
    open_bridge,
    open_registry,
)

STATIC = Path(__file__).parent / "static"
AUDIENCE = "agent-chat-demo"
DEMO_USERS = ("alice", "bob")


class Container(containers.DeclarativeContainer):
    """Every object of the demo, with the scope it lives in."""

    settings = providers.Dependency(instance_of=DemoSettings)
    tracker = providers.Singleton(Tracker)
    llm = providers.Singleton(FakeLLM, delay=settings.provided.token_delay)

    context = us.CurrentContext()
    registry = us.UserScoped(open_registry, context, settings, tracker)
    bridge = us.ConnectionScoped(open_bridge, context, tracker)
    agent = us.RequestScoped(
        AgentRun, context=context, registry=registry, bridge=bridge, llm=llm, tracker=tracker
    )


def mint_token(secret: str, user_id: str, *, ttl: float = 12 * 3600, **claims: Any) -> str:
    """Sign a demo sign-in token (HS256) for ``user_id``."""
    now = time.time()
    payload = {"sub": user_id, "aud": AUDIENCE, "iat": int(now), "exp": now + ttl, **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


def create_app(settings: DemoSettings | None = None) -> FastAPI:
    """Build the demo app: its container, its `UserSessions`, its routes.

    Everything lives on ``app.state`` (``container``, ``sessions``, ``settings``);
    there are no module-level singletons.
    """
    settings = settings or DemoSettings(secret=secrets.token_urlsafe(32))
    container = Container(settings=settings)
    sessions = us.UserSessions()

    app = FastAPI(title="userscope agent chat demo")
    app.state.container = container
    app.state.sessions = sessions
    app.state.settings = settings
    install(
        app,
        container,
        sessions,
        authenticate=JWTAuthenticator(key=settings.secret, algorithms=["HS256"], audience=AUDIENCE),
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/me")
    async def me(
        ctx: Annotated[us.UserExecutionContext, Inject(Container.context)],
        registry: Annotated[AgentRegistry, Inject(Container.registry)],
    ) -> dict[str, Any]:
        return {"user_id": ctx.user_id, "agents": registry.names()}

    @app.websocket("/ws")
    async def chat(
        websocket: WebSocket,
        bridge: Annotated[WebSocketBridge, Inject(Container.bridge)],
    ) -> None:
        await websocket.accept()
        bridge.attach(websocket)
        await bridge.emit({"type": "hello", "text": "connected"})
        try:
            while True:
                message = await websocket.receive_json()
                text = str(message.get("text", "")).strip()[:500]
                agent_name = str(message.get("agent") or "assistant").strip()[:40] or "assistant"
                if not text:
                    continue
                async with message_scope(websocket):
                    run: AgentRun = await container.agent.async_()
                    await run.run(agent_name, text)
        except WebSocketDisconnect:
            pass

    return app
