"""Contract 6: dependency-injector stays itself on scoped providers."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from dependency_injector import containers, providers

import userscope as us
import wired_module
from support import Agent, AgentRegistry, Bridge, ctx_for


def test_override_with_provider_and_context_manager(Container: Any, sessions: Any) -> None:
    container = Container()
    fake = Bridge("fake")
    with container.bridge.override(providers.Object(fake)):
        with sessions.request(ctx_for("alice")):
            assert container.agent().bridge is fake
        assert container.bridge() is fake  # the override decides, even outside a scope
    with pytest.raises(us.OutOfScopeError):
        container.bridge()


def test_override_is_seen_by_dependants_created_later(Container: Any, sessions: Any) -> None:
    container = Container()
    container.registry.override(providers.Factory(AgentRegistry, ctx_for("stub")))
    with sessions.request(ctx_for("alice")):
        assert container.agent().registry.user_id == "stub"
    container.registry.reset_last_overriding()
    with sessions.request(ctx_for("alice")):
        assert container.agent().registry.user_id == "alice"


def test_override_providers_and_reset(Container: Any, sessions: Any) -> None:
    container = Container()
    container.override_providers(agent=providers.Object("stub-agent"))
    assert container.agent() == "stub-agent"
    container.reset_override()
    with pytest.raises(us.OutOfScopeError):
        container.agent()


def test_class_and_instance_containers_are_independent(Container: Any, sessions: Any) -> None:
    first, second = Container(), Container()
    assert first.agent is not Container.agent
    assert first.agent is not second.agent
    assert first.agent.name == "Container.agent"
    assert first.agent.scope is us.Scope.REQUEST
    with sessions.request(ctx_for("alice")):
        a, b = first.agent(), second.agent()
        assert a is not b
        assert a is first.agent()
        assert a.registry is first.registry()
    first.agent.override(providers.Object("x"))
    with sessions.request(ctx_for("alice")):
        assert second.agent() != "x"


def test_deepcopy_keeps_dependency_graph(Container: Any, sessions: Any) -> None:
    container = Container()
    copied = copy.deepcopy(container.agent)
    assert copied is not container.agent
    assert copied.kwargs["registry"] is not container.registry
    assert copied.name == container.agent.name
    closing = us.RequestScoped(Bridge, "x").closing()
    assert copy.deepcopy(closing)._closing is True


def test_traverse_and_related(Container: Any) -> None:
    container = Container()
    related = set(container.agent.related)
    assert related == {container.registry, container.bridge, container.llm}
    found = set(container.traverse(types=[us.ScopedProvider]))
    assert found == {container.registry, container.bridge, container.agent}
    assert container.context in set(container.traverse(types=[us.CurrentContext]))


def test_check_dependencies_passes(Container: Any) -> None:
    Container().check_dependencies()


def test_wiring_inject_provide(Container: Any, sessions: Any) -> None:
    container = Container()
    container.wire(modules=[wired_module])
    try:
        with pytest.raises(us.OutOfScopeError):
            wired_module.sync_agent()
        with sessions.request(ctx_for("alice")):
            agent = wired_module.sync_agent()
            assert isinstance(agent, Agent)
            assert agent is container.agent()
    finally:
        container.unwire()


async def test_wiring_async(Container: Any, sessions: Any) -> None:
    container = Container()
    container.wire(modules=[wired_module])
    try:
        with pytest.raises(us.OutOfScopeError):
            await wired_module.async_agent()
        async with sessions.request(ctx_for("alice")):
            agent = await wired_module.async_agent()
            assert agent is container.agent()
    finally:
        container.unwire()


def test_sub_container_resolves_in_scope(sessions: Any) -> None:
    class Sub(containers.DeclarativeContainer):
        registry = providers.Dependency(instance_of=AgentRegistry)
        ids = providers.Factory(lambda registry: registry.user_id, registry)

    class Main(containers.DeclarativeContainer):
        context = us.CurrentContext()
        registry = us.UserScoped(AgentRegistry, context)
        sub = providers.Container(Sub, registry=registry)

    main = Main()
    us.validate(main)
    with sessions.request(ctx_for("alice")):
        assert main.sub.ids() == "alice"
    with pytest.raises(us.OutOfScopeError):
        main.sub.ids()


async def test_async_mode_follows_dependency_injector(sessions: Any) -> None:
    async def make_registry(ctx: us.UserExecutionContext) -> AgentRegistry:
        return AgentRegistry(ctx)

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        registry = us.UserScoped(make_registry, context)
        view = providers.Factory(lambda registry: registry.user_id, registry)
        agent = us.RequestScoped(dict, registry=registry)

    async with sessions.request(ctx_for("alice")):
        first = await C.registry()  # async providers return awaitables, like dependency-injector
        assert await C.registry() is first  # cached, still awaitable
        assert await C.view() == "alice"  # plain Factory combines the awaitable dependency
        agent = await C.agent.async_()
        assert agent["registry"] is first
        assert await C.agent.async_() is agent


async def test_async_resolution_of_sync_provider_always_awaitable(
    Container: Any, sessions: Any
) -> None:
    container = Container()
    async with sessions.request(ctx_for("alice")):
        agent = await container.agent.async_()
        assert agent is container.agent()
        assert (await container.context.async_()).user_id == "alice"


def test_scoped_provider_needs_a_callable() -> None:
    with pytest.raises(TypeError, match=r"providers\.Object"):
        us.RequestScoped(42)  # type: ignore[call-overload]


def test_repr_names_the_provider(Container: Any) -> None:
    assert repr(Container.agent) == "<RequestScoped Container.agent of Agent>"
    assert us.UserScoped(dict).name == "UserScoped(dict)"


def test_copies_of_overridden_providers_stay_overridden(Container: Any, sessions: Any) -> None:
    # the call path reads the provider's core, whose `overridden` flag must follow every
    # way dependency-injector changes overriding: here the copy a container instance makes
    fake = Bridge("fake")
    Container.bridge.override(providers.Object(fake))
    Container.context.override(providers.Object(ctx_for("stub")))
    try:
        container = Container()
        assert container.bridge.last_overriding is not None
        with sessions.request(ctx_for("alice")):
            assert container.agent().bridge is fake
            assert container.context().user_id == "stub"
            assert container.registry().user_id == "stub"  # its plan reads the context
        copied = copy.deepcopy(container.bridge)
        assert copied() is fake
    finally:
        Container.bridge.reset_override()
        Container.context.reset_override()
    container = Container()
    with sessions.request(ctx_for("alice")):
        assert container.agent().bridge is not fake
        assert container.context().user_id == "alice"


def test_every_override_path_is_seen_by_calls_and_plans(Container: Any, sessions: Any) -> None:
    container = Container()
    fake, other = Bridge("fake"), Bridge("other")
    ctx = ctx_for("alice")
    with sessions.request(ctx):
        real = container.bridge()
    container.bridge.override(providers.Object(fake))
    container.bridge.override(providers.Object(other))
    with sessions.request(ctx.for_request()):
        assert container.bridge() is other
        assert container.agent().bridge is other
    container.bridge.reset_last_overriding()
    with sessions.request(ctx.for_request()):
        assert container.agent().bridge is fake
    container.bridge.reset_override()
    with container.bridge.override(providers.Object(other)), sessions.request(ctx.for_request()):
        assert container.agent().bridge is other
    with sessions.request(ctx.for_request()):
        assert container.agent().bridge not in (fake, other, real)
    container.override_providers(bridge=providers.Object(fake))
    with sessions.request(ctx.for_request()):
        assert container.agent().bridge is fake
    container.reset_override()
    with pytest.raises(us.OutOfScopeError):
        container.bridge()


async def test_async_resolve_gives_a_coroutine_on_every_path(sessions: Any) -> None:
    async def open_client(ctx: us.UserExecutionContext) -> str:
        return f"client of {ctx.user_id}"

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        client = us.RequestScoped(open_client, context)
        plain = us.RequestScoped(dict, who=context)

    async with sessions.request(ctx_for("alice")):
        # an async provider's creation, a sync provider's creation, then both cached:
        # each can become a task like any coroutine
        created = await asyncio.create_task(C.client.async_())
        assert created == "client of alice"
        built = await asyncio.create_task(C.plain.async_())
        assert built["who"].user_id == "alice"
        assert await asyncio.create_task(C.client.async_()) == created
        assert await asyncio.create_task(C.plain.async_()) is built
    pending = C.client.async_()  # out of scope: the error comes with the await
    with pytest.raises(us.OutOfScopeError):
        await pending


def test_subclasses_with_slots_of_their_own_resolve_and_override(sessions: Any) -> None:
    """The compiled call reads a provider's core from its slot's place in the instance
    (ScopedProvider's `_core`); subclasses that add slots of their own, before or after
    it in their own layout, still resolve, cache and override like the base."""

    class Tagged(us.RequestScoped[Any]):
        __slots__ = ("first", "second")

    class Tagged2(Tagged):
        __slots__ = ("third",)

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        one = Tagged(dict, who=context)
        two = Tagged2(list)

    C.one.first = C.two.third = "set"
    with sessions.request(ctx_for("alice")):
        built = C.one()
        assert built["who"].user_id == "alice"
        assert C.one() is built
        assert C.two() == []
        assert C.two() is C.two()
    with C.one.override(providers.Object("overridden")):
        assert C.one() == "overridden"
    with sessions.request(ctx_for("bob")):
        assert C.one()["who"].user_id == "bob"
    assert C.one.first == "set"
    assert C.two.third == "set"
