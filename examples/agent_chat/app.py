"""The agent-chat demo app: FastAPI + userscope, events through a broker.

Run it with ``python -m examples.agent_chat`` (see ``__main__.py``), or as a
uvicorn factory: ``uvicorn examples.agent_chat.app:create_app --factory``.
With ``USERSCOPE_REDIS_URL`` (and ``USERSCOPE_EVENTS_SECRET``) set, events go
through Redis Streams and any number of workers can serve the same users;
otherwise an in-memory broker serves one worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import jwt
from dependency_injector import containers, providers
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import userscope as us
from userscope._log import fields
from userscope.adapters.fastapi import (
    AuthenticationError,
    Inject,
    JWTAuthenticator,
    install,
    message_scope,
)
from userscope.events import Broker, BrokerClosedError, EventIdError, broker_from_env

from .domain import (
    AGENT_TOOLS,
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
    logger,
    open_bridge,
    open_registry,
)

STATIC = Path(__file__).parent / "static"
AUDIENCE = "agent-chat-demo"
DEMO_USERS = ("alice", "bob")
WS_UNSUPPORTED_DATA = 1003
WS_INVALID_DATA = 1007
WS_POLICY_VIOLATION = 1008
WS_TOO_BIG = 1009
WS_TRY_AGAIN_LATER = 1013
MAX_FRAME_BYTES = 64 * 1024
REF_CHARS = 64

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
"""Sent with every HTTP response of the demo (the page loads only its own files)."""


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
    text: str = Field(min_length=1, max_length=20_000)
    conversation: str | None = Field(default=None, pattern=CONVERSATION_RE.pattern)


class FrameError(ValueError):
    """A frame on the demo's socket that is not a chat message; the socket closes with ``code``.

    Example:
        >>> err = parse_frame({"type": "websocket.receive", "bytes": b"x"})
        Traceback (most recent call last):
        ...
        examples.agent_chat.app.FrameError: 1003: binary frames are not accepted: send JSON text
    """

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


def parse_frame(frame: Mapping[str, Any]) -> dict[str, str]:
    """The chat message in one received WebSocket frame: ``{"agent", "text", "ref"}``.

    Raises:
        FrameError: binary data (1003), more than 64 KiB (1009), not JSON, nested
            too deeply, not an object or a field that is not a string (1007).

    Example:
        >>> parse_frame({"text": '{"agent": "coder", "text": "2 + 2"}'})
        {'agent': 'coder', 'text': '2 + 2', 'ref': ''}
    """
    if frame.get("bytes") is not None:
        raise FrameError(WS_UNSUPPORTED_DATA, "binary frames are not accepted: send JSON text")
    raw = frame.get("text") or ""
    if len(raw) > MAX_FRAME_BYTES:
        raise FrameError(WS_TOO_BIG, f"a message frame may be at most {MAX_FRAME_BYTES} bytes")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise FrameError(WS_INVALID_DATA, "the JSON is nested too deeply") from None
    except ValueError:
        raise FrameError(WS_INVALID_DATA, 'not JSON: send {"agent": ..., "text": ...}') from None
    if not isinstance(data, dict):
        raise FrameError(WS_INVALID_DATA, 'expected a JSON object {"agent": ..., "text": ...}')
    message: dict[str, str] = {}
    for key, default in (("agent", "assistant"), ("text", ""), ("ref", "")):
        value = data.get(key, default)
        if not isinstance(value, str):
            raise FrameError(WS_INVALID_DATA, f"the field {key!r} must be a string")
        message[key] = value.strip()
    return message


class SecurityHeadersMiddleware:
    """Pure ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def mint_token(secret: str, user_id: str, *, ttl: float = 12 * 3600, **claims: Any) -> str:
    """Sign a demo sign-in token (HS256) for ``user_id``."""
    now = time.time()
    payload = {"sub": user_id, "aud": AUDIENCE, "iat": int(now), "exp": now + ttl, **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


def logged_refusals(verify: JWTAuthenticator) -> Any:
    """Wrap ``verify`` so that every refused sign-in is logged as one warning line."""

    async def authenticate(connection: HTTPConnection) -> us.UserExecutionContext | None:
        try:
            return await verify(connection)
        except AuthenticationError as exc:
            kind = "socket" if connection.scope["type"] == "websocket" else "request"
            client = connection.client.host if connection.client else "?"
            logger.warning(
                "refused sign-in (%s %s from %s): %s",
                kind,
                connection.url.path,
                client,
                exc.reason,
                extra=fields("demo_sign_in_refused"),
            )
            raise

    return authenticate


def refusal(status: int, error: str, detail: str) -> JSONResponse:
    """An error response in the adapter's shape: ``{"error": ..., "detail": ...}``."""
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


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
    tracker: Tracker = container.tracker()
    # The runtime's limits; the cap on agents is the registry's own (max_agents_per_user),
    # so the runtime's instance limit stays off.
    sessions = us.UserSessions(idle_timeout=settings.idle_timeout, max_instances_per_user=None)
    runs = BackgroundRuns()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await runs.aclose()  # HTTP-started runs end (cancelled) while the broker is up

    docs = settings.api_docs
    app = FastAPI(
        title="userscope agent chat demo",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.container = container
    app.state.sessions = sessions
    app.state.settings = settings
    app.state.broker = app_broker
    app.state.runs = runs
    verify = JWTAuthenticator(key=settings.secret, algorithms=["HS256"], audience=AUDIENCE)
    install(app, container, sessions, authenticate=logged_refusals(verify))
    app.add_middleware(SecurityHeadersMiddleware)  # outermost: refusals get the headers too
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

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/me")
    async def me(
        ctx: Annotated[us.UserExecutionContext, Inject(Container.context)],
        registry: Annotated[AgentRegistry, Inject(Container.registry)],
    ) -> dict[str, Any]:
        """Who the token says you are, your agents and what the page may offer you."""
        return {
            "user_id": ctx.user_id,
            "agents": registry.names(),
            "catalogue": list(AGENT_TOOLS),
            "max_agents": settings.max_agents_per_user,
            "max_message_chars": settings.max_message_chars,
        }

    @app.get("/api/scopes")
    async def scopes(
        ctx: Annotated[us.UserExecutionContext, Inject(Container.context)],
        registry: Annotated[AgentRegistry, Inject(Container.registry)],
    ) -> dict[str, Any]:
        """Your live scopes and the instances in them (nobody else's)."""
        live = tracker.live(ctx.user_id)
        return {
            "user_id": ctx.user_id,
            "user_scope": {
                "registries": live["registries"],
                "agents": [{"name": a.name, "turns": a.turns} for a in registry.profiles()],
                "max_agents": registry.max_agents,
                "memory": len(registry.memory),
            },
            "connection_scopes": live["connections"],
            "request_scopes": live["runs"],
        }

    def check_message(text: str, agent: str) -> tuple[str, str] | None:
        """``(error, detail)`` when a message cannot be run, else ``None``."""
        if not text:
            return "empty_message", "the message is empty: type something to send"
        if len(text) > settings.max_message_chars:
            return "too_long", (
                f"the message has {len(text)} characters; the limit is "
                f"{settings.max_message_chars}: shorten it and send again"
            )
        if agent not in AGENT_TOOLS:
            known = ", ".join(AGENT_TOOLS)
            return "unknown_agent", f"there is no agent {agent[:40]!r}; use one of: {known}"
        return None

    async def background_run(
        ctx: us.UserExecutionContext,
        agent: str,
        text: str,
        conversation: str | None,
        started: asyncio.Future[None],
    ) -> None:
        async with sessions.request(ctx):
            run: AgentRun = await container.agent.async_()
            await run.run(agent, text, conversation=conversation, started=started)

    @app.post("/api/runs", status_code=202, response_model=None)
    async def start_run(
        body: RunRequest,
        ctx: Annotated[us.UserExecutionContext, Inject(Container.context)],
        registry: Annotated[AgentRegistry, Inject(Container.registry)],
    ) -> dict[str, str] | JSONResponse:
        """Start an agent run for the token's user in this worker; its events go
        through the broker to the user's sockets on any worker.

        ``202`` once the run has started (its ``run_started`` event is stored);
        ``422`` for a message that cannot run, ``429`` at the user's agent cap,
        ``503`` when the event broker is unreachable or the app is stopping.
        """
        text, agent = body.text.strip(), body.agent.strip()
        problem = check_message(text, agent)
        if problem is not None:
            return refusal(422, *problem)
        try:
            registry.get_or_create(agent)
        except AgentLimitError as exc:
            return refusal(429, "agent_limit", str(exc))
        run_ctx = ctx.for_request()  # the run's own REQUEST scope outlives this response
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        started.add_done_callback(lambda f: f.cancelled() or f.exception())  # always retrieved
        try:
            task = runs.spawn(
                background_run(run_ctx, agent, text, body.conversation, started),
                name=f"agent-run-{run_ctx.request_id}",
            )
        except RuntimeError as exc:
            return refusal(503, "shutting_down", str(exc))
        try:
            async with asyncio.timeout(settings.events_timeout):
                await asyncio.shield(started)
        except Exception as exc:
            task.cancel()
            reason = "no answer" if isinstance(exc, TimeoutError) else type(exc).__name__
            logger.warning(
                "run of %s not started: event broker unavailable (%s)",
                ctx.user_id,
                reason,
                extra=fields("demo_run_refused", run_ctx),
            )
            return refusal(
                503,
                "events_unavailable",
                f"the event broker is unavailable ({reason}); the run was not started: "
                "try again shortly",
            )
        return {"run_id": run_ctx.request_id, "user_id": ctx.user_id}

    @app.websocket("/ws")
    async def chat(
        websocket: WebSocket,
        bridge: Annotated[WebSocketBridge, Inject(Container.bridge)],
    ) -> None:
        await websocket.accept()
        ctx = bridge.context
        user = ctx.user_id
        log_extra = fields("demo_socket", ctx)
        try:
            async with asyncio.timeout(settings.events_timeout):
                await bridge.open(
                    websocket,
                    after=websocket.query_params.get("after") or None,
                    conversation=websocket.query_params.get("conversation") or None,
                )
        except (EventIdError, ConversationError) as exc:
            logger.warning("%s: socket refused: %s", user, exc, extra=log_extra)
            await websocket.send_json({"type": "error", "code": "bad_parameter", "text": str(exc)})
            await websocket.close(WS_POLICY_VIOLATION, "bad after or conversation parameter")
            return
        except BrokerClosedError:
            return  # shutting down
        except Exception as exc:
            reason = "no answer" if isinstance(exc, TimeoutError) else type(exc).__name__
            logger.warning(
                "%s: socket closed: event broker unavailable (%s)", user, reason, extra=log_extra
            )
            await websocket.send_json(
                {
                    "type": "error",
                    "code": "events_unavailable",
                    "text": "the event service is unavailable right now; reconnecting shortly",
                    "user_id": user,
                }
            )
            await websocket.close(WS_TRY_AGAIN_LATER, "event broker unavailable; try again")
            return
        logger.info(
            "%s connected (conversation %s; %d connection(s) open for %s)",
            user,
            bridge.conversation,
            tracker.live(user)["connections"],
            user,
            extra=log_extra,
        )
        close_code: int | None = None
        try:
            while True:
                frame = await websocket.receive()
                if frame["type"] == "websocket.disconnect":
                    close_code = frame.get("code")
                    break
                try:
                    message = parse_frame(frame)
                except FrameError as exc:
                    logger.warning(
                        "%s: socket closed with %d: %s", user, exc.code, exc.reason, extra=log_extra
                    )
                    close_code = exc.code
                    await websocket.close(exc.code, exc.reason)
                    return
                ref = message["ref"][:REF_CHARS]
                problem = check_message(message["text"], message["agent"])
                if problem is not None:
                    error, detail = problem
                    await bridge.send({"type": "error", "code": error, "text": detail, "ref": ref})
                    continue
                async with message_scope(websocket):
                    run: AgentRun = await container.agent.async_()
                    await run.run(
                        message["agent"],
                        message["text"],
                        conversation=bridge.conversation,
                        ref=ref or None,
                    )
        except WebSocketDisconnect as exc:
            close_code = exc.code
        except BrokerClosedError:
            pass  # shutting down: the bridge closed the socket with 1012, the client resumes
        finally:
            logger.info("%s disconnected (%s)", user, close_code, extra=log_extra)

    return app
