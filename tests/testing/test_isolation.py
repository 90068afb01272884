"""The isolation harness passes sound containers and catches real isolation bugs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dependency_injector import containers, providers

import userscope as us
from support import Agent, Log, make_container, open_async_bridge
from userscope.testing import (
    AsyncHarnessRequiredError,
    IsolationViolation,
    Violation,
    aassert_isolated,
    assert_isolated,
)


def test_sound_container_passes_on_tasks_and_threads(userscope_sessions: us.UserSessions) -> None:
    container = make_container(Log())()
    report = assert_isolated(
        container,
        userscope_sessions,
        providers=[container.agent, container.bridge, container.registry],
        users=100,
        concurrency=25,
        threads=8,
    )
    assert report.users == 200
    # agent, bridge and registry per user, plus the per-scope caches behind them
    assert report.instances == 200 * 3
    assert report.finalizers == 200  # one bridge generator per user
    assert report.reachable > 0
    stats = userscope_sessions.stats()
    assert (stats.users, stats.connections, stats.requests, stats.instances) == (0, 0, 0, 0)


def test_defaults_to_every_scoped_provider_of_the_container() -> None:
    report = assert_isolated(make_container(Log()), us.UserSessions(), users=3, threads=2)
    assert report.instances == 6 * 3


async def test_async_twin_resolves_async_providers_on_tasks_and_threads() -> None:
    async def make_registry(ctx: us.UserExecutionContext) -> dict[str, str]:
        return {"user": ctx.user_id}

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        registry = us.UserScoped(make_registry, context)
        bridge = us.ConnectionScoped(open_async_bridge, context)

    sessions = us.UserSessions()
    report = await aassert_isolated(C, sessions, [C.registry, C.bridge], users=6, threads=3)
    assert (report.users, report.finalizers) == (12, 12)
    await sessions.aclose()


async def test_sync_entry_point_refuses_a_running_loop() -> None:
    log = Log()
    with pytest.raises(AsyncHarnessRequiredError) as info:
        assert_isolated(make_container(log), us.UserSessions(), users=2)
    assert (info.value.function, info.value.instead) == ("assert_isolated", "aassert_isolated")
    assert isinstance(info.value, RuntimeError)
    assert "await userscope.testing.aassert_isolated(...)" in str(info.value)
    assert log.events == []  # refused before any scope opened


class Memory:
    """An application singleton that wrongly keeps per-user objects."""

    def __init__(self) -> None:
        self.by_user: dict[str, object] = {}


class RememberingAgent:
    def __init__(self, ctx: us.UserExecutionContext, memory: Memory) -> None:
        self.memory = memory
        memory.by_user[ctx.user_id] = self


def test_singleton_holding_per_user_state_is_caught() -> None:
    class Broken(containers.DeclarativeContainer):
        context = us.CurrentContext()
        memory = providers.Singleton(Memory)
        agent = us.RequestScoped(RememberingAgent, context, memory)

    with pytest.raises(IsolationViolation) as info:
        assert_isolated(Broken, us.UserSessions(), [Broken.agent], users=4, threads=2)
    err = info.value
    assert err.users == 8
    assert set(err.kinds) == {"cross_user_reference", "outlived_scope"}
    reference = next(v for v in err.violations if v.kind == "cross_user_reference")
    assert reference.provider == "Broken.agent"
    assert reference.type == "RememberingAgent"
    assert reference.users[0] != reference.users[1]
    assert ".memory.by_user[" in reference.detail
    leak = next(v for v in err.violations if v.kind == "outlived_scope")
    assert leak.provider == "Broken.agent"
    assert "held by dict in attribute Memory.by_user" in leak.detail
    assert "cross_user_reference" in str(err)
    assert "what to do" in str(err)
    Broken.memory.reset()


_AGENTS: dict[str, Agent] = {}


def cached_agent(ctx: us.UserExecutionContext) -> Any:
    """A factory with a module-level cache keyed by conversation thread: shared by users."""
    return _AGENTS.setdefault(ctx.thread_id, Agent(ctx, None, None))  # type: ignore[arg-type]


def test_module_level_cache_is_caught() -> None:
    class Broken(containers.DeclarativeContainer):
        context = us.CurrentContext()
        agent = us.RequestScoped(cached_agent, context)

    try:
        with pytest.raises(IsolationViolation) as info:
            assert_isolated(Broken, us.UserSessions(), users=3, threads=2)
    finally:
        _AGENTS.clear()
    kinds = info.value.kinds
    assert kinds["shared_instance"] == 5  # six users, one object
    assert kinds["outlived_scope"] == 1
    shared = info.value.violations[0]
    assert (shared.kind, shared.provider, shared.type) == (
        "shared_instance",
        "Broken.agent",
        "Agent",
    )
    leak = next(v for v in info.value.violations if v.kind == "outlived_scope")
    assert "held by dict in global _AGENTS of module test_isolation" in leak.detail


def test_failing_cleanup_is_reported() -> None:
    def fragile(ctx: us.UserExecutionContext) -> Iterator[list[str]]:
        yield [ctx.user_id]
        raise OSError("socket already gone")

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        bridge = us.ConnectionScoped(fragile, context)

    with pytest.raises(IsolationViolation) as info:
        assert_isolated(C, us.UserSessions(), users=2, threads=1)
    assert info.value.kinds == {"cleanup_failed": 5}  # four users and the probe
    failure = info.value.violations[0]
    assert (failure.provider, failure.type) == ("C.bridge", "OSError")
    assert "socket already gone" in failure.detail


def test_user_scope_never_closed_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[str] = []

    def open_session(ctx: us.UserExecutionContext) -> Iterator[dict[str, str]]:
        yield {"user": ctx.user_id}
        closed.append(ctx.user_id)

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        session = us.UserScoped(open_session, context)

    sessions = us.UserSessions()

    async def forget(user_id: str) -> None:  # a runtime that never ends user scopes
        return None

    monkeypatch.setattr(sessions, "aclose_user", forget)
    with pytest.raises(IsolationViolation) as info:
        assert_isolated(C, sessions, users=2, threads=0)
    missed = [v for v in info.value.violations if v.kind == "cleanup_not_run"]
    assert {v.provider for v in missed} == {"C.session", ""}
    assert "2 finalizers were registered but only 0 ran" in missed[-1].detail
    assert closed == []
    monkeypatch.undo()
    sessions.close()
    assert len(closed) == 3  # the two users and the probe


def test_allow_shared_exempts_a_legitimate_shared_object() -> None:
    class Broker:
        def __init__(self) -> None:
            self.subscribers: dict[str, object] = {}

    class Subscription:
        def __init__(self, ctx: us.UserExecutionContext, broker: Broker) -> None:
            self.broker = broker
            broker.subscribers[ctx.user_id] = ctx  # keyed per user on purpose

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        broker = providers.Singleton(Broker)
        subscription = us.ConnectionScoped(Subscription, context, broker)

    with pytest.raises(IsolationViolation):
        assert_isolated(C, us.UserSessions(), users=2, threads=0)
    report = assert_isolated(C, us.UserSessions(), users=2, threads=0, allow_shared=[Broker])
    assert report.users == 2


def test_errors_while_resolving_propagate_with_the_user() -> None:
    def broken(ctx: us.UserExecutionContext) -> Any:
        if ctx.user_id.endswith("-1"):
            raise LookupError("no such agent")
        return object()

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        agent = us.RequestScoped(broken, context)

    with pytest.raises(LookupError, match="no such agent") as info:
        assert_isolated(C, us.UserSessions(), users=3, threads=2)
    assert any("while checking user 'isolation-" in note for note in info.value.__notes__)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"users": 1}, "at least 2"),
        ({"concurrency": 0}, "concurrency must be positive"),
        ({"threads": -1}, "threads must be 0"),
        ({"depth": -1}, "depth must be 0 or more"),
        ({"providers": []}, "checks nothing"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        assert_isolated(make_container(Log()), us.UserSessions(), **kwargs)


def test_container_without_scoped_providers_is_refused() -> None:
    class Empty(containers.DeclarativeContainer):
        settings = providers.Singleton(dict)

    with pytest.raises(ValueError, match="no UserScoped"):
        assert_isolated(Empty, us.UserSessions())


def test_violation_message_is_built_from_the_fields() -> None:
    violations = [
        Violation(
            kind="shared_instance",
            provider=f"C.p{i}",
            type="Agent",
            users=("a", "b"),
            detail="same object",
        )
        for i in range(15)
    ]
    err = IsolationViolation(violations, users=2)
    text = str(err)
    assert text.startswith("isolation violated across 2 users: 15 shared_instance")
    assert "[shared_instance] Agent from C.p0 (users 'a', 'b'): same object" in text
    assert "... and 3 more" in text
    assert isinstance(err, AssertionError)
    assert isinstance(err, us.UserscopeError)
