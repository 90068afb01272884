"""Helpers of the FastAPI adapter tests: a live uvicorn server, test tokens, the test app.

Test modules import them from here; the fixtures built on them live in ``conftest.py``
(``from conftest import ...`` picks up another directory's conftest when pytest collects
several test directories at once).
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
import uvicorn
from dependency_injector import containers, providers
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from pydantic import BaseModel
from starlette.requests import Request
from starlette.types import ASGIApp

import userscope as us
from userscope.adapters.fastapi import Inject, JWTAuthenticator, install, message_scope

SECRET = "test-secret-for-userscope-adapter-tests-0123456789"
AUDIENCE = "userscope-tests"
ISSUER = "https://issuer.test"


def websocket_scope(headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    """The ASGI scope of a WebSocket to ``/ws`` (for tests that drive the app directly);
    ``headers`` after the host header."""
    return {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": "/ws",
        "raw_path": b"/ws",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"test"), *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "subprotocols": [],
        "state": {},
    }


@dataclass(frozen=True)
class LiveServer:
    """A running uvicorn server: where to reach it over HTTP and WebSocket."""

    host: str
    port: int
    server: uvicorn.Server

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://{self.host}:{self.port}"


@contextmanager
def serve(app: ASGIApp, *, startup_timeout: float = 10.0) -> Iterator[LiveServer]:
    """Run ``app`` with uvicorn in a thread on a free 127.0.0.1 port; stop it at exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_level="warning",
        ws="websockets-sansio",
        ws_ping_interval=None,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start; see the log above")
            time.sleep(0.01)
        yield LiveServer("127.0.0.1", port, server)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        if thread.is_alive():  # pragma: no cover - shows up as a failing test
            raise RuntimeError("uvicorn did not shut down within 15 s")


def make_token(
    sub: Any = "alice",
    *,
    exp_in: float = 300,
    key: Any = SECRET,
    algorithm: str = "HS256",
    drop: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    """Sign a token for tests (HS256 with ``SECRET`` unless told otherwise)."""
    now = time.time()
    payload: dict[str, Any] = {
        "sub": sub,
        "aud": AUDIENCE,
        "iss": ISSUER,
        "iat": int(now),
        "exp": now + exp_in,
        **claims,
    }
    for name in drop:
        payload.pop(name, None)
    return jwt.encode(payload, key, algorithm=algorithm)


# -- the adapter test app ---------------------------------------------------------------


class Probe:
    """Counts what the scoped factories opened and closed (thread-safe enough for counters)."""

    def __init__(self) -> None:
        self.opened: Counter[str] = Counter()
        self.closed: Counter[str] = Counter()
        self.threads: dict[str, int] = {}
        self.release = threading.Event()
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        return next(self._ids)

    def open_now(self, name: str) -> int:
        return self.opened[name] - self.closed[name]


class Worker:
    def __init__(self, user_id: str, request_id: str, number: int) -> None:
        self.user_id = user_id
        self.request_id = request_id
        self.number = number


class Notebook:
    def __init__(self, context: us.UserExecutionContext) -> None:
        self.user_id = context.user_id
        self.pages: list[str] = []


class Channel:
    def __init__(self, user_id: str, number: int) -> None:
        self.user_id = user_id
        self.number = number
        self.closed = False


def open_worker(context: us.UserExecutionContext, probe: Probe) -> Any:
    probe.opened["worker"] += 1
    probe.threads["worker"] = threading.get_ident()
    try:
        yield Worker(context.user_id, context.request_id, probe.next_id())
    finally:
        probe.closed["worker"] += 1


async def open_async_worker(context: us.UserExecutionContext, probe: Probe) -> Any:
    probe.opened["async_worker"] += 1
    await asyncio.sleep(0)
    try:
        yield Worker(context.user_id, context.request_id, probe.next_id())
    finally:
        probe.closed["async_worker"] += 1


async def open_channel(context: us.UserExecutionContext, probe: Probe) -> AsyncIterator[Channel]:
    probe.opened["channel"] += 1
    channel = Channel(context.user_id, probe.next_id())
    try:
        yield channel
    finally:
        channel.closed = True
        probe.closed["channel"] += 1


class AppContainer(containers.DeclarativeContainer):
    probe = providers.Singleton(Probe)
    context = us.CurrentContext()
    notebook = us.UserScoped(Notebook, context)
    channel = us.ConnectionScoped(open_channel, context, probe)
    worker = us.RequestScoped(open_worker, context, probe)
    async_worker = us.RequestScoped(open_async_worker, context, probe)


class ForgedBody(BaseModel):
    user_id: str | None = None
    text: str = ""


@dataclass
class AdapterApp:
    app: FastAPI
    container: AppContainer
    sessions: us.UserSessions
    probe: Probe


def build_adapter_app(**limits: Any) -> AdapterApp:
    """The FastAPI app most adapter tests use (fresh container and sessions per call)."""
    container = AppContainer()
    probe = container.probe()
    sessions = us.UserSessions(**limits)
    app = FastAPI()
    authenticate = JWTAuthenticator(
        key=SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER
    )

    async def stats_guard(connection: Any) -> bool:
        return bool(connection.headers.get("x-admin") == "let-me-in")

    install(
        app,
        container,
        sessions,
        authenticate=authenticate,
        stats_path="/admin/userscope",
        stats_guard=stats_guard,
    )

    @app.get("/health")
    async def health() -> dict[str, Any]:
        ctx = us.current_context()
        return {"status": "ok", "user_id": None if ctx is None else ctx.user_id}

    @app.get("/whoami")
    async def whoami(
        worker: Worker = Inject(AppContainer.worker),
        ctx: us.UserExecutionContext = Inject(AppContainer.context),
    ) -> dict[str, Any]:
        return {
            "user_id": ctx.user_id,
            "request_id": ctx.request_id,
            "worker_user": worker.user_id,
            "worker": worker.number,
            "endpoint_thread": threading.get_ident(),
        }

    @app.get("/whoami-sync")
    def whoami_sync(
        worker: Annotated[Worker, Inject(AppContainer.worker)],
        ctx: Annotated[us.UserExecutionContext, Inject(AppContainer.context)],
    ) -> dict[str, Any]:
        direct = container.worker()
        return {
            "user_id": ctx.user_id,
            "worker_user": worker.user_id,
            "same_worker": direct is worker,
            "endpoint_thread": threading.get_ident(),
        }

    @app.get("/async-worker")
    async def async_worker(
        worker: Annotated[Worker, Inject(AppContainer.async_worker)],
    ) -> dict[str, Any]:
        again = await container.async_worker.async_()
        return {"worker_user": worker.user_id, "same_worker": again is worker}

    @app.get("/async-worker-sync")
    def async_worker_sync(
        worker: Worker = Inject(AppContainer.async_worker),
    ) -> dict[str, Any]:
        return {"worker_user": worker.user_id}

    @app.get("/notebook")
    async def notebook(
        book: Annotated[Notebook, Inject(AppContainer.notebook)],
    ) -> dict[str, Any]:
        book.pages.append("x")
        return {"user_id": book.user_id, "pages": len(book.pages)}

    @app.post("/forged")
    async def forged(
        body: ForgedBody,
        request: Request,
        ctx: Annotated[us.UserExecutionContext, Inject(AppContainer.context)],
    ) -> dict[str, Any]:
        current = us.current_context()
        return {
            "context_user": ctx.user_id,
            "current_user": None if current is None else current.user_id,
            "body_user": body.user_id,
            "header_user": request.headers.get("x-user-id"),
            "query_user": request.query_params.get("user_id"),
        }

    @app.get("/boom")
    async def boom(worker: Annotated[Worker, Inject(AppContainer.worker)]) -> None:
        raise RuntimeError(f"secret internal detail of {worker.user_id}")

    @app.get("/other-user")
    async def other_user(
        ctx: Annotated[us.UserExecutionContext, Inject(AppContainer.context)],
    ) -> None:
        intruder = us.UserExecutionContext(user_id="mallory", thread_id="t-x")
        async with sessions.request(intruder):
            pass  # pragma: no cover - refused above

    @app.get("/hold")
    def hold(worker: Annotated[Worker, Inject(AppContainer.worker)]) -> dict[str, Any]:
        probe.release.wait(timeout=10)
        return {"worker_user": worker.user_id}

    @app.websocket("/ws")
    async def ws_chat(
        websocket: WebSocket,
        channel: Annotated[Channel, Inject(AppContainer.channel)],
        book: Annotated[Notebook, Inject(AppContainer.notebook)],
    ) -> None:
        await websocket.accept()
        try:
            async for text in websocket.iter_text():
                if text.startswith("sleep:"):
                    # hold the message until the token has expired, then ask for a scope
                    await asyncio.sleep(float(text.removeprefix("sleep:")))
                async with message_scope(websocket) as mctx:
                    if text == "impersonate":
                        intruder = us.UserExecutionContext(user_id="mallory", thread_id="t-x")
                        async with sessions.request(intruder):
                            pass  # pragma: no cover - refused above
                    if text == "boom":
                        await container.worker.async_()
                        raise RuntimeError("secret internal detail")
                    worker = await container.worker.async_()
                    current = us.current_context()
                    await websocket.send_json(
                        {
                            "user_id": mctx.user_id,
                            "current_user": None if current is None else current.user_id,
                            "request_id": mctx.request_id,
                            "connection_id": mctx.connection_id,
                            "worker_user": worker.user_id,
                            "worker": worker.number,
                            "channel": channel.number,
                            "channel_user": channel.user_id,
                            "notebook_user": book.user_id,
                            "text": text,
                        }
                    )
        except WebSocketDisconnect:
            pass

    return AdapterApp(app, container, sessions, probe)
