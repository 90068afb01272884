"""Both ways of running an injection plan resolve the same values in the same order.

The pure runtime runs the function ``_plan.compile_builder`` generates; the compiled
runtime runs ``_creation.run_plan``/``arun_plan`` (``_creation.INTERPRET_PLANS``). Each
test runs with both, in whichever mode the suite runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from dependency_injector import containers, providers

import userscope as us
from userscope.providers import _creation

CTX = us.UserExecutionContext(user_id="alice", thread_id="t")


@pytest.fixture(params=[False, True], ids=["generated", "interpreted"])
def interpret(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setattr(_creation, "INTERPRET_PLANS", request.param)
    return bool(request.param)


class Pair:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs


def test_every_injection_kind_sync(interpret: bool) -> None:
    order: list[str] = []

    def user_thing(ctx: us.UserExecutionContext) -> str:
        order.append("user")
        return f"user of {ctx.user_id}"

    def bridge(ctx: us.UserExecutionContext) -> Iterator[str]:
        order.append("bridge")
        yield "bridge"
        order.append("bridge closed")

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        settings = providers.Singleton(dict, model="m")
        user = us.UserScoped(user_thing, context)
        link = us.ConnectionScoped(bridge, context)
        pair = us.RequestScoped(Pair, user, 7, link=link, settings=settings, **{"class": 1})

    sessions = us.UserSessions()
    with sessions.request(CTX):
        pair = C.pair()
        assert C.pair() is pair
    assert pair.args == ("user of alice", 7)
    assert pair.kwargs == {"link": "bridge", "settings": {"model": "m"}, "class": 1}
    assert order == ["user", "bridge", "bridge closed"]
    sessions.close()


def test_overridden_dependencies_are_called(interpret: bool) -> None:
    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        user = us.UserScoped(lambda ctx: ctx.user_id, context)
        pair = us.RequestScoped(Pair, user, context)

    sessions = us.UserSessions()
    C.user.override(providers.Object("overridden user"))
    C.context.override(providers.Object("overridden context"))
    try:
        with sessions.request(CTX):
            assert C.pair().args == ("overridden user", "overridden context")
    finally:
        C.user.reset_override()
        C.context.reset_override()
    sessions.close()


def test_async_injections_are_awaited_in_place_in_plan_order(interpret: bool) -> None:
    order: list[str] = []

    async def first(ctx: us.UserExecutionContext) -> AsyncIterator[str]:
        order.append("first")
        yield "first"
        order.append("first closed")

    def second(ctx: us.UserExecutionContext) -> Iterator[str]:
        order.append("second")
        yield "second"
        order.append("second closed")

    async def build(a: str, b: str) -> tuple[str, str]:
        order.append("built")
        return (a, b)

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        a = us.ConnectionScoped(first, context)
        b = us.ConnectionScoped(second, context)
        both = us.RequestScoped(build, a, b)

    async def main() -> tuple[str, str]:
        sessions = us.UserSessions()
        async with sessions.request(CTX):
            value = await C.both.async_()
            assert await C.both.async_() is value
        await sessions.aclose()
        return value

    assert asyncio.run(main()) == ("first", "second")
    assert order == ["first", "second", "built", "second closed", "first closed"]


def test_a_sync_provider_over_an_async_dependency_turns_async(interpret: bool) -> None:
    async def open_client(ctx: us.UserExecutionContext) -> str:
        return f"client of {ctx.user_id}"

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        client = us.RequestScoped(open_client, context)
        wrapper = us.RequestScoped(Pair, client)

    async def main() -> Pair:
        sessions = us.UserSessions()
        async with sessions.request(CTX):
            first = await C.wrapper.async_()
        async with sessions.request(CTX):
            second = await C.wrapper.async_()  # now known to be async
        await sessions.aclose()
        assert first is not second
        return second

    assert asyncio.run(main()).args == ("client of alice",)


def test_compiled_runtime_interprets_plans_and_pure_generates_them() -> None:
    assert _creation.INTERPRET_PLANS is us.COMPILED
