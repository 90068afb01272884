"""An async provider's creation that cannot suspend is done in the call.

`_creation.begin_acreate` builds a provider that is async only through its dependencies
(a plain factory over an async resource) right where it is resolved when every scoped
dependency is already cached: the typical request or message scope over its
connection's async bridge. The awaitable it returns is ready (still a coroutine as far
as asyncio is concerned). Everything else keeps going through `acreate`'s coroutine.
These tests pin the outcomes of both ways, in whichever mode the suite runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import faulthandler
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from dependency_injector import containers

import userscope as us
from support import Bridge


class Made:
    def __init__(self, bridge: Bridge, label: str = "") -> None:
        self.bridge = bridge
        self.label = label


def _container(built: list[Made]) -> Any:
    async def open_bridge(ctx: us.UserExecutionContext) -> AsyncIterator[Bridge]:
        yield Bridge(ctx.user_id)

    def make(bridge: Bridge, label: str) -> Made:
        made = Made(bridge, label)
        built.append(made)
        return made

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        bridge = us.ConnectionScoped(open_bridge, context)
        made = us.RequestScoped(make, bridge, label="x")

    return C


async def test_a_creation_over_cached_async_dependencies_is_done_in_the_call(
    sessions: Any, alice: Any
) -> None:
    built: list[Made] = []
    C = _container(built)
    async with sessions.connection(alice):
        async with sessions.request(alice.for_request()):
            first = await C.made.async_()  # the bridge is created: this one suspends
        for resolve in (C.made.async_, C.made):  # then `async_()` and the DI-style call
            async with sessions.request(alice.for_request()):
                before = len(built)
                awaitable = resolve()
                assert len(built) == before + 1  # built before anything awaited it
                assert asyncio.iscoroutine(awaitable)  # what asyncio.create_task() wants
                made = await asyncio.create_task(awaitable)
                assert made is built[-1]
                assert made is not first
                assert made.bridge is first.bridge
                assert made.label == "x"
                assert await C.made.async_() is made
                assert len(built) == before + 1
    assert sessions.stats().instances == 0
    assert not C.made._core.suspends  # the factory itself never suspended


async def test_a_factory_found_to_return_an_awaitable_hands_its_creation_over(
    sessions: Any, alice: Any
) -> None:
    async def open_bridge(ctx: us.UserExecutionContext) -> AsyncIterator[Bridge]:
        yield Bridge(ctx.user_id)

    async def finish(bridge: Bridge) -> tuple[str, Bridge]:
        await asyncio.sleep(0)
        return ("made", bridge)

    def make(bridge: Bridge) -> Any:
        return finish(bridge)  # a plain function returning a coroutine: async by its result

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        bridge = us.ConnectionScoped(open_bridge, context)
        made = us.RequestScoped(make, bridge)

    async with sessions.connection(alice):
        for _ in range(3):  # discovered async through the bridge, then by its own result
            async with sessions.request(alice.for_request()):
                made = await C.made.async_()
                assert made[0] == "made"
                assert made[1].user_id == "alice"
                assert await C.made.async_() is made
    assert C.made._core.suspends  # learned: from now on its creation is a coroutine
    assert sessions.stats().instances == 0


async def test_a_failure_in_the_call_is_raised_on_await_and_gives_the_budget_back(
    sessions: Any, alice: Any
) -> None:
    fail = [False]

    async def open_bridge(ctx: us.UserExecutionContext) -> AsyncIterator[Bridge]:
        yield Bridge(ctx.user_id)

    def make(bridge: Bridge) -> Made:
        if fail[0]:
            raise ValueError("no model today")
        return Made(bridge)

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        bridge = us.ConnectionScoped(open_bridge, context)
        made = us.RequestScoped(make, bridge)

    async with sessions.connection(alice):
        async with sessions.request(alice.for_request()):
            await C.made.async_()
        async with sessions.request(alice.for_request()):
            fail[0] = True
            awaitable = C.made.async_()  # failed already, but raises only when awaited
            assert sessions.stats().instances == 1  # the bridge; the budget came back
            with pytest.raises(ValueError, match="no model today"):
                await awaitable
            fail[0] = False
            made = await C.made.async_()  # nothing half-made stays: it is built again
            assert made.bridge.user_id == "alice"
            assert sessions.stats().instances == 2
    assert sessions.stats().instances == 0


async def test_an_instance_built_in_the_call_after_its_scope_closed_is_cleaned_up(
    sessions: Any, alice: Any
) -> None:
    # The request is resolved from a worker thread running in a copy of its context;
    # the factory runs there in the call while the request exits here: the instance is
    # cleaned up at once and the awaitable raises ScopeClosedError.
    events: list[str] = []
    building, exited = threading.Event(), threading.Event()

    async def fetch_token(ctx: us.UserExecutionContext) -> str:
        return f"token of {ctx.user_id}"

    def open_client(token: str) -> Iterator[str]:
        building.set()
        assert exited.wait(10)
        events.append("open")
        yield f"client with {token}"
        events.append("close")

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        token = us.UserScoped(fetch_token, context)
        client = us.RequestScoped(open_client, token)

    async with sessions.request(alice):
        exited.set()
        await C.client.async_()  # discovered async through the token, which is cached now
    building.clear()
    exited.clear()
    outcome: list[Any] = []
    scope = sessions.request(alice.for_request())
    await scope.__aenter__()
    captured = contextvars.copy_context()

    def worker() -> None:
        try:
            outcome.append(captured.run(C.client.async_))
        except BaseException as exc:  # the assertion below says which
            outcome.append(exc)

    faulthandler.dump_traceback_later(60, exit=True)
    try:
        thread = threading.Thread(target=worker)
        thread.start()
        assert await asyncio.to_thread(building.wait, 10)
        await scope.__aexit__(None, None, None)  # no lock is held by the factory
        exited.set()
        thread.join(10)
    finally:
        faulthandler.cancel_dump_traceback_later()
    [awaitable] = outcome
    # the late one was cleaned up in the call, before anything awaited the result: a
    # caller that drops it leaks nothing
    assert events == ["open", "close", "open", "close"]
    with pytest.raises(us.ScopeClosedError) as info:
        await awaitable
    assert info.value.provider == "C.client"
    assert events == ["open", "close", "open", "close"]  # and only once
    assert sessions.stats().instances == 1  # the token, in alice's USER scope


def test_threads_on_their_own_loops_share_one_instance_per_user_session() -> None:
    # Each round, four threads (each with its own event loop) open a request for alice at
    # once and resolve the same USER instance: exactly one is built, in the call of the
    # thread that reserved it first; the others wait for it (across loops) or find it
    # cached. Then alice's session is ended, so the next round races on a fresh one.
    # Bounded: barriers time out, a hang dumps the stacks and fails.
    sessions = us.UserSessions()
    ctx = us.UserExecutionContext(user_id="alice", thread_id="t")
    rounds, threads = 150, 4
    seen: list[tuple[str, Any]] = []
    errors: list[BaseException] = []
    inside = threading.Barrier(threads, timeout=30)
    outside = threading.Barrier(threads, action=lambda: sessions.close_user("alice"), timeout=30)

    async def fetch_token(ctx: us.UserExecutionContext) -> str:
        return f"token of {ctx.user_id}"

    class Client:
        def __init__(self, token: str) -> None:
            self.token = token

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        token = us.UserScoped(fetch_token, context)
        client = us.UserScoped(Client, token)

    async def resolve_rounds() -> None:
        for _ in range(rounds):
            async with sessions.request(ctx.for_request()):
                token = await C.token.async_()
                inside.wait()  # all four hold alice's session, the token cached
                client = await C.client.async_()
                assert client.token is token
                assert await C.client.async_() is client
                seen.append((token, client))
            outside.wait()  # all out: the barrier's action ends alice's session

    def worker() -> None:
        try:
            asyncio.run(resolve_rounds())
        except BaseException as exc:  # reported below
            errors.append(exc)
            inside.abort()
            outside.abort()

    async def discover() -> None:
        async with sessions.request(ctx):
            await C.client.async_()  # the token not cached yet: the client turns async

    asyncio.run(discover())
    sessions.close_user("alice")
    faulthandler.dump_traceback_later(120, exit=True)
    try:
        workers = [threading.Thread(target=worker) for _ in range(threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(90)
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert not errors, errors
    assert not any(thread.is_alive() for thread in workers)
    assert len(seen) == rounds * threads
    clients_per_token: dict[int, set[int]] = {}
    for token, client in seen:  # objects kept alive in `seen`: their ids are unique
        clients_per_token.setdefault(id(token), set()).add(id(client))
    assert len(clients_per_token) == rounds  # one session (one token) per round
    assert all(len(clients) == 1 for clients in clients_per_token.values())
    assert C.client._core.is_async
    assert not C.client._core.suspends
    sessions.close()
    assert sessions.stats().instances == 0
