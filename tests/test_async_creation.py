"""Asynchronous creation of scoped instances: one coroutine per instance, every outcome.

A provider whose factory (or one of whose dependencies) is asynchronous is created by
`_creation.acreate`: concurrent resolvers in other tasks wait for the one
creation, a failure reaches all of them, and an instance that cannot be handed out is
cleaned up at once. These tests pin each of those paths.
"""

from __future__ import annotations

import asyncio
import faulthandler
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from dependency_injector import containers, providers

import userscope as us
from support import Bridge


async def test_a_failed_creation_reaches_every_waiter_and_caches_nothing(
    sessions: Any, alice: Any
) -> None:
    attempts: list[int] = []

    async def flaky(ctx: us.UserExecutionContext) -> Bridge:
        attempts.append(1)
        await asyncio.sleep(0.01)
        if len(attempts) == 1:
            raise ConnectionError("bridge down")
        return Bridge(ctx.user_id)

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        bridge = us.ConnectionScoped(flaky, context)

    async with sessions.connection(alice):
        outcomes = await asyncio.gather(
            *(C.bridge.async_() for _ in range(5)), return_exceptions=True
        )
        assert len(attempts) == 1
        assert all(isinstance(o, ConnectionError) for o in outcomes), outcomes
        assert len({id(o) for o in outcomes}) == 1  # the one failure, handed to each
        bridge = await C.bridge.async_()  # nothing was cached: the next resolve retries
        assert bridge.user_id == "alice"
        assert len(attempts) == 2
        assert await C.bridge.async_() is bridge
    assert sessions.stats().instances == 0


async def test_cancelling_the_creator_hands_the_creation_to_a_waiter(
    sessions: Any, alice: Any
) -> None:
    started = asyncio.Event()
    attempts: list[int] = []

    async def slow(ctx: us.UserExecutionContext) -> Bridge:
        attempts.append(1)
        started.set()
        if len(attempts) == 1:
            await asyncio.sleep(10)  # cancelled below
        return Bridge(ctx.user_id)

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        bridge = us.ConnectionScoped(slow, context)

    async with sessions.connection(alice):
        creator = asyncio.create_task(C.bridge.async_())
        await started.wait()
        waiter = asyncio.create_task(C.bridge.async_())
        await asyncio.sleep(0)  # the waiter parks on the creator's pending entry
        creator.cancel()
        with pytest.raises(asyncio.CancelledError):
            await creator
        # a cancellation is the creator's, not an outcome: the waiter builds it itself
        bridge = await asyncio.wait_for(waiter, 10)
        assert bridge.user_id == "alice"
        assert len(attempts) == 2
        assert await C.bridge.async_() is bridge


async def test_an_async_generator_that_never_yields_is_refused(sessions: Any, alice: Any) -> None:
    async def empty(ctx: us.UserExecutionContext) -> AsyncIterator[Bridge]:
        if ctx.user_id:
            return
        yield Bridge(ctx.user_id)  # pragma: no cover - the point is that it never yields

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        bridge = us.ConnectionScoped(empty, context)

    async with sessions.connection(alice):
        with pytest.raises(us.UserscopeError, match="returned without yielding"):
            await C.bridge.async_()


async def test_a_coroutine_returning_a_generator_is_started_and_finished(
    sessions: Any, alice: Any
) -> None:
    events: list[str] = []

    def opened(user_id: str) -> Iterator[Bridge]:
        events.append("open")
        yield Bridge(user_id)
        events.append("close")

    async def make(ctx: us.UserExecutionContext) -> Iterator[Bridge]:
        return opened(ctx.user_id)

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        bridge = us.RequestScoped(make, context)

    async with sessions.request(alice):
        bridge = await C.bridge.async_()
        assert isinstance(bridge, Bridge)
        assert events == ["open"]
    assert events == ["open", "close"]


async def test_closing_applies_to_async_factories(sessions: Any, alice: Any) -> None:
    closed: list[str] = []

    class Resource:
        async def aclose(self) -> None:
            closed.append("aclose")

    async def make() -> Resource:
        return Resource()

    class C(containers.DeclarativeContainer):
        resource = us.RequestScoped(make).closing()

    async with sessions.request(alice):
        await C.resource.async_()
    assert closed == ["aclose"]


async def test_a_scope_closing_during_creation_cleans_the_instance_up(
    sessions: Any, alice: Any
) -> None:
    gate = asyncio.Event()
    events: list[str] = []

    async def open_bridge(ctx: us.UserExecutionContext) -> AsyncIterator[Bridge]:
        await gate.wait()
        events.append("open")
        yield Bridge(ctx.user_id)
        events.append("close")

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        bridge = us.ConnectionScoped(open_bridge, context)

    async with sessions.connection(alice):
        task = asyncio.create_task(C.bridge.async_())
        await asyncio.sleep(0)  # the creation is under way, parked on the gate
    gate.set()
    with pytest.raises(us.ScopeClosedError) as info:
        await task
    assert info.value.provider == "C.bridge"
    assert events == ["open", "close"]  # built after the exit, so cleaned up at once
    assert sessions.stats().instances == 0


async def test_two_unstarted_creations_build_one_instance(sessions: Any, alice: Any) -> None:
    built: list[int] = []

    async def make(ctx: us.UserExecutionContext) -> Bridge:
        built.append(1)
        return Bridge(ctx.user_id)

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        bridge = us.ConnectionScoped(make, context)

    async with sessions.connection(alice):
        first, second = C.bridge(), C.bridge()  # DI style: two awaitables, neither started
        one = await first
        assert await second is one  # the second finds the instance the first cached
    assert built == [1]


async def test_the_instance_budget_holds_for_async_creation(alice: Any) -> None:
    async def make() -> object:
        return object()

    class C(containers.DeclarativeContainer):
        first = us.RequestScoped(make)
        second = us.RequestScoped(make)

    sessions = us.UserSessions(max_instances_per_user=1)
    async with sessions.request(alice):
        await C.first.async_()
        with pytest.raises(us.ScopeLimitError) as info:
            await C.second.async_()
    assert (info.value.limit, info.value.current, info.value.maximum) == (
        "max_instances_per_user",
        1,
        1,
    )
    await sessions.aclose()


async def test_async_dependencies_are_awaited_in_place(sessions: Any, alice: Any) -> None:
    async def fetch_model() -> str:
        return "model-x"

    async def open_bridge(ctx: us.UserExecutionContext) -> AsyncIterator[Bridge]:
        yield Bridge(ctx.user_id)

    def make_agent(bridge: Bridge, model: str, settings: str, label: str) -> tuple[Any, ...]:
        return (bridge, model, settings, label)

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        model = providers.Coroutine(fetch_model)
        bridge = us.ConnectionScoped(open_bridge, context)
        agent = us.RequestScoped(
            make_agent, bridge, model, settings="plain", label=providers.Object("o")
        )

    for _ in range(2):  # the first request discovers it is async, the second knows
        async with sessions.request(alice.for_request()):
            made = await C.agent.async_()
            assert made[0].user_id == "alice"
            assert made[1:] == ("model-x", "plain", "o")
            assert await C.agent() is made  # DI style resolves the same instance


async def test_an_overridden_dependency_wins_in_the_async_builder(
    sessions: Any, alice: Any
) -> None:
    async def open_bridge(ctx: us.UserExecutionContext) -> AsyncIterator[Bridge]:
        yield Bridge(ctx.user_id)

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        bridge = us.ConnectionScoped(open_bridge, context)
        holder = us.RequestScoped(lambda bridge: [bridge], bridge)

    async with sessions.request(alice):
        assert (await C.holder.async_())[0].user_id == "alice"
    with C.bridge.override(providers.Object(Bridge("fake"))):
        async with sessions.request(alice.for_request()):
            assert (await C.holder.async_())[0].user_id == "fake"


def test_an_async_provider_in_a_plain_with_scope_is_refused(sessions: Any, alice: Any) -> None:
    async def make() -> str:
        return "value"

    class C(containers.DeclarativeContainer):
        value = us.RequestScoped(make)
        holder = us.RequestScoped(list, value)

    with sessions.request(alice):
        with pytest.raises(us.UserscopeError, match="async with") as direct:
            C.value()
        with pytest.raises(us.UserscopeError, match="async with") as nested:
            C.holder()
    assert "C.value" in str(direct.value)
    assert "C.value" in str(nested.value)
    assert sessions.stats().instances == 0


async def test_a_sync_resolve_that_would_block_the_loop_on_its_own_creation_is_refused(
    sessions: Any, alice: Any
) -> None:
    # Task A creates an async instance; this task, on the same loop, resolves it with an
    # extra argument, which takes the synchronous path: waiting there would block the
    # loop task A needs to finish, so it is refused with BlockingWaitError.
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(ctx: us.UserExecutionContext, label: str = "") -> Bridge:
        started.set()
        await release.wait()
        return Bridge(ctx.user_id)

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        bridge = us.RequestScoped(slow, context)

    async with asyncio.timeout(10), sessions.request(alice):
        creator = asyncio.create_task(C.bridge.async_())
        await started.wait()
        # a regression would block this loop for good (asyncio.timeout could not fire)
        faulthandler.dump_traceback_later(30, exit=True)
        try:
            with pytest.raises(us.BlockingWaitError) as info:
                C.bridge("extra")
        finally:
            faulthandler.cancel_dump_traceback_later()
        assert info.value.provider == "C.bridge"
        assert info.value.scope is us.Scope.REQUEST
        assert isinstance(info.value, RuntimeError)
        assert "await C.bridge.async_()" in str(info.value)  # says what to do instead
        release.set()
        bridge = await creator  # the refusal left the creation alone
        assert bridge.user_id == "alice"
        assert await C.bridge.async_() is bridge
        assert sessions.stats().instances == 1
    assert sessions.stats().instances == 0
