"""Typing tests for scoped providers and `userscope.testing.override`, checked by mypy.

CI runs mypy in strict mode on this file (``files = ["src", "tests/typing"]``).
``assert_type`` pins inferred types. Expected errors are pinned with
``# type: ignore[<code>]``: mypy must report exactly that error on that line, because
``warn_unused_ignores`` turns an ignore that is no longer needed into an error.

The file is only type-checked, never run (pytest does not collect ``check_*.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Generator, Iterator
from typing import assert_type

from dependency_injector import containers, providers

import userscope as us
from userscope.testing import Override, override


class Registry:
    def __init__(self, ctx: us.UserExecutionContext) -> None:
        self.user_id = ctx.user_id


class Bridge:
    def __init__(self, user_id: str) -> None:
        self.user_id = user_id


class Agent:
    def __init__(self, registry: Registry, bridge: Bridge) -> None:
        self.registry = registry
        self.bridge = bridge


class FakeAgent(Agent):
    def __init__(self) -> None:
        super().__init__(
            Registry(us.UserExecutionContext(user_id="fake", thread_id="t")), Bridge("fake")
        )


class NotAnAgent:
    pass


def open_bridge(ctx: us.UserExecutionContext) -> Generator[Bridge, None, None]:
    # Annotated as Generator: with `-> Iterator[Bridge]` the core infers
    # ConnectionScoped[Iterator[Bridge]] (pinned as a core bug in tests/testing/test_mypy.py).
    yield Bridge(ctx.user_id)


async def open_async_bridge(ctx: us.UserExecutionContext) -> AsyncIterator[Bridge]:
    yield Bridge(ctx.user_id)


async def load_registry(ctx: us.UserExecutionContext) -> Registry:
    return Registry(ctx)


class Container(containers.DeclarativeContainer):
    context = us.CurrentContext()
    registry = us.UserScoped(Registry, context)
    bridge = us.ConnectionScoped(open_bridge, context)
    agent = us.RequestScoped(Agent, registry, bridge)
    async_registry = us.UserScoped(load_registry, context)
    async_bridge = us.ConnectionScoped(open_async_bridge, context)


def fake_agents() -> Iterator[FakeAgent]:
    yield FakeAgent()


async def async_fake_agents() -> AsyncIterator[FakeAgent]:
    yield FakeAgent()


async def build_fake_agent() -> FakeAgent:
    return FakeAgent()


def check_resolution_types(container: Container) -> None:
    # Every scoped provider kind resolves to what its factory builds.
    assert_type(Container.agent, us.RequestScoped[Agent])
    assert_type(container.agent(), Agent)
    assert_type(Container.agent(), Agent)
    assert_type(container.registry(), Registry)  # class factory
    assert_type(container.bridge(), Bridge)  # generator factory
    assert_type(container.context(), us.UserExecutionContext)
    assert_type(container.context.async_(), Awaitable[us.UserExecutionContext])


def check_async_call_types(container: Container) -> None:
    # An async factory: calling the provider the dependency-injector way gives an awaitable.
    assert_type(Container.async_registry, us.UserScoped[Registry, Awaitable[Registry]])
    assert_type(container.async_registry(), Awaitable[Registry])  # coroutine function
    assert_type(container.async_bridge(), Awaitable[Bridge])  # async generator function
    assert_type(Container.agent, us.RequestScoped[Agent, Agent])  # sync: the default
    registry: Registry = container.async_registry()  # type: ignore[assignment]
    del registry


async def check_async_resolution_types(container: Container) -> None:
    # `async_()` is a coroutine: awaiting it gives the instance, forgetting to is an error.
    assert_type(await container.async_bridge.async_(), Bridge)  # async generator
    assert_type(await container.async_registry.async_(), Registry)  # coroutine
    assert_type(await container.agent.async_(), Agent)  # sync factory, awaited anyway


def check_override_types(container: Container) -> None:
    # Accepted: a value of the provider's type (or a subclass), a provider of it, factories.
    assert_type(override(Container.agent, FakeAgent()), Override[Agent])
    assert_type(override(container.agent, providers.Factory(FakeAgent)), Override[Agent])
    assert_type(override(container.agent, FakeAgent, scoped=True), Override[Agent])
    assert_type(override(container.agent, fake_agents, scoped=True), Override[Agent])
    assert_type(override(container.agent, async_fake_agents, scoped=True), Override[Agent])
    assert_type(override(container.agent, build_fake_agent, scoped=False), Override[Agent])
    assert_type(override(container.bridge, lambda: Bridge("x"), scoped=False), Override[Bridge])
    ctx = us.UserExecutionContext(user_id="alice", thread_id="t-1")
    assert_type(override(container.context, ctx), Override[us.UserExecutionContext])

    # Plain dependency-injector accepts anything: this wrong override type-checks.
    container.agent.override(NotAnAgent())
    container.agent.override(providers.Object("not an agent"))

    # userscope.testing.override rejects each of them.
    override(container.agent, NotAnAgent())  # type: ignore[arg-type]
    override(Container.agent, providers.Object("not an agent"))  # type: ignore[arg-type]
    override(container.agent, NotAnAgent, scoped=True)  # type: ignore[arg-type]
    override(container.bridge, lambda: "not a bridge", scoped=False)  # type: ignore[arg-type, return-value]
    override(container.context, "alice")  # type: ignore[arg-type]
    # A generator factory has a cleanup: only the scoped form accepts it.
    override(container.agent, fake_agents, scoped=False)  # type: ignore[arg-type]
    # A value is not a factory: `scoped=` needs a callable.
    override(container.agent, FakeAgent(), scoped=True)  # type: ignore[call-overload]
