"""FastAPI end to end: one GET endpoint returning data from the request-scoped Agent, and
one WebSocket endpoint opening a message scope per message.

Run::

    .venv/bin/python benchmarks/bench_fastapi.py [--n N] [--reps R] [--smoke]

Every app is driven by direct ASGI calls (the scope dict, ``receive`` and ``send`` are built
here; no HTTP client, no server). Every app does the same work per request: read the
``x-user`` header, build the same context object, get the user's ``AgentRegistry`` (one per
user, kept across requests), open a ``WebSocketBridge`` from an async generator whose
cleanup must run, build the ``Agent``, return ``agent.answer()`` as JSON. Apps alternate
inside every repetition (rotating order); the script fails if any request is not a 200
with the expected body or if any app's bridge cleanup did not run once per request.

Identity is the same step for every app and verifies nothing: ``ctx_from`` reads the
``x-user`` header and builds the context (no token, no signature check). The bare app
calls it in the endpoint, FastAPI ``Depends`` in a dependency, dishka and wireup in a
REQUEST-scoped factory, userscope in the ``authenticate`` callable of its middleware.

``bare+1-depends`` is the bare app with one extra trivial ``async def`` dependency that
returns a constant: the cost of a single FastAPI dependency, a floor for any DI that goes
through FastAPI's ``Depends``.

The WebSocket rows (``ws:`` prefix) drive one connection of ``n`` text messages into a
``/ws`` endpoint, again by direct ASGI calls, and report microseconds per message. The
connection authenticates once (the same ``ctx_from``), gets the user's registry and opens
the bridge once (its cleanup must run once, at the disconnect). Per message every app does
the same work: derive the message's context (``ctx.for_request()``, a fresh request id),
open a scope for the message, get a new ``Agent`` (registry, the connection's bridge, the
LLM client) from it, send ``agent.answer()`` as JSON, close the scope. ``ws:bare`` is the
hand-written floor (the endpoint wires the graph itself, no scope); ``ws:wireup`` opens
``container.enter_scope({WebSocketBridge: bridge})`` per message (wireup has one scope
level, so the connection's bridge is handed to the message's scope); ``ws:dishka`` enters
the REQUEST scope nested in the connection's SESSION scope; ``ws:userscope`` uses
``async with message_scope(websocket):`` and ``await container.agent.async_()``;
``ws:userscope-exp`` is the same app with credentials that expire in an hour (what every
JWT deployment has: each message is received under the connection's expiry deadline).
"""

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Annotated, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _graph as g
from fastapi import APIRouter, Depends, FastAPI, Request, WebSocket

Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]

USER = "alice"
EXPECTED_BODY = {"user": USER, "model": "gpt-bench"}


def ctx_from(request: Any) -> Any:
    """The one identity step every app performs (stands in for verifying a token)."""
    return g.make_ctx(request.headers["x-user"])


class BenchApp:
    """One contender: an ASGI app plus the counter its bridge cleanup increments."""

    def __init__(self, name: str, app: FastAPI, counter: g.Counter) -> None:
        self.name = name
        self.app = app
        self.counter = counter
        self.state: dict[str, Any] = {}
        self._lifespan_task: asyncio.Task[None] | None = None
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()

    async def startup(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": self.state}
        self._lifespan_task = asyncio.ensure_future(
            self.app(scope, self._to_app.get, self._from_app.put)
        )
        await self._to_app.put({"type": "lifespan.startup"})
        message = await self._from_app.get()
        if message["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"{self.name}: lifespan startup failed: {message}")

    async def shutdown(self) -> None:
        if self._lifespan_task is None:
            return
        await self._to_app.put({"type": "lifespan.shutdown"})
        message = await self._from_app.get()
        await self._lifespan_task
        if message["type"] != "lifespan.shutdown.complete":
            raise RuntimeError(f"{self.name}: lifespan shutdown failed: {message}")


# ------------------------------------------------------------------------------ apps


def bare_app() -> BenchApp:
    """No DI at all: the endpoint wires the graph by hand (the floor's code, inline)."""
    counter = g.Counter()
    aopen_bridge = g.abridge_factory(counter)
    users: dict[str, g.AgentRegistry] = {}
    llm = g.LLMClient(g.Settings())
    app = FastAPI()

    @app.get("/agent")
    async def endpoint(request: Request) -> dict[str, str]:
        ctx = ctx_from(request)
        registry = users.get(ctx.user_id)
        if registry is None:
            registry = users[ctx.user_id] = g.AgentRegistry(ctx)
        agen = aopen_bridge(ctx)
        bridge = await agen.__anext__()
        try:
            return g.Agent(registry, bridge, llm).answer()
        finally:
            try:
                await agen.__anext__()
            except StopAsyncIteration:
                pass
            else:
                raise RuntimeError("bridge generator yielded twice")

    return BenchApp("bare", app, counter)


def bare_one_depends_app() -> BenchApp:
    """The bare app plus one trivial ``async def`` dependency returning a constant."""
    counter = g.Counter()
    aopen_bridge = g.abridge_factory(counter)
    users: dict[str, g.AgentRegistry] = {}
    llm = g.LLMClient(g.Settings())
    app = FastAPI()

    async def constant() -> int:
        return 1

    @app.get("/agent")
    async def endpoint(request: Request, _: Annotated[int, Depends(constant)]) -> dict[str, str]:
        ctx = ctx_from(request)
        registry = users.get(ctx.user_id)
        if registry is None:
            registry = users[ctx.user_id] = g.AgentRegistry(ctx)
        agen = aopen_bridge(ctx)
        bridge = await agen.__anext__()
        try:
            return g.Agent(registry, bridge, llm).answer()
        finally:
            try:
                await agen.__anext__()
            except StopAsyncIteration:
                pass
            else:
                raise RuntimeError("bridge generator yielded twice")

    return BenchApp("bare+1-depends", app, counter)


def depends_app() -> BenchApp:
    """FastAPI's own ``Depends``: async dependencies, the bridge as a yield dependency."""
    counter = g.Counter()
    aopen_bridge = g.abridge_factory(counter)
    users: dict[str, g.AgentRegistry] = {}
    llm = g.LLMClient(g.Settings())

    async def get_ctx(request: Request) -> Any:
        return ctx_from(request)

    Ctx = Annotated[Any, Depends(get_ctx)]

    async def get_registry(ctx: Ctx) -> g.AgentRegistry:
        registry = users.get(ctx.user_id)
        if registry is None:
            registry = users[ctx.user_id] = g.AgentRegistry(ctx)
        return registry

    async def get_bridge(ctx: Ctx) -> AsyncIterator[g.WebSocketBridge]:
        async for bridge in aopen_bridge(ctx):
            yield bridge

    async def get_llm() -> g.LLMClient:
        return llm

    async def get_agent(
        registry: Annotated[g.AgentRegistry, Depends(get_registry)],
        bridge: Annotated[g.WebSocketBridge, Depends(get_bridge)],
        llm: Annotated[g.LLMClient, Depends(get_llm)],
    ) -> g.Agent:
        return g.Agent(registry, bridge, llm)

    app = FastAPI()

    @app.get("/agent")
    async def endpoint(agent: Annotated[g.Agent, Depends(get_agent)]) -> dict[str, str]:
        return agent.answer()

    return BenchApp("fastapi-depends", app, counter)


def dishka_app() -> BenchApp:
    """dishka's FastAPI integration: ``setup_dishka`` + ``DishkaRoute``; its middleware opens
    a REQUEST scope per request (HTTP: connection = request); user-lived registries come from
    an APP-scoped dict through a REQUEST-scoped factory."""
    from dishka import Provider, Scope, make_async_container
    from dishka.integrations.fastapi import (
        DishkaRoute,
        FastapiProvider,
        FromDishka,
        setup_dishka,
    )

    counter = g.Counter()

    class UserRegistries:
        def __init__(self) -> None:
            self.by_user: dict[str, g.AgentRegistry] = {}

    def context(request: Request) -> g.Ctx:
        return ctx_from(request)

    def registry(ctx: g.Ctx, registries: UserRegistries) -> g.AgentRegistry:
        found = registries.by_user.get(ctx.user_id)
        if found is None:
            found = registries.by_user[ctx.user_id] = g.AgentRegistry(ctx)
        return found

    p = Provider()
    p.provide(context, scope=Scope.REQUEST)
    p.provide(UserRegistries, scope=Scope.APP)
    p.provide(g.Settings, scope=Scope.APP)
    p.provide(g.LLMClient, scope=Scope.APP)
    p.provide(registry, scope=Scope.REQUEST)
    p.provide(g.abridge_factory(counter), scope=Scope.REQUEST, provides=g.WebSocketBridge)
    p.provide(g.Agent, scope=Scope.REQUEST)
    container = make_async_container(p, FastapiProvider())

    router = APIRouter(route_class=DishkaRoute)

    @router.get("/agent")
    async def endpoint(agent: FromDishka[g.Agent]) -> dict[str, str]:
        return agent.answer()

    app = FastAPI()
    app.include_router(router)
    setup_dishka(container, app)
    return BenchApp("dishka", app, counter)


def wireup_app() -> BenchApp:
    """wireup's FastAPI integration: ``WireupRoute`` + ``setup``; one ``scoped`` lifetime
    per request, user-lived registries from a singleton dict through a scoped factory."""
    import wireup
    import wireup.integration.fastapi as wf

    counter = g.Counter()

    @wireup.injectable
    class UserRegistries:
        def __init__(self) -> None:
            self.by_user: dict[str, g.AgentRegistry] = {}

    @wireup.injectable(lifetime="scoped")
    def context(request: Request) -> g.Ctx:
        return ctx_from(request)

    @wireup.injectable(lifetime="scoped")
    def registry(ctx: g.Ctx, registries: UserRegistries) -> g.AgentRegistry:
        found = registries.by_user.get(ctx.user_id)
        if found is None:
            found = registries.by_user[ctx.user_id] = g.AgentRegistry(ctx)
        return found

    container = wireup.create_async_container(
        injectables=[
            wf.request_factory,
            context,
            UserRegistries,
            wireup.injectable(g.Settings),
            wireup.injectable(g.LLMClient),
            registry,
            wireup.injectable(g.abridge_factory(counter), lifetime="scoped"),
            wireup.injectable(g.Agent, lifetime="scoped"),
        ]
    )
    router = APIRouter(route_class=wf.WireupRoute)

    @router.get("/agent")
    async def endpoint(agent: wireup.Injected[g.Agent]) -> dict[str, str]:
        return agent.answer()

    app = FastAPI()
    app.include_router(router)
    wf.setup(container, app)
    return BenchApp("wireup", app, counter)


def userscope_app() -> BenchApp:
    """userscope's adapter: ``install`` + ``Inject``; alice's USER scope (and registry)
    lives across requests, each request opens CONNECTION + REQUEST."""
    from dependency_injector import containers, providers

    from userscope.adapters.fastapi import Inject, install

    us = g.us
    assert us is not None
    counter = g.Counter()

    class Container(containers.DeclarativeContainer):
        settings = providers.Singleton(g.Settings)
        llm = providers.Singleton(g.LLMClient, settings)
        context = us.CurrentContext()
        registry = us.UserScoped(g.AgentRegistry, context)
        bridge = us.ConnectionScoped(g.abridge_factory(counter), context)
        agent = us.RequestScoped(g.Agent, registry=registry, bridge=bridge, llm=llm)

    container = Container()
    sessions = us.UserSessions()

    async def authenticate(conn: Any) -> Any:
        return ctx_from(conn)

    app = FastAPI()

    @app.get("/agent")
    async def endpoint(agent: g.Agent = Inject(Container.agent)) -> dict[str, str]:
        return agent.answer()

    install(app, container, sessions, authenticate=authenticate)
    return BenchApp("userscope", app, counter)


# ------------------------------------------------------------------------- WebSocket apps


async def _close_bridge(agen: AsyncIterator[g.WebSocketBridge]) -> None:
    try:
        await agen.__anext__()
    except StopAsyncIteration:
        return
    raise RuntimeError("bridge generator yielded twice")


def ws_bare_app() -> BenchApp:
    """The floor: the endpoint wires the graph by hand, per message, with no scope."""
    counter = g.Counter()
    aopen_bridge = g.abridge_factory(counter)
    users: dict[str, g.AgentRegistry] = {}
    llm = g.LLMClient(g.Settings())
    app = FastAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        ctx = ctx_from(websocket)
        registry = users.get(ctx.user_id)
        if registry is None:
            registry = users[ctx.user_id] = g.AgentRegistry(ctx)
        agen = aopen_bridge(ctx)
        bridge = await agen.__anext__()
        try:
            await websocket.accept()
            async for _ in websocket.iter_text():
                ctx.for_request()
                await websocket.send_json(g.Agent(registry, bridge, llm).answer())
        finally:
            await _close_bridge(agen)

    return BenchApp("ws:bare", app, counter)


def ws_dishka_app() -> BenchApp:
    """dishka: its middleware opens the SESSION scope per connection; per message the
    endpoint enters the REQUEST scope nested in it."""
    from dishka import Provider, Scope, make_async_container
    from dishka.integrations.fastapi import FastapiProvider, setup_dishka

    counter = g.Counter()

    class UserRegistries:
        def __init__(self) -> None:
            self.by_user: dict[str, g.AgentRegistry] = {}

    def context(websocket: WebSocket) -> g.Ctx:
        return ctx_from(websocket)

    def registry(ctx: g.Ctx, registries: UserRegistries) -> g.AgentRegistry:
        found = registries.by_user.get(ctx.user_id)
        if found is None:
            found = registries.by_user[ctx.user_id] = g.AgentRegistry(ctx)
        return found

    p = Provider()
    p.provide(context, scope=Scope.SESSION)
    p.provide(UserRegistries, scope=Scope.APP)
    p.provide(g.Settings, scope=Scope.APP)
    p.provide(g.LLMClient, scope=Scope.APP)
    p.provide(registry, scope=Scope.SESSION)
    p.provide(g.abridge_factory(counter), scope=Scope.SESSION, provides=g.WebSocketBridge)
    p.provide(g.Agent, scope=Scope.REQUEST)
    container = make_async_container(p, FastapiProvider())
    app = FastAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        connection = websocket.state.dishka_container
        await websocket.accept()
        async for _ in websocket.iter_text():
            ctx = await connection.get(g.Ctx)
            ctx.for_request()
            async with connection() as message:
                agent = await message.get(g.Agent)
                await websocket.send_json(agent.answer())

    setup_dishka(container, app)
    return BenchApp("ws:dishka", app, counter)


def ws_wireup_app() -> BenchApp:
    """wireup: ``WireupRoute`` injects the connection's bridge (one ``scoped`` lifetime per
    connection); per message the endpoint enters a new scope with that bridge provided."""
    import wireup
    import wireup.integration.fastapi as wf

    counter = g.Counter()

    @wireup.injectable
    class UserRegistries:
        def __init__(self) -> None:
            self.by_user: dict[str, g.AgentRegistry] = {}

    @wireup.injectable(lifetime="scoped")
    def context(websocket: WebSocket) -> g.Ctx:
        return ctx_from(websocket)

    @wireup.injectable(lifetime="scoped")
    def registry(ctx: g.Ctx, registries: UserRegistries) -> g.AgentRegistry:
        found = registries.by_user.get(ctx.user_id)
        if found is None:
            found = registries.by_user[ctx.user_id] = g.AgentRegistry(ctx)
        return found

    container = wireup.create_async_container(
        injectables=[
            wf.websocket_factory,
            context,
            UserRegistries,
            wireup.injectable(g.Settings),
            wireup.injectable(g.LLMClient),
            registry,
            wireup.injectable(g.abridge_factory(counter), lifetime="scoped"),
            wireup.injectable(g.Agent, lifetime="scoped"),
        ]
    )
    app = FastAPI()

    @app.websocket("/ws")
    async def endpoint(
        websocket: WebSocket,
        ctx: wireup.Injected[g.Ctx],
        registry: wireup.Injected[g.AgentRegistry],
        bridge: wireup.Injected[g.WebSocketBridge],
    ) -> None:
        await websocket.accept()
        provided = {g.Ctx: ctx, g.AgentRegistry: registry, g.WebSocketBridge: bridge}
        async for _ in websocket.iter_text():
            ctx.for_request()
            async with container.enter_scope(provided) as message:
                agent = await message.get(g.Agent)
                await websocket.send_json(agent.answer())

    wf.setup(container, app)
    return BenchApp("ws:wireup", app, counter)


def ws_userscope_app() -> BenchApp:
    """userscope: the middleware opens CONNECTION per socket; ``message_scope`` opens
    REQUEST per message (for a fresh ``ctx.for_request()``)."""
    return _ws_userscope("ws:userscope", expires_in=None)


def ws_userscope_exp_app() -> BenchApp:
    """``ws:userscope`` with credentials that expire (in an hour, as a JWT's ``exp`` does):
    every message is received under the connection's expiry deadline."""
    return _ws_userscope("ws:userscope-exp", expires_in=3600.0)


def _ws_userscope(name: str, expires_in: float | None) -> BenchApp:
    from dependency_injector import containers, providers

    from userscope.adapters.fastapi import install, message_scope, set_credentials_expiry

    us = g.us
    assert us is not None
    counter = g.Counter()

    class Container(containers.DeclarativeContainer):
        settings = providers.Singleton(g.Settings)
        llm = providers.Singleton(g.LLMClient, settings)
        context = us.CurrentContext()
        registry = us.UserScoped(g.AgentRegistry, context)
        bridge = us.ConnectionScoped(g.abridge_factory(counter), context)
        agent = us.RequestScoped(g.Agent, registry=registry, bridge=bridge, llm=llm)

    container = Container()
    sessions = us.UserSessions()

    async def authenticate(conn: Any) -> Any:
        if expires_in is not None:
            set_credentials_expiry(conn, time.time() + expires_in)
        return ctx_from(conn)

    app = FastAPI()
    agent_provider = container.agent

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        async for _ in websocket.iter_text():
            async with message_scope(websocket):
                agent = await agent_provider.async_()
                await websocket.send_json(agent.answer())

    install(app, container, sessions, authenticate=authenticate)
    return BenchApp(name, app, counter)


APP_BUILDERS: dict[str, tuple[Callable[[], BenchApp], str]] = {
    "bare": (bare_app, ""),
    "bare+1-depends": (bare_one_depends_app, ""),
    "fastapi-depends": (depends_app, ""),
    "dishka": (dishka_app, "dishka.integrations.fastapi"),
    "wireup": (wireup_app, "wireup.integration.fastapi"),
    "userscope": (userscope_app, "userscope.adapters.fastapi"),
}

WS_APP_BUILDERS: dict[str, tuple[Callable[[], BenchApp], str]] = {
    "ws:bare": (ws_bare_app, ""),
    "ws:dishka": (ws_dishka_app, "dishka.integrations.fastapi"),
    "ws:wireup": (ws_wireup_app, "wireup.integration.fastapi"),
    "ws:userscope": (ws_userscope_app, "userscope.adapters.fastapi"),
    "ws:userscope-exp": (ws_userscope_exp_app, "userscope.adapters.fastapi"),
}


def load_apps(notes: list[str]) -> list[BenchApp]:
    return g.load_participants(APP_BUILDERS, notes)


def load_ws_apps(notes: list[str]) -> list[BenchApp]:
    return g.load_participants(WS_APP_BUILDERS, notes)


# ---------------------------------------------------------------------------- driver

_BASE_SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/agent",
    "raw_path": b"/agent",
    "root_path": "",
    "query_string": b"",
    "headers": [(b"host", b"bench.local"), (b"x-user", USER.encode())],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
}
_REQUEST_MESSAGE: Message = {"type": "http.request", "body": b"", "more_body": False}


class _Recorder:
    """Collects statuses and the last body without allocating per message beyond need."""

    __slots__ = ("bad", "last_body")

    def __init__(self) -> None:
        self.bad = 0
        self.last_body = b""

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            if message["status"] != 200:
                self.bad += 1
        elif message["type"] == "http.response.body":
            self.last_body = message.get("body", b"")


async def _receive() -> Message:
    return _REQUEST_MESSAGE


async def drive(bench: BenchApp, n: int) -> int:
    """Send ``n`` GET requests straight into the ASGI app; return elapsed ns."""
    app, state, recorder = bench.app, bench.state, _Recorder()
    send, base = recorder.send, _BASE_SCOPE
    bench.counter.reset()
    gc.collect()
    t0 = g.now_ns()
    for _ in range(n):
        scope = dict(base)
        scope["state"] = dict(state)
        await app(scope, _receive, send)
    elapsed = g.now_ns() - t0
    if recorder.bad:
        raise AssertionError(f"{bench.name}: {recorder.bad} of {n} responses were not 200")
    body = json.loads(recorder.last_body)
    if body != EXPECTED_BODY:
        raise AssertionError(f"{bench.name}: unexpected body {body!r}")
    bench.counter.check(bench.name, "fastapi end to end", n)
    return elapsed


_WS_SCOPE: dict[str, Any] = {
    "type": "websocket",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "scheme": "ws",
    "path": "/ws",
    "raw_path": b"/ws",
    "root_path": "",
    "query_string": b"",
    "headers": [(b"host", b"bench.local"), (b"x-user", USER.encode())],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
    "subprotocols": [],
}
_CONNECT: Message = {"type": "websocket.connect"}
_TEXT: Message = {"type": "websocket.receive", "text": "hello", "bytes": None}
_DISCONNECT: Message = {"type": "websocket.disconnect", "code": 1000}
_EXPECTED_TEXT = json.dumps(EXPECTED_BODY, separators=(",", ":"))


class _WsPeer:
    """The client side of one connection: ``n`` text messages, then a disconnect."""

    __slots__ = ("accepted", "bad", "last_text", "left", "sent")

    def __init__(self, n: int) -> None:
        self.left = n
        self.sent = 0
        self.accepted = False
        self.bad: list[Message] = []
        self.last_text = ""

    async def receive(self) -> Message:
        if not self.accepted:
            return _CONNECT
        if self.left:
            self.left -= 1
            return _TEXT
        return _DISCONNECT

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "websocket.send":
            self.sent += 1
            self.last_text = message["text"]
        elif kind == "websocket.accept":
            self.accepted = True
        else:
            self.bad.append(message)


async def drive_ws(bench: BenchApp, n: int) -> int:
    """Send ``n`` text messages over one WebSocket connection; return elapsed ns."""
    app, peer = bench.app, _WsPeer(n)
    bench.counter.reset()
    scope = dict(_WS_SCOPE)
    scope["state"] = dict(bench.state)
    gc.collect()
    t0 = g.now_ns()
    await app(scope, peer.receive, peer.send)
    elapsed = g.now_ns() - t0
    if peer.bad or not peer.accepted or peer.sent != n:
        raise AssertionError(
            f"{bench.name}: accepted={peer.accepted}, {peer.sent} of {n} answers sent, "
            f"unexpected messages {peer.bad!r}"
        )
    if json.loads(peer.last_text) != EXPECTED_BODY:
        raise AssertionError(f"{bench.name}: unexpected answer {peer.last_text!r}")
    bench.counter.check(bench.name, "websocket messages", 1)
    return elapsed


Driver = Callable[[BenchApp, int], Awaitable[int]]


async def run(
    n: int, reps: int, apps: list[BenchApp], driver: Driver = drive
) -> dict[str, list[float]]:
    """Return ``{app: [operations per second, one per repetition]}``."""
    if not apps:
        return {}
    for bench in apps:
        await bench.startup()
    try:
        for bench in apps:
            await driver(bench, max(n // 5, 10))  # warm-up
        results: dict[str, list[float]] = {bench.name: [] for bench in apps}
        for rep in range(reps):
            shift = rep % len(apps)
            for bench in apps[shift:] + apps[:shift]:
                ns = await driver(bench, n)
                results[bench.name].append(n / (ns / 1e9))
        return results
    finally:
        for bench in apps:
            await bench.shutdown()


def format_table(results: dict[str, list[float]]) -> str:
    lines = [
        "| app | median req/s | best req/s | median us/req | median / bare | best / bare |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    bare = results.get("bare")
    for name, samples in results.items():
        med, best = g.median(samples), max(samples)
        if bare:
            r_med, r_best = f"{med / g.median(bare):.2f}x", f"{best / max(bare):.2f}x"
        else:
            r_med = r_best = "n/a"
        lines.append(
            f"| {name} | {med:,.0f} | {best:,.0f} | {1e6 / med:,.1f} | {r_med} | {r_best} |"
        )
    return "\n".join(lines)


def format_ws_table(results: dict[str, list[float]]) -> str:
    """Microseconds per message, their ratio to ``ws:bare``, the cost over it, and the
    difference to ``ws:wireup``.

    The cost over the floor is given twice: the difference of the medians, and the
    median of the per-repetition differences (each repetition runs every app back to
    back, so the paired one cancels the machine's drift between repetitions: the column
    to compare apps by on a loaded box). The last column pairs each app with wireup the
    same way: the median of the per-repetition differences to ``ws:wireup`` and their
    quartiles. Many short repetitions resolve it best (``--only ws --reps 300 --n 1000``:
    about 0.05 us between runs on a quiet box, where the medians of a few long
    repetitions move by 0.5 us).
    """
    lines = [
        (
            "| app | median us/msg | min us/msg | median / floor | min / floor "
            "| median cost over floor (us) | paired cost over floor (us) "
            "| paired vs ws:wireup (us) [quartiles] |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    floor = results.get("ws:bare")
    wireup = results.get("ws:wireup")
    f_med = 1e6 / g.median(floor) if floor else None
    f_min = 1e6 / max(floor) if floor else None
    for name, samples in results.items():
        med, best = 1e6 / g.median(samples), 1e6 / max(samples)
        if floor and f_med is not None and f_min is not None:
            paired = g.median([1e6 / a - 1e6 / b for a, b in zip(samples, floor, strict=True)])
            cells = f"{med / f_med:.2f}x | {best / f_min:.2f}x | {med - f_med:,.1f} | {paired:,.1f}"
        else:
            cells = "n/a | n/a | n/a | n/a"
        versus = _versus(samples, wireup)
        lines.append(f"| {name} | {med:,.1f} | {best:,.1f} | {cells} | {versus} |")
    return "\n".join(lines)


def _versus(samples: list[float], peer: list[float] | None) -> str:
    """``samples`` against ``peer`` (operations per second, one per repetition): the
    median of the per-repetition differences in us per operation, with its quartiles."""
    if not peer or len(samples) < 2:
        return "n/a"
    diffs = [1e6 / a - 1e6 / b for a, b in zip(samples, peer, strict=True)]
    low, _, high = statistics.quantiles(diffs, n=4)
    return f"{g.median(diffs):+.2f} [{low:+.2f}, {high:+.2f}]"


async def run_all(
    n: int, reps: int, apps: list[BenchApp], ws_apps: list[BenchApp]
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    return await run(n, reps, apps), await run(n, reps, ws_apps, drive_ws)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--n", type=int, default=5_000, help="requests (messages) per repetition (>= 5000)"
    )
    parser.add_argument("--reps", type=int, default=7, help="repetitions (>= 7 for a real run)")
    parser.add_argument("--only", choices=("http", "ws"), help="run only one of the two tables")
    parser.add_argument("--smoke", action="store_true", help="tiny N, for CI")
    args = parser.parse_args(argv)
    n, reps = (10, 2) if args.smoke else (args.n, args.reps)

    notes: list[str] = []
    apps = load_apps(notes) if args.only != "ws" else []
    ws_apps = load_ws_apps(notes) if args.only != "http" else []
    gc.collect()
    gc.freeze()  # long-lived objects out of the collector's reach, equally for every app
    results, ws_results = asyncio.run(run_all(n, reps, apps, ws_apps))

    print("# bench_fastapi")
    print()
    facts = g.versions()
    facts["nproc"] = str(os.cpu_count())
    print("machine: " + ", ".join(f"{k} {v}" for k, v in facts.items()))
    print(
        f"n={n} requests (messages) per repetition, reps={reps}, direct ASGI calls, one event loop"
    )
    for note in notes:
        print(f"note: {note}")
    if apps:
        print()
        print(format_table(results))
    if ws_apps:
        print()
        print(format_ws_table(ws_results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
