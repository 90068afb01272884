"""Scoped resolution: userscope against a hand-written floor, dependency-injector, dishka, wireup.

Run::

    .venv/bin/python benchmarks/bench_resolve.py [--n N] [--reps R] [--smoke] [--mode MODE]
    .venv/bin/python benchmarks/bench_resolve.py --profile userscope [--profile-row async]

``--mode`` picks how userscope runs (see docs/compiled.md): ``auto`` (default) measures
userscope as it imports and, when that is compiled, adds a ``userscope-pure`` row: the same
code on its pure-Python modules (``USERSCOPE_PURE=1``) in a child process driven in
lockstep, so it takes its turn in the same rotation; ``both`` is ``auto`` but fails unless
the compiled core is built; ``compiled`` fails unless it is (no pure row); ``pure`` runs
the whole benchmark with ``USERSCOPE_PURE=1``. The ``machine:`` line says which ran.

Rows (see benchmarks/README.md): ``sync cycle``, ``async cycle``, ``cached scoped resolve``,
``app singleton resolve``. Inside every repetition the libraries run one after the other,
in an order that rotates between repetitions, so machine drift hits all of them alike.
Each measurement starts from a fresh ``gc.collect()`` with the collector enabled; each
library is warmed up first; the timer is ``time.perf_counter_ns`` around a loop of ``N``
operations, nothing is printed inside a loop. After every timed loop the library's own
bridge counter must show exactly one cleanup per cycle, or the script fails.
"""

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import subprocess
import sys
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _graph as g

ROWS = ("sync cycle", "async cycle", "cached scoped resolve", "app singleton resolve")

# How many operations a row runs per repetition, relative to --n (cheap rows run more).
ROW_SCALE = {
    "sync cycle": 1,
    "async cycle": 1,
    "cached scoped resolve": 10,
    "app singleton resolve": 10,
}


class Library:
    """One contender. Each timed method runs ``n`` operations and returns elapsed ns."""

    name = "?"

    def __init__(self) -> None:
        self.counter = g.Counter()
        self.acounter = g.Counter()
        self.ctx = g.make_ctx()

    def sync_cycle(self, n: int) -> int:
        raise NotImplementedError

    async def async_cycle(self, n: int) -> int:
        raise NotImplementedError

    def cached(self, n: int) -> int:
        raise NotImplementedError

    def singleton(self, n: int) -> int:
        raise NotImplementedError

    def close(self) -> None:
        """Release app-level resources after the run."""


# --------------------------------------------------------------------------- floor


class _FloorScope:
    __slots__ = ("cache", "ctx", "finalizers", "user")

    def __init__(self, ctx: Any, user: dict[Any, Any]) -> None:
        self.ctx = ctx
        self.user = user
        self.cache: dict[Any, Any] = {}
        self.finalizers: list[Any] = []


class Floor(Library):
    """No library: a dict cache per scope, a list of finalizer generators, a dict of users.

    The context is passed explicitly (no ContextVar): this is the least work that can
    give the same guarantees for this graph, written the way one would by hand.
    """

    name = "floor"

    def __init__(self) -> None:
        super().__init__()
        self.users: dict[str, dict[Any, Any]] = {}
        self.app: dict[Any, Any] = {}
        self.open_bridge = g.bridge_factory(self.counter)
        self.aopen_bridge = g.abridge_factory(self.acounter)

    def llm(self) -> g.LLMClient:
        llm = self.app.get(g.LLMClient)
        if llm is None:
            llm = self.app[g.LLMClient] = g.LLMClient(g.Settings())
        return llm

    def open(self, ctx: Any) -> _FloorScope:
        user = self.users.get(ctx.user_id)
        if user is None:
            user = self.users[ctx.user_id] = {}
        return _FloorScope(ctx, user)

    def agent(self, s: _FloorScope) -> g.Agent:
        agent = s.cache.get(g.Agent)
        if agent is None:
            ctx = s.ctx
            registry = s.user.get(g.AgentRegistry)
            if registry is None:
                registry = s.user[g.AgentRegistry] = g.AgentRegistry(ctx)
            gen = self.open_bridge(ctx)
            bridge = next(gen)
            s.finalizers.append(gen)
            agent = s.cache[g.Agent] = g.Agent(registry, bridge, self.llm())
        return agent

    async def aagent(self, s: _FloorScope) -> g.Agent:
        agent = s.cache.get(g.Agent)
        if agent is None:
            ctx = s.ctx
            registry = s.user.get(g.AgentRegistry)
            if registry is None:
                registry = s.user[g.AgentRegistry] = g.AgentRegistry(ctx)
            agen = self.aopen_bridge(ctx)
            bridge = await agen.__anext__()
            s.finalizers.append(agen)
            agent = s.cache[g.Agent] = g.Agent(registry, bridge, self.llm())
        return agent

    @staticmethod
    def close_scope(s: _FloorScope) -> None:
        finalizers = s.finalizers
        while finalizers:
            gen = finalizers.pop()
            try:
                next(gen)
            except StopIteration:
                pass
            else:
                raise RuntimeError("bridge generator yielded twice")
        s.cache.clear()

    @staticmethod
    async def aclose_scope(s: _FloorScope) -> None:
        finalizers = s.finalizers
        while finalizers:
            agen = finalizers.pop()
            try:
                await agen.__anext__()
            except StopAsyncIteration:
                pass
            else:
                raise RuntimeError("bridge generator yielded twice")
        s.cache.clear()

    def sync_cycle(self, n: int) -> int:
        ctx, open_, agent_of, close = self.ctx, self.open, self.agent, self.close_scope
        t0 = g.now_ns()
        for _ in range(n):
            s = open_(ctx)
            try:
                agent = agent_of(s)
                if agent_of(s) is not agent:
                    raise AssertionError("floor: second resolve built a new Agent")
            finally:
                close(s)
        return g.now_ns() - t0

    async def async_cycle(self, n: int) -> int:
        ctx, open_, agent_of, close = self.ctx, self.open, self.aagent, self.aclose_scope
        t0 = g.now_ns()
        for _ in range(n):
            s = open_(ctx)
            try:
                agent = await agent_of(s)
                if await agent_of(s) is not agent:
                    raise AssertionError("floor: second resolve built a new Agent")
            finally:
                await close(s)
        return g.now_ns() - t0

    def cached(self, n: int) -> int:
        s = self.open(self.ctx)
        try:
            agent_of = self.agent
            agent_of(s)
            t0 = g.now_ns()
            for _ in range(n):
                agent_of(s)
            return g.now_ns() - t0
        finally:
            self.close_scope(s)

    def singleton(self, n: int) -> int:
        llm = self.llm
        llm()
        t0 = g.now_ns()
        for _ in range(n):
            llm()
        return g.now_ns() - t0


# ------------------------------------------------------------- dependency-injector idiom


def build_di(open_bridge: Callable[..., Any]) -> tuple[Any, ContextVar[Any]]:
    """What people write today without userscope: a ContextVar for the identity,
    ``ContextLocalSingleton`` / ``ContextLocalResource`` reset by hand at the end of the
    request, and a per-user dict behind a ``Callable`` for user-lived objects."""
    from dependency_injector import containers, providers

    current: ContextVar[Any] = ContextVar("bench_current_ctx")
    registries: dict[str, g.AgentRegistry] = {}

    def user_registry(ctx: Any) -> g.AgentRegistry:
        registry = registries.get(ctx.user_id)
        if registry is None:
            registry = registries[ctx.user_id] = g.AgentRegistry(ctx)
        return registry

    class DIContainer(containers.DeclarativeContainer):
        settings = providers.Singleton(g.Settings)
        llm = providers.Singleton(g.LLMClient, settings)
        context = providers.Callable(current.get)
        registry = providers.Callable(user_registry, context)
        bridge = providers.ContextLocalResource(open_bridge, context)
        agent = providers.ContextLocalSingleton(g.Agent, registry=registry, bridge=bridge, llm=llm)

    return DIContainer(), current


class DIContextLocal(Library):
    name = "di-contextlocal"

    def __init__(self) -> None:
        super().__init__()
        self.c, self.current = build_di(g.bridge_factory(self.counter))
        self.ac, self.acurrent = build_di(g.abridge_factory(self.acounter))

    def sync_cycle(self, n: int) -> int:
        ctx, current, c = self.ctx, self.current, self.c
        agent_p, bridge_p = c.agent, c.bridge
        t0 = g.now_ns()
        for _ in range(n):
            token = current.set(ctx)
            try:
                agent = agent_p()
                if agent_p() is not agent:
                    raise AssertionError("di: second resolve built a new Agent")
            finally:
                agent_p.reset()
                bridge_p.shutdown()
                current.reset(token)
        return g.now_ns() - t0

    async def async_cycle(self, n: int) -> int:
        ctx, current, c = self.ctx, self.acurrent, self.ac
        agent_p, bridge_p = c.agent, c.bridge
        t0 = g.now_ns()
        for _ in range(n):
            token = current.set(ctx)
            try:
                agent = await agent_p.async_()
                if await agent_p.async_() is not agent:
                    raise AssertionError("di: second resolve built a new Agent")
            finally:
                agent_p.reset()
                await bridge_p.shutdown()
                current.reset(token)
        return g.now_ns() - t0

    def cached(self, n: int) -> int:
        token = self.current.set(self.ctx)
        agent_p = self.c.agent
        try:
            agent_p()
            t0 = g.now_ns()
            for _ in range(n):
                agent_p()
            return g.now_ns() - t0
        finally:
            agent_p.reset()
            self.c.bridge.shutdown()
            self.current.reset(token)

    def singleton(self, n: int) -> int:
        llm = self.c.llm
        llm()
        t0 = g.now_ns()
        for _ in range(n):
            llm()
        return g.now_ns() - t0


# --------------------------------------------------------------------------- dishka


def build_dishka(bridge: Callable[..., Any], *, is_async: bool) -> Any:
    """USER -> SESSION (one container per user, kept open), CONNECTION -> REQUEST,
    REQUEST -> ACTION, app singletons -> APP."""
    from dishka import Provider, Scope, make_async_container, make_container

    p = Provider()
    p.from_context(provides=g.Ctx, scope=Scope.SESSION)
    p.provide(g.Settings, scope=Scope.APP)
    p.provide(g.LLMClient, scope=Scope.APP)
    p.provide(g.AgentRegistry, scope=Scope.SESSION)
    p.provide(bridge, scope=Scope.REQUEST, provides=g.WebSocketBridge)
    p.provide(g.Agent, scope=Scope.ACTION)
    return make_async_container(p) if is_async else make_container(p)


class Dishka(Library):
    name = "dishka"

    def __init__(self) -> None:
        super().__init__()
        from dishka import Scope

        self.scope_request = Scope.REQUEST
        self.app = build_dishka(g.bridge_factory(self.counter), is_async=False)
        self.aapp = build_dishka(g.abridge_factory(self.acounter), is_async=True)
        # One SESSION container per user, entered once and kept for the user's life.
        self.user = self.app(context={g.Ctx: self.ctx}, scope=Scope.SESSION).__enter__()
        self.users = {self.ctx.user_id: self.user}
        self.auser: Any = None
        self.ausers: dict[str, Any] = {}

    async def _auser(self) -> None:
        from dishka import Scope

        if self.auser is None:
            self.auser = await self.aapp(
                context={g.Ctx: self.ctx}, scope=Scope.SESSION
            ).__aenter__()
            self.ausers[self.ctx.user_id] = self.auser

    def sync_cycle(self, n: int) -> int:
        users, uid, req = self.users, self.ctx.user_id, self.scope_request
        t0 = g.now_ns()
        for _ in range(n):
            with users[uid](scope=req) as conn, conn() as r:
                agent = r.get(g.Agent)
                if r.get(g.Agent) is not agent:
                    raise AssertionError("dishka: second resolve built a new Agent")
        return g.now_ns() - t0

    async def async_cycle(self, n: int) -> int:
        await self._auser()
        users, uid, req = self.ausers, self.ctx.user_id, self.scope_request
        t0 = g.now_ns()
        for _ in range(n):
            async with users[uid](scope=req) as conn, conn() as r:
                agent = await r.get(g.Agent)
                if await r.get(g.Agent) is not agent:
                    raise AssertionError("dishka: second resolve built a new Agent")
        return g.now_ns() - t0

    def cached(self, n: int) -> int:
        with self.user(scope=self.scope_request) as conn, conn() as r:
            get = r.get
            get(g.Agent)
            t0 = g.now_ns()
            for _ in range(n):
                get(g.Agent)
            return g.now_ns() - t0

    def singleton(self, n: int) -> int:
        get = self.app.get
        get(g.LLMClient)
        t0 = g.now_ns()
        for _ in range(n):
            get(g.LLMClient)
        return g.now_ns() - t0

    def close(self) -> None:
        self.user.__exit__(None, None, None)
        self.app.close()


# --------------------------------------------------------------------------- wireup


def build_wireup(bridge: Callable[..., Any], *, is_async: bool) -> Any:
    """Wireup has one scope level: bridge and agent are ``scoped`` (the HTTP request is the
    connection), user-lived registries come from a singleton dict through a scoped factory,
    the context is handed to ``enter_scope`` as a provided object."""
    import wireup

    @wireup.injectable(lifetime="scoped", as_type=g.Ctx)
    def context() -> g.Ctx:
        raise RuntimeError("the context is provided to enter_scope")

    class UserRegistries:
        def __init__(self) -> None:
            self.by_user: dict[str, g.AgentRegistry] = {}

    @wireup.injectable(lifetime="scoped")
    def registry(ctx: g.Ctx, registries: UserRegistries) -> g.AgentRegistry:
        found = registries.by_user.get(ctx.user_id)
        if found is None:
            found = registries.by_user[ctx.user_id] = g.AgentRegistry(ctx)
        return found

    injectables = [
        context,
        wireup.injectable(UserRegistries),
        wireup.injectable(g.Settings),
        wireup.injectable(g.LLMClient),
        registry,
        wireup.injectable(bridge, lifetime="scoped"),
        wireup.injectable(g.Agent, lifetime="scoped"),
    ]
    make = wireup.create_async_container if is_async else wireup.create_sync_container
    return make(injectables=injectables)


class Wireup(Library):
    name = "wireup"

    def __init__(self) -> None:
        super().__init__()
        self.c = build_wireup(g.bridge_factory(self.counter), is_async=False)
        self.ac = build_wireup(g.abridge_factory(self.acounter), is_async=True)

    def sync_cycle(self, n: int) -> int:
        enter, provided = self.c.enter_scope, {g.Ctx: self.ctx}
        t0 = g.now_ns()
        for _ in range(n):
            with enter(provided) as scope:
                agent = scope.get(g.Agent)
                if scope.get(g.Agent) is not agent:
                    raise AssertionError("wireup: second resolve built a new Agent")
        return g.now_ns() - t0

    async def async_cycle(self, n: int) -> int:
        enter, provided = self.ac.enter_scope, {g.Ctx: self.ctx}
        t0 = g.now_ns()
        for _ in range(n):
            async with enter(provided) as scope:
                agent = await scope.get(g.Agent)
                if await scope.get(g.Agent) is not agent:
                    raise AssertionError("wireup: second resolve built a new Agent")
        return g.now_ns() - t0

    def cached(self, n: int) -> int:
        with self.c.enter_scope({g.Ctx: self.ctx}) as scope:
            get = scope.get
            get(g.Agent)
            t0 = g.now_ns()
            for _ in range(n):
                get(g.Agent)
            return g.now_ns() - t0

    def singleton(self, n: int) -> int:
        get = self.c.get
        get(g.LLMClient)
        t0 = g.now_ns()
        for _ in range(n):
            get(g.LLMClient)
        return g.now_ns() - t0

    def close(self) -> None:
        self.c.close()


# ------------------------------------------------------------------------ userscope


def build_userscope(bridge: Callable[..., Any]) -> Any:
    from dependency_injector import containers, providers

    us = g.us
    assert us is not None

    class Container(containers.DeclarativeContainer):
        settings = providers.Singleton(g.Settings)
        llm = providers.Singleton(g.LLMClient, settings)
        context = us.CurrentContext()
        registry = us.UserScoped(g.AgentRegistry, context)
        bridge_ = us.ConnectionScoped(bridge, context)
        agent = us.RequestScoped(g.Agent, registry=registry, bridge=bridge_, llm=llm)

    container = Container()
    us.validate(container)
    return container


class Userscope(Library):
    name = "userscope"

    def __init__(self) -> None:
        super().__init__()
        us = g.us
        assert us is not None
        self.c = build_userscope(g.bridge_factory(self.counter))
        self.ac = build_userscope(g.abridge_factory(self.acounter))
        self.sessions = us.UserSessions()
        self.asessions = us.UserSessions()

    def sync_cycle(self, n: int) -> int:
        ctx, request, agent_p = self.ctx, self.sessions.request, self.c.agent
        t0 = g.now_ns()
        for _ in range(n):
            with request(ctx):
                agent = agent_p()
                if agent_p() is not agent:
                    raise AssertionError("userscope: second resolve built a new Agent")
        return g.now_ns() - t0

    async def async_cycle(self, n: int) -> int:
        ctx, request, agent_p = self.ctx, self.asessions.request, self.ac.agent
        t0 = g.now_ns()
        for _ in range(n):
            async with request(ctx):
                agent = await agent_p.async_()
                if await agent_p.async_() is not agent:
                    raise AssertionError("userscope: second resolve built a new Agent")
        return g.now_ns() - t0

    def cached(self, n: int) -> int:
        with self.sessions.request(self.ctx):
            agent_p = self.c.agent
            agent_p()
            t0 = g.now_ns()
            for _ in range(n):
                agent_p()
            return g.now_ns() - t0

    def singleton(self, n: int) -> int:
        llm = self.c.llm
        llm()
        t0 = g.now_ns()
        for _ in range(n):
            llm()
        return g.now_ns() - t0

    def close(self) -> None:
        self.sessions.close()


class UserscopeOtelOff(Userscope):
    """userscope with the otel extra installed and ``userscope.otel`` imported, not enabled:
    the runtime's observer is ``None``, so this must count like plain userscope."""

    name = "userscope+otel-off"

    def __init__(self) -> None:
        import userscope.otel  # noqa: F401  (imported, never called)

        super().__init__()


class UserscopeOtel(Userscope):
    """userscope instrumented with ``userscope.otel`` (metrics on, traces off), recording
    into an SDK meter provider: the price of turning the metrics on."""

    name = "userscope+otel"

    def __init__(self) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        import userscope.otel

        super().__init__()
        self.meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
        userscope.otel.instrument(self.sessions, meter_provider=self.meters)
        userscope.otel.instrument(self.asessions, meter_provider=self.meters)

    def close(self) -> None:
        super().close()
        self.meters.shutdown()


# --------------------------------------------------------------------------- driver

LIBRARY_CLASSES: dict[str, tuple[type[Library], str]] = {
    "floor": (Floor, ""),
    "di-contextlocal": (DIContextLocal, "dependency_injector"),
    "dishka": (Dishka, "dishka"),
    "wireup": (Wireup, "wireup"),
    "userscope": (Userscope, "userscope"),
    "userscope+otel-off": (UserscopeOtelOff, "opentelemetry.sdk"),
    "userscope+otel": (UserscopeOtel, "opentelemetry.sdk"),
}


def load_libraries(notes: list[str]) -> list[Library]:
    return g.load_participants(LIBRARY_CLASSES, notes)


# --------------------------------------------------------------------------- modes

MODES = ("auto", "both", "compiled", "pure")
PURE_TWIN = "userscope-pure"
PURE_ENV = "USERSCOPE_PURE"


def userscope_mode() -> str:
    """How the imported userscope runs: ``compiled``, ``pure (...)``, or ``not imported``."""
    if g.us is None:
        return "not imported"
    from userscope import _mode

    return _mode.describe()


def check_mode(mode: str, notes: list[str]) -> tuple[bool, str]:
    """Whether ``mode`` can run here and adds the pure twin; else the reason it cannot."""
    running = userscope_mode()
    if mode in ("compiled", "both") and running != "compiled":
        return False, f"--mode {mode} needs the compiled core, but userscope runs {running}"
    if mode == "pure" and running == "compiled":
        return False, f"--mode pure needs {PURE_ENV}=1 in the environment"
    twin = mode == "both" or (mode == "auto" and running == "compiled")
    if twin:
        notes.append(f"{PURE_TWIN}: the same userscope on its pure-Python modules ({PURE_ENV}=1)")
    return twin, ""


class PureTwin(Library):
    """userscope on its pure-Python modules, measured in the same run as the compiled one.

    One process cannot hold both, so this drives a child process (``USERSCOPE_PURE=1``)
    in lockstep: each measurement is a request the child answers by running the same
    :func:`measure` (collect, timed loop, cleanup check) while this process waits on the
    pipe. It takes its turn in the rotation like every other library.
    """

    name = PURE_TWIN

    def __init__(self) -> None:
        super().__init__()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-pure"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, PURE_ENV: "1"},
        )
        reply = self._read()
        if reply != "ready":
            self.close()
            raise RuntimeError(f"{PURE_TWIN} did not start: {reply}")

    def _read(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip() or f"exited with {self.proc.poll()}"

    def measure(self, row: str, n: int) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{row}\t{n}\n")
        self.proc.stdin.flush()
        reply = self._read()
        if not reply.startswith("ns "):
            raise AssertionError(f"{PURE_TWIN} / {row}: {reply}")
        return int(reply.split()[1])

    def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def serve_pure() -> int:
    """The child of :class:`PureTwin`: answer ``row<TAB>n`` lines with ``ns <elapsed>``."""
    running = userscope_mode()
    if running == "compiled" or g.us is None:
        print(f"error: expected the pure runtime, got {running}", flush=True)
        return 2
    lib = Userscope()
    loop = asyncio.new_event_loop()
    gc.collect()
    gc.freeze()
    print("ready", flush=True)
    try:
        for line in sys.stdin:
            row, n = line.rstrip("\n").split("\t")
            try:
                ns = measure(lib, row, int(n), loop)
            except Exception as exc:
                print(f"error {type(exc).__name__}: {exc}".replace("\n", " "), flush=True)
            else:
                print(f"ns {ns}", flush=True)
    finally:
        loop.close()
        lib.close()
    return 0


def run_row(lib: Library, row: str, n: int, loop: asyncio.AbstractEventLoop) -> tuple[int, int]:
    """Run one loop of ``n`` ops of ``row``; return (elapsed ns, bridges it should open)."""
    if row == "sync cycle":
        return lib.sync_cycle(n), n
    if row == "async cycle":
        return loop.run_until_complete(lib.async_cycle(n)), n
    if row == "cached scoped resolve":
        return lib.cached(n), 1
    return lib.singleton(n), 0


def counter_for(lib: Library, row: str) -> g.Counter:
    """The bridge counter ``row`` runs against (the async rows have their own)."""
    return lib.acounter if row == "async cycle" else lib.counter


def measure(lib: Library, row: str, n: int, loop: asyncio.AbstractEventLoop) -> int:
    """Run one timed loop of ``n`` ops of ``row`` and check the cleanups; return ns."""
    if isinstance(lib, PureTwin):
        return lib.measure(row, n)
    counter = counter_for(lib, row)
    counter.reset()
    gc.collect()
    elapsed, expected = run_row(lib, row, n, loop)
    counter.check(lib.name, row, expected)
    return elapsed


def run(n: int, reps: int, libs: list[Library]) -> dict[str, dict[str, list[float]]]:
    """Return ``{row: {library: [ns per op, one per repetition]}}``."""
    loop = asyncio.new_event_loop()
    try:
        results: dict[str, dict[str, list[float]]] = {row: {} for row in ROWS}
        for row in ROWS:
            ops = n * ROW_SCALE[row]
            for lib in libs:  # warm-up: caches, code paths, the allocator
                measure(lib, row, max(ops // 5, 10), loop)
            for rep in range(reps):
                shift = rep % len(libs)
                for lib in libs[shift:] + libs[:shift]:
                    ns = measure(lib, row, ops, loop)
                    results[row].setdefault(lib.name, []).append(ns / ops)
        return results
    finally:
        loop.close()


def format_table(results: dict[str, dict[str, list[float]]]) -> str:
    lines = [
        "| row | library | median ns/op | min ns/op | median / floor | min / floor |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in ROWS:
        per_lib = results.get(row, {})
        floor = per_lib.get("floor")
        for name, samples in per_lib.items():
            med, low = g.median(samples), min(samples)
            if floor:
                ratio_med = f"{med / g.median(floor):.2f}x"
                ratio_min = f"{low / min(floor):.2f}x"
            else:
                ratio_med = ratio_min = "n/a"
            lines.append(
                f"| {row} | {name} | {med:,.0f} | {low:,.0f} | {ratio_med} | {ratio_min} |"
            )
    return "\n".join(lines)


def profile(lib: Library, n: int, row: str) -> None:
    """cProfile ``n`` sync or async cycles of one library; print the top functions twice,
    by own time and by cumulative time (time spent inside dependency-injector's compiled
    providers shows up as own time of the Python function that called them)."""
    loop = asyncio.new_event_loop()
    try:
        if row == "async":
            loop.run_until_complete(lib.async_cycle(min(n, 1000)))
        else:
            lib.sync_cycle(min(n, 1000))
        prof = cProfile.Profile()
        prof.enable()
        if row == "async":
            loop.run_until_complete(lib.async_cycle(n))
        else:
            lib.sync_cycle(n)
        prof.disable()
    finally:
        loop.close()
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(25)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="cycles per repetition")
    parser.add_argument("--reps", type=int, default=9, help="repetitions (>= 7 for a real run)")
    parser.add_argument("--smoke", action="store_true", help="tiny N, for CI")
    parser.add_argument("--profile", metavar="LIB", help="cProfile LIB's cycle instead")
    parser.add_argument(
        "--profile-row", choices=("sync", "async"), default="sync", help="cycle to profile"
    )
    parser.add_argument("--mode", choices=MODES, default="auto", help="how userscope runs")
    parser.add_argument("--serve-pure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_pure:
        return serve_pure()
    if args.mode == "pure" and os.environ.get(PURE_ENV) != "1":
        rerun = [sys.executable, __file__, *(sys.argv[1:] if argv is None else argv)]
        return subprocess.call(rerun, env={**os.environ, PURE_ENV: "1"})
    n, reps = (10, 3) if args.smoke else (args.n, args.reps)

    notes: list[str] = []
    twin, refusal = check_mode(args.mode, notes)
    if refusal:
        print(refusal)
        return 2
    libs = load_libraries(notes)
    if twin:
        libs.append(PureTwin())
    # Everything imported and built so far is long-lived: move it out of the collector's
    # reach so the per-measurement gc.collect() is cheap and equal for every library.
    gc.collect()
    gc.freeze()
    try:
        if args.profile:
            chosen = [lib for lib in libs if lib.name == args.profile]
            if not chosen:
                print(f"no such library loaded: {args.profile}; notes: {notes}")
                return 2
            profile(chosen[0], n, args.profile_row)
            return 0
        results = run(n, reps, libs)
    finally:
        for lib in libs:
            lib.close()

    print("# bench_resolve")
    print()
    facts = g.versions()
    facts["nproc"] = str(os.cpu_count())
    facts["userscope runs"] = userscope_mode()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in facts.items()))
    print(
        f"n={n} cycles per repetition (x10 for the resolve rows), reps={reps}, "
        "gc enabled, collected before every timed loop"
    )
    for note in notes:
        print(f"note: {note}")
    print()
    print(format_table(results))
    return 0


AsyncTimer = Callable[[int], Awaitable[int]]

if __name__ == "__main__":
    raise SystemExit(main())
