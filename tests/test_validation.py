"""Contract 4: validate(container) finds every captive dependency with its path."""

from __future__ import annotations

from typing import Any

import pytest
from dependency_injector import containers, providers

import userscope as us


class Thing:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs


async def make_async(*args: Any) -> Thing:
    return Thing(*args)


def paths_of(container: Any) -> tuple[str, ...]:
    with pytest.raises(us.CaptiveDependencyError) as info:
        us.validate(container)
    assert isinstance(info.value, TypeError)
    return info.value.paths


def test_clean_container_passes(Container: Any) -> None:
    us.validate(Container)
    us.validate(Container())


def test_direct_captives_of_every_caching_kind() -> None:
    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        registry = us.UserScoped(Thing)
        singleton = providers.Singleton(Thing, registry)
        thread_safe = providers.ThreadSafeSingleton(Thing, registry=registry)
        thread_local = providers.ThreadLocalSingleton(Thing, registry)
        context_local = providers.ContextLocalSingleton(Thing, registry)
        resource = providers.Resource(Thing, registry)
        obj = providers.Object(registry)
        ctx_holder = providers.Singleton(Thing, context)

    assert paths_of(C) == (
        "C.context_local (ContextLocalSingleton) -> C.registry (UserScoped)",
        "C.ctx_holder (Singleton) -> C.context (CurrentContext)",
        "C.obj (Object) -> C.registry (UserScoped)",
        "C.resource (Resource) -> C.registry (UserScoped)",
        "C.singleton (Singleton) -> C.registry (UserScoped)",
        "C.thread_local (ThreadLocalSingleton) -> C.registry (UserScoped)",
        "C.thread_safe (ThreadSafeSingleton) -> C.registry (UserScoped)",
    )


def test_captives_through_transient_providers() -> None:
    class C(containers.DeclarativeContainer):
        agent = us.RequestScoped(Thing)
        factory = providers.Factory(Thing, agent)
        callable_ = providers.Callable(Thing, factory)
        as_list = providers.List(callable_)
        as_dict = providers.Dict(x=as_list)
        llm = providers.Singleton(Thing, as_dict)
        attr = providers.Singleton(Thing, agent.provided.name)
        inline = providers.Singleton(Thing, providers.Factory(Thing, agent))
        coro = providers.Coroutine(make_async, agent)
        via_coro = providers.Resource(Thing, coro)

    assert paths_of(C) == (
        (
            "C.attr (Singleton) -> <inline AttributeGetter> (AttributeGetter) "
            "-> <inline ProvidedInstance> (ProvidedInstance) -> C.agent (RequestScoped)"
        ),
        "C.inline (Singleton) -> <inline Factory(Thing)> (Factory) -> C.agent (RequestScoped)",
        (
            "C.llm (Singleton) -> C.as_dict (Dict) -> C.as_list (List) -> C.callable_ (Callable) "
            "-> C.factory (Factory) -> C.agent (RequestScoped)"
        ),
        "C.via_coro (Resource) -> C.coro (Coroutine) -> C.agent (RequestScoped)",
    )


def test_wider_scopes_on_narrower_ones() -> None:
    class C(containers.DeclarativeContainer):
        agent = us.RequestScoped(Thing)
        bridge = us.ConnectionScoped(Thing)
        conn_on_req = us.ConnectionScoped(Thing, agent)
        user_on_conn = us.UserScoped(Thing, bridge)
        user_on_req = us.UserScoped(Thing, providers.Factory(Thing, agent))
        fine = us.RequestScoped(Thing, bridge, conn_on_req)

    assert paths_of(C) == (
        "C.conn_on_req (ConnectionScoped) -> C.agent (RequestScoped)",
        "C.user_on_conn (UserScoped) -> C.bridge (ConnectionScoped)",
        (
            "C.user_on_req (UserScoped) -> <inline Factory(Thing)> (Factory) "
            "-> C.agent (RequestScoped)"
        ),
    )


def test_sub_containers_and_dependencies() -> None:
    class Sub(containers.DeclarativeContainer):
        registry = providers.Dependency()
        service = providers.Singleton(Thing, registry)

    class Main(containers.DeclarativeContainer):
        registry = us.UserScoped(Thing)
        sub = providers.Container(Sub, registry=registry)

    paths = paths_of(Main())
    assert paths == (
        (
            "Main.sub.service (Singleton) -> Main.sub.registry (Dependency) "
            "-> Main.registry (UserScoped)"
        ),
    )


def test_overrides_in_force_are_used() -> None:
    class C(containers.DeclarativeContainer):
        registry = us.UserScoped(Thing)
        llm = providers.Singleton(Thing)

    container = C()
    us.validate(container)
    container.llm.override(providers.Singleton(Thing, container.registry))
    assert len(paths_of(container)) == 1
    container.llm.reset_override()
    container.registry.override(providers.Singleton(Thing))
    us.validate(container)  # the scoped provider is replaced: nothing captive left


def test_delegates_are_not_captive() -> None:
    class C(containers.DeclarativeContainer):
        agent = us.RequestScoped(Thing)
        runner = providers.Singleton(Thing, agent.provider)

    us.validate(C)


def test_validate_refuses_non_containers() -> None:
    with pytest.raises(TypeError, match="container"):
        us.validate(object())


def test_message_lists_every_path_and_the_fix() -> None:
    class C(containers.DeclarativeContainer):
        registry = us.UserScoped(Thing)
        a = providers.Singleton(Thing, registry)
        b = providers.Singleton(Thing, registry)

    with pytest.raises(us.CaptiveDependencyError) as info:
        us.validate(C)
    message = str(info.value)
    assert "2 captive dependencies" in message
    assert "C.a (Singleton) -> C.registry (UserScoped)" in message
    assert "C.b (Singleton) -> C.registry (UserScoped)" in message
    assert "make the dependant scoped" in message
