"""`userscope.testing.override`: three forms, restored on exit, scoping kept on request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from dependency_injector import containers, providers

import userscope as us
from support import Agent, Bridge, Log, ctx_for, make_container
from userscope.testing import override


@pytest.fixture
def Container() -> Any:
    return make_container(Log())


def test_value_is_shared_and_restored(Container: Any, userscope_sessions: us.UserSessions) -> None:
    container = Container()
    fake = Bridge("fake")
    with override(container.bridge, fake) as active:
        assert active.provider is container.bridge
        with userscope_sessions.request(ctx_for("alice")):
            assert container.agent().bridge is fake
        with userscope_sessions.request(ctx_for("bob")):
            assert container.agent().bridge is fake
    assert container.bridge.last_overriding is None
    with pytest.raises(us.OutOfScopeError):
        container.bridge()


def test_restored_when_the_body_raises(Container: Any) -> None:
    container = Container()
    with pytest.raises(KeyError), override(container.agent, "stub"):
        assert container.agent() == "stub"
        raise KeyError("boom")
    assert container.agent.overridden == ()


def test_class_level_reaches_containers_created_later(Container: Any) -> None:
    before = Container()
    with override(Container.agent, "class-stub"):
        assert Container.agent() == "class-stub"
        assert Container().agent() == "class-stub"
        assert before.agent.last_overriding is None  # dependency-injector semantics
    assert Container.agent.overridden == ()


def test_instance_level_leaves_other_containers_alone(Container: Any) -> None:
    first, second = Container(), Container()
    with override(first.agent, "stub"):
        assert first.agent() == "stub"
        assert second.agent.last_overriding is None


def test_nested_overrides_may_exit_out_of_order(Container: Any) -> None:
    container = Container()
    outer = override(container.agent, "outer")
    inner = override(container.agent, "inner")
    outer.__enter__()
    inner.__enter__()
    assert container.agent() == "inner"
    outer.__exit__(None, None, None)
    assert container.agent() == "inner"
    inner.__exit__(None, None, None)
    assert container.agent.overridden == ()


def test_same_override_object_can_be_reentered(Container: Any) -> None:
    container = Container()
    stub = override(container.agent, "stub")
    with stub, stub:
        assert len(container.agent.overridden) == 2
    assert container.agent.overridden == ()


def test_replacement_provider_is_used(Container: Any) -> None:
    container = Container()
    with override(container.agent, providers.Factory(list)):
        first, second = container.agent(), container.agent()
    assert first == []
    assert first is not second


def test_factory_without_scope_builds_on_every_resolve(
    Container: Any, userscope_sessions: us.UserSessions
) -> None:
    container = Container()
    with override(container.bridge, lambda: Bridge("fake"), scoped=False):
        with userscope_sessions.request(ctx_for("alice")):
            assert container.bridge() is not container.bridge()


def test_scoped_factory_keeps_one_instance_per_scope_and_cleans_up(
    Container: Any, userscope_sessions: us.UserSessions
) -> None:
    container = Container()
    events: list[str] = []

    def fake_bridge() -> Iterator[Bridge]:
        bridge = Bridge(us.current_context().user_id)  # type: ignore[union-attr]
        events.append(f"open {bridge.user_id}")
        yield bridge
        events.append(f"close {bridge.user_id}")

    with override(container.bridge, fake_bridge, scoped=True) as active:
        assert active.scoped
        with userscope_sessions.connection(ctx_for("alice")):
            first = container.bridge()
            assert first is container.bridge()
            with userscope_sessions.request(ctx_for("alice", "r-2")):
                assert container.agent().bridge is first  # same CONNECTION scope
            assert events == ["open alice"]
        assert events == ["open alice", "close alice"]
        with userscope_sessions.request(ctx_for("bob")):
            assert container.bridge() is not first
            assert container.bridge().user_id == "bob"
        with pytest.raises(us.OutOfScopeError) as info:
            container.bridge()
    assert info.value.provider == "Container.bridge (override)"
    assert events == ["open alice", "close alice", "open bob", "close bob"]


def test_scoped_value_class_is_a_factory(
    Container: Any, userscope_sessions: us.UserSessions
) -> None:
    container = Container()
    with override(container.registry, list, scoped=True):
        with userscope_sessions.request(ctx_for("alice")):
            registry = container.registry()
        with userscope_sessions.request(ctx_for("alice", "r-2")):
            assert container.registry() is registry  # USER scope: kept between requests
        with userscope_sessions.request(ctx_for("bob")):
            assert container.registry() is not registry


GREETING = providers.Object("real")


@override(GREETING, "overridden")
def test_decorator_form_on_a_test_function(userscope_context: Any) -> None:
    assert GREETING() == "overridden"  # pytest still injects the fixtures
    assert userscope_context("alice").user_id == "alice"


def test_decorated_test_left_no_override_behind() -> None:
    assert GREETING() == "real"


def test_decorator_activates_only_during_each_call(Container: Any) -> None:
    container = Container()
    calls: list[Any] = []

    @override(container.agent, "stub")
    def body(tag: str) -> str:
        calls.append(container.agent())
        return tag

    assert body("x") == "x"
    assert body("y") == "y"
    assert calls == ["stub", "stub"]
    assert container.agent.overridden == ()
    assert body.__name__ == "body"


async def test_decorator_on_async_functions_and_async_with(
    Container: Any, userscope_asessions: us.UserSessions
) -> None:
    container = Container()

    @override(container.agent, "stub")
    async def body() -> Any:
        return await container.agent.async_()

    assert await body() == "stub"
    async with override(container.bridge, Bridge("fake")):
        async with userscope_asessions.request(ctx_for("alice")):
            agent = await container.agent.async_()
            assert isinstance(agent, Agent)
            assert agent.bridge.user_id == "fake"
    assert container.bridge.overridden == ()


async def test_async_providers_stay_awaitable(userscope_asessions: us.UserSessions) -> None:
    async def open_registry(ctx: us.UserExecutionContext) -> AsyncIterator[list[str]]:
        yield [ctx.user_id]

    async def fake_registry() -> AsyncIterator[list[str]]:
        items = ["fake"]
        yield items
        items.append("closed")

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        registry = us.UserScoped(open_registry, context)

    async with userscope_asessions.request(ctx_for("alice")):
        assert await C.registry() == ["alice"]
    with override(C.registry, ["value"]):
        assert await C.registry() == ["value"]
    with override(C.registry, fake_registry, scoped=True):
        async with userscope_asessions.request(ctx_for("bob")):
            fake = await C.registry()
            assert fake is await C.registry()
        await userscope_asessions.aclose_user("bob")
    assert fake == ["fake", "closed"]


def test_bad_arguments_are_refused(Container: Any) -> None:
    container = Container()
    with pytest.raises(TypeError, match=r"not `Container.agent\(\)`"):
        override("agent", 1)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="needs a factory"):
        override(container.agent, "x", scoped=True)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="scoped=True needs a UserScoped"):
        override(container.llm, lambda: None, scoped=True)  # type: ignore[arg-type, return-value]

    def gen() -> Iterator[Agent]:
        yield Agent(None, None, None)  # type: ignore[arg-type]

    with pytest.raises(TypeError, match="pass scoped=True"):
        override(container.agent, gen, scoped=False)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="decorates a function"):
        override(container.agent, "x")(42)  # type: ignore[type-var]
    assert repr(override(container.agent, "x")) == "<Override of Container.agent (value)>"
