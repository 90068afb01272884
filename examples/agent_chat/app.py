"""The agent-chat demo app: FastAPI + userscope, events through a broker.

Run it with ``python -m examples.agent_chat`` (see ``__main__.py``), or as a
uvicorn factory: ``uvicorn examples.agent_chat.app:create_app --factory``.
With ``USERSCOPE_REDIS_URL`` (and ``USERSCOPE_EVENTS_SECRET``) set, events go
through Redis Streams and any number of workers can serve the same users;
otherwise an in-memory broker serves one worker.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import jwt
from dependency_injector import containers, providers
from fastapi import FastAPI, HTTPException, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

import userscope as us
from userscope.adapters.fastapi import Inject, JWTAuthenticator, install, message_scope
from userscope.events import Broker, BrokerClosedError, EventIdError, broker_from_env

from .domain import (
    CONVERSATION_RE,
    AgentLimitError,
    AgentRegistry,
    AgentRun,
    BackgroundRuns,
    ConversationError,
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
WS_POLICY_VIOLATION = 1008


class Container(containers.DeclarativeContainer):
    """Every object of the demo, with the scope it lives in."""

    settings = providers.Dependency(instance_of=DemoSettings)
    # app-level: one per worker process (Broker is a runtime-checkable protocol)
    broker = providers.Dependency(instance_of=Broker)  # type: ignore[type-abstract]
    tracker = providers.Singleton(Tracker)
    llm = providers.Singleton(FakeLLM, delay=settings.provided.token_delay)

    context = us.CurrentContext()
    registry = us.UserScoped(open_registry, context, settings, tracker)
    bridge = us.ConnectionScoped(open_bridge, context, broker, settings, tracker)
    agent = us.RequestScoped(
        AgentRun,
        context=context,
        registry=registry,
        broker=broker,
        llm=llm,
        tracker=tracker,
        settings=settings,
    )


class RunRequest(BaseModel):
    """Body of ``POST /api/runs``. Any user id in it is ignored: the user is the token's."""

    agent: str = Field(default="assistant", min_length=1, max_length=40)
    text: str = Field(min_length=1, max_length=500)
    conversation: str | None = Field(default=None, pattern=CONVERSATION_RE.pattern)


def mint_token(secret: str, user_id: str, *, ttl: float = 12 * 3600, **claims: Any) -> str:
    """Sign a demo sign-in token (HS256) for ``user_id``."""
    now = time.time()
    payload = {"sub": user_id, "aud": AUDIENCE, "iat": int(now), "exp": now + ttl, **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


def create_app(settings: DemoSettings | None = None, *, broker: Broker | None = None) -> FastAPI:
    """Build the demo app: its container, its `UserSessions`, its broker, its routes.

    Everything lives on ``app.state`` (``container``, ``sessions``, ``settings``,
    ``broker``, ``runs``); there are no module-level singletons.

    Args:
        settings: the demo settings; default ``DemoSettings.from_env()``.
        broker: the event broker; default ``broker_from_env()`` (in memory unless
            ``USERSCOPE_REDIS_URL`` is set), which the app closes at shutdown. A
            broker passed in stays the caller's to close.
    """
    settings = settings or DemoSettings.from_env()
    owns_broker = broker is None
    app_broker: Broker = broker_from_env() if broker is None else broker
    container = Container(settings=settings, broker=app_broker)
    sessions = us.UserSessions()
    runs = BackgroundRuns()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await runs.aclose()  # HTTP-started runs end (cancelled) while the broker is up

    app = FastAPI(title="userscope agent chat demo", lifespan=lifespan)
    app.state.container = container
    app.state.sessions = sessions
    app.state.settings = settings
    app.state.broker = app_broker
    app.state.runs = runs
    install(
        app,
        container,
        sessions,
        authenticate=JWTAuthenticator(key=settings.secret, algorithms=["HS256"], audience=AUDIENCE),
    )
    installed = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def close_broker_last(lifespan_app: Any) -> AsyncIterator[Any]:
        # install() closes the sessions after our lifespan; the broker goes after them
        try:
            async with installed(lifespan_app) as state:
                yield state
        finally:
            if owns_broker:
                await app_broker.aclose()

    app.router.lifespan_context = close_broker_last
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

    async def background_run(
        ctx: us.UserExecutionContext, agent: str, text: str, conversation: str | None
    ) -> None:
        async with sessions.request(ctx):
            run: AgentRun = await container.agent.async_()
            await run.run(agent, text, conversation=conversation)

    @app.post("/api/runs", status_code=202)
    async def start_run(
        body: RunRequest,
        ctx: Annotated[us.UserExecutionContext, Inject(Container.context)],
        registry: Annotated[AgentRegistry, Inject(Container.registry)],
    ) -> dict[str, str]:
        """Start an agent run for the token's user in this worker; its events go
        through the broker to the user's sockets on any worker."""
        text = body.text.strip()
        agent = body.agent.strip()
        if not text or not agent:
            raise HTTPException(422, "agent and text must not be blank")
        try:
            registry.get_or_create(agent)
        except AgentLimitError as exc:
            raise HTTPException(409, str(exc)) from None
        run_ctx = ctx.for_request()  # the run's own REQUEST scope outlives this response
        try:
            runs.spawn(
                background_run(run_ctx, agent, text, body.conversation),
                name=f"agent-run-{run_ctx.request_id}",
            )
        except RuntimeError as exc:
            raise HTTPException(503, str(exc)) from None
        return {"run_id": run_ctx.request_id, "user_id": ctx.user_id}

    @app.websocket("/ws")
    async def chat(
        websocket: WebSocket,
        bridge: Annotated[WebSocketBridge, Inject(Container.bridge)],
    ) -> None:
        await websocket.accept()
        try:
            await bridge.open(
                websocket,
                after=websocket.query_params.get("after") or None,
                conversation=websocket.query_params.get("conversation") or None,
            )
        except (EventIdError, ConversationError) as exc:
            await websocket.send_json({"type": "error", "text": str(exc)})
            await websocket.close(WS_POLICY_VIOLATION, "bad after or conversation parameter")
            return
        try:
            while True:
                message = await websocket.receive_json()
                if not isinstance(message, dict):
                    continue
                text = str(message.get("text", "")).strip()[:500]
                agent_name = str(message.get("agent") or "assistant").strip()[:40] or "assistant"
                if not text:
                    continue
                async with message_scope(websocket):
                    run: AgentRun = await container.agent.async_()
                    await run.run(agent_name, text, conversation=bridge.conversation)
        except WebSocketDisconnect:
            pass
        except BrokerClosedError:
            pass  # shutting down: the bridge closed the socket with 1012, the client resumes

    return app
