"""Contract 4, without `validate()`: the first scoped creation validates the container.

A captive dependency raises `CaptiveDependencyError` with its path before any object
exists that a longer-lived provider could capture; a valid container is validated once
per override generation.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from dependency_injector import containers, providers

import guard_wired_module
import userscope as us
from support import ctx_for
from userscope.container import _guard
from userscope.testing import override


class Agent:
    built = 0

    def __init__(self, ctx: us.UserExecutionContext) -> None:
        Agent.built += 1
        self.user_id = ctx.user_id


class Holder:
    built = 0

    def __init__(self, agent: Any) -> None:
        Holder.built += 1
        self.agent = agent


async def open_agent(ctx: us.UserExecutionContext) -> AsyncIterator[Agent]:
    yield Agent(ctx)


@pytest.fixture(autouse=True)
def _counts() -> None:
    Agent.built = Holder.built = 0


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every container the guard validates (the real check still runs)."""
    seen: list[Any] = []
    real = _guard.captive_paths

    def counting(container: Any) -> tuple[str, ...]:
        seen.append(container)
        return real(container)

    monkeypatch.setattr(_guard, "captive_paths", counting)
    return seen


def captive(sessions: us.UserSessions, resolve: Any, user: str = "alice") -> tuple[str, ...]:
    with pytest.raises(us.CaptiveDependencyError) as info:
        with sessions.request(ctx_for(user)):
            resolve()
    return info.value.paths


def make_captive() -> Any:
    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        agent = us.RequestScoped(Agent, context)
        holder = providers.Singleton(Holder, agent)

    return C


PATH = ("C.holder (Singleton) -> C.agent (RequestScoped)",)


def test_never_validated_class_refuses_before_anything_is_captured(sessions: Any) -> None:
    C = make_captive()
    assert captive(sessions, C.holder) == PATH
    assert captive(sessions, C.agent, "bob") == PATH  # and keeps refusing, for every user
    assert (Agent.built, Holder.built) == (0, 0)  # nothing was built, so nothing captured


async def test_never_validated_async_resolve_refuses(sessions: Any) -> None:
    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        agent = us.RequestScoped(open_agent, context)
        holder = providers.Singleton(Holder, agent)

    with pytest.raises(us.CaptiveDependencyError) as info:
        async with sessions.request(ctx_for("alice")):
            await C.agent.async_()
    assert info.value.paths == PATH
    with pytest.raises(us.CaptiveDependencyError):
        async with sessions.request(ctx_for("alice")):
            await C().agent()
    assert Agent.built == 0


async def test_wired_provide_refuses(sessions: Any) -> None:
    container = guard_wired_module.CaptiveContainer()
    container.wire(modules=[guard_wired_module])
    try:
        with pytest.raises(us.CaptiveDependencyError) as info:
            with sessions.request(ctx_for("alice")):
                guard_wired_module.use_holder()
        with pytest.raises(us.CaptiveDependencyError):
            async with sessions.request(ctx_for("alice")):
                await guard_wired_module.use_agent()
    finally:
        container.unwire()
    assert info.value.paths == (
        "CaptiveContainer.holder (Singleton) -> CaptiveContainer.agent (RequestScoped)",
    )
    assert Holder.built == 0


def test_instances_and_copies_refuse(sessions: Any) -> None:
    C = make_captive()
    instance = C()
    assert captive(sessions, instance.holder) == PATH
    assert captive(sessions, copy.deepcopy(instance).agent) == PATH
    assert captive(sessions, providers.deepcopy(C()).agent) == PATH
    assert Holder.built == 0


def test_subclass_singleton_over_an_inherited_provider(sessions: Any) -> None:
    class Base(containers.DeclarativeContainer):
        context = us.CurrentContext()
        agent = us.RequestScoped(Agent, context)

    class Bad(Base):
        holder = providers.Singleton(Holder, Base.agent)

    expected = ("Bad.holder (Singleton) -> Bad.agent (RequestScoped)",)
    assert captive(sessions, Bad.holder) == expected  # Bad.agent is Base.agent
    assert captive(sessions, Bad().holder) == expected
    with sessions.request(ctx_for("alice")):  # an instance of the base class is sound
        assert Base().agent().user_id == "alice"


def test_sub_containers_are_validated_through_their_parent(sessions: Any) -> None:
    class Sub(containers.DeclarativeContainer):
        context = us.CurrentContext()
        agent = us.RequestScoped(Agent, context)

    class Parent(containers.DeclarativeContainer):
        sub = providers.Container(Sub)
        holder = providers.Singleton(Holder, sub.agent)

    expected = ("Parent.holder (Singleton) -> Parent.sub.agent (RequestScoped)",)
    assert captive(sessions, Parent.holder) == expected
    parent = Parent()
    assert captive(sessions, parent.sub.agent) == expected
    assert captive(sessions, copy.deepcopy(parent).holder) == expected
    assert Holder.built == 0


def test_a_singleton_over_the_context_is_refused(sessions: Any) -> None:
    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        holder = providers.Singleton(Holder, context)

    assert captive(sessions, C.holder) == ("C.holder (Singleton) -> C.context (CurrentContext)",)
    assert Holder.built == 0


def test_valid_container_is_validated_once(sessions: Any, validations: list[Any]) -> None:
    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        registry = us.UserScoped(dict)
        agent = us.RequestScoped(Agent, context)
        service = providers.Factory(Holder, agent)

    container = C()
    for user in ("alice", "bob", "carol"):
        for _ in range(3):
            with sessions.request(ctx_for(user)):
                container.agent()
                container.registry()
                container.service()
                container.context()
    assert validations == [container]
    assert Agent.built == 9


def test_explicit_validate_is_remembered(sessions: Any, validations: list[Any]) -> None:
    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        agent = us.RequestScoped(Agent, context)

    container = C()
    us.validate(container)
    with sessions.request(ctx_for("alice")):
        container.agent()
    assert validations == []  # the explicit validation counted


def test_override_introducing_a_captive_is_caught_at_the_next_creation(
    sessions: Any, validations: list[Any]
) -> None:
    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        registry = us.UserScoped(dict)
        agent = us.RequestScoped(Agent, context)

    container = C()
    with sessions.request(ctx_for("alice")):
        container.agent()
    # an application-wide singleton replaces the request-scoped agent: it would capture
    # the user's registry
    container.agent.override(providers.Singleton(Holder, container.registry))
    with pytest.raises(us.CaptiveDependencyError) as info:
        with sessions.request(ctx_for("bob")):
            container.agent()
    assert info.value.paths == (
        "<inline Singleton(Holder)> (Singleton) -> C.registry (UserScoped)",
    )
    assert Holder.built == 0
    container.agent.reset_override()
    with sessions.request(ctx_for("bob")):
        assert container.agent().user_id == "bob"
    assert validations == [container] * 3  # first use, after override, after reset


def test_testing_override_of_a_plain_provider_revalidates(sessions: Any) -> None:
    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        agent = us.RequestScoped(Agent, context)
        service = providers.Factory(dict)

    container = C()
    with sessions.request(ctx_for("alice")):
        container.agent()
    with override(container.service, providers.Singleton(Holder, container.agent)):
        with pytest.raises(us.CaptiveDependencyError):
            with sessions.request(ctx_for("bob")):
                container.agent()
    with sessions.request(ctx_for("bob")):
        assert container.agent().user_id == "bob"


def test_plain_override_is_seen_after_invalidate_or_validate(sessions: Any) -> None:
    """What the guard cannot see by itself: dependency-injector's own API on a plain
    provider starts no new generation (documented); `validate()` sees it at once."""

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        agent = us.RequestScoped(Agent, context)
        service = providers.Factory(dict)

    container = C()
    with sessions.request(ctx_for("alice")):
        container.agent()
    container.service.override(providers.Singleton(Holder, container.agent))
    with sessions.request(ctx_for("bob")):
        container.agent()  # not seen: no userscope provider was overridden
    with pytest.raises(us.CaptiveDependencyError):
        us.validate(container)
    with pytest.raises(us.CaptiveDependencyError):  # the recorded result is enforced
        with sessions.request(ctx_for("bob")):
            container.agent()
    assert Holder.built == 0


def test_provider_outside_any_known_container_checks_its_own_dependencies(
    sessions: Any,
) -> None:
    container = containers.DynamicContainer()
    container.context = us.CurrentContext()
    container.registry = us.UserScoped(Holder, us.RequestScoped(Agent, container.context))
    with pytest.raises(us.CaptiveDependencyError) as info:
        with sessions.request(ctx_for("alice")):
            container.registry()
    assert info.value.paths == (
        "UserScoped(Holder) (UserScoped) -> <inline RequestScoped(Agent)> (RequestScoped)",
    )


def test_a_container_given_to_validate_is_known_from_then_on(sessions: Any) -> None:
    """Providers assigned to a bare DynamicContainer have no class to link them; one
    `validate()` does, and the guard then sees a captive provider added afterwards."""
    container = containers.DynamicContainer()
    container.context = us.CurrentContext()
    container.agent = us.RequestScoped(Agent, container.context)
    us.validate(container)  # sound, and now linked
    container.holder = providers.Singleton(Holder, container.agent)
    with pytest.raises(us.CaptiveDependencyError) as info:
        with sessions.request(ctx_for("alice")):
            container.holder()
    assert info.value.paths == (
        "DynamicContainer.holder (Singleton) -> DynamicContainer.agent (RequestScoped)",
    )
    assert Holder.built == 0


def test_concurrent_new_generations_leave_the_creation_path_on_the_newest(
    sessions: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The creation path compares against its own copy of the generation token (told by
    `_guard.on_generation`). Two threads starting generations at once must leave that
    copy on the newest one: were the older thread's listener to run last, a provider
    validated in between would pass the next creation unchecked, and a captive
    dependency the newer generation brought in would slip through."""

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        registry = us.UserScoped(dict)
        agent = us.RequestScoped(Agent, context)

    container = C()
    with sessions.request(ctx_for("alice")):
        container.agent()
        container.registry()
    first = threading.Event()  # the first thread is inside its listeners
    release = threading.Event()
    second_done = threading.Event()

    def hold_first(token: object) -> None:  # runs before the runtime's own listeners
        if threading.current_thread() is older:
            first.set()
            release.wait(5)

    monkeypatch.setattr(_guard, "_listeners", [hold_first, *_guard._listeners])

    def newer_override() -> None:  # a singleton over the user's registry: captive
        container.agent.override(providers.Singleton(Holder, container.registry))
        second_done.set()

    older = threading.Thread(target=_guard.invalidate, daemon=True)
    newer = threading.Thread(target=newer_override, daemon=True)
    try:
        older.start()
        assert first.wait(5)
        _guard.check(container.registry)  # validated while the older generation starts
        newer.start()
        second_done.wait(0.5)  # ordered generations: it waits for the older one instead
    finally:
        release.set()
        older.join(5)
        newer.join(5)
    assert not older.is_alive()
    assert not newer.is_alive()
    with pytest.raises(us.CaptiveDependencyError):
        with sessions.request(ctx_for("bob")):
            container.agent()
    assert Holder.built == 0
    container.agent.reset_override()
