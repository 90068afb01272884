"""Contracts 1 and 2: no scope, no object; isolation; caching per scope."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from dependency_injector import containers, providers

import userscope as us
from support import Agent, AgentRegistry, Bridge, ctx_for


def test_every_scoped_provider_refuses_outside_a_scope(Container: Any) -> None:
    container = Container()
    cases = [
        (container.registry, "Container.registry", us.Scope.USER),
        (container.bridge, "Container.bridge", us.Scope.CONNECTION),
        (container.agent, "Container.agent", us.Scope.REQUEST),
        (container.context, "Container.context", us.Scope.USER),
    ]
    for provider, name, level in cases:
        with pytest.raises(us.OutOfScopeError) as info:
            provider()
        err = info.value
        assert (err.provider, err.required_scope, err.active_scope) == (name, level, None)
        assert isinstance(err, LookupError)
        assert "open one with" in str(err) or "open any scope" in str(err)


def test_narrow_provider_refuses_in_a_wider_scope(
    Container: Any, sessions: Any, alice: Any
) -> None:
    container = Container()
    with sessions.connection(alice):
        assert container.bridge().user_id == "alice"
        with pytest.raises(us.OutOfScopeError) as info:
            container.agent()
    assert info.value.required_scope is us.Scope.REQUEST
    assert info.value.active_scope is us.Scope.CONNECTION
    assert "sessions.request(ctx)" in str(info.value)
    with sessions.user(alice), pytest.raises(us.OutOfScopeError) as info2:
        container.bridge()
    assert info2.value.active_scope is us.Scope.USER


def test_refusal_through_a_plain_factory(Container: Any) -> None:
    container = Container()
    wrapper = providers.Factory(list, providers.List(container.agent))
    with pytest.raises(us.OutOfScopeError) as info:
        wrapper()
    assert info.value.provider == "Container.agent"


async def test_refusal_async(Container: Any) -> None:
    container = Container()
    with pytest.raises(us.OutOfScopeError):
        await container.agent.async_()


def test_one_instance_per_scope(Container: Any, sessions: Any, alice: Any) -> None:
    container = Container()
    with sessions.request(alice):
        agent = container.agent()
        assert agent is container.agent()
        assert isinstance(agent, Agent)
        assert agent.bridge is container.bridge()
        assert agent.registry is container.registry()
        assert agent.llm is container.llm()
    with sessions.request(alice.for_request()):
        second = container.agent()
        assert second is not agent
        assert second.bridge is not agent.bridge  # new connection for a new HTTP request
        assert second.registry is agent.registry  # same user session


def test_user_scope_is_per_user_and_per_sessions(Container: Any, sessions: Any) -> None:
    container = Container()
    with sessions.request(ctx_for("alice")):
        a = container.registry()
    with sessions.request(ctx_for("bob")):
        b = container.registry()
    other = us.UserSessions()
    with other.request(ctx_for("alice")):
        a_elsewhere = container.registry()
    other.close()
    assert a is not b
    assert a is not a_elsewhere
    assert (a.user_id, b.user_id) == ("alice", "bob")


def test_nested_request_joins_the_connection(Container: Any, sessions: Any, alice: Any) -> None:
    container = Container()
    with sessions.connection(alice):
        bridge = container.bridge()
        with sessions.request(alice.for_request()):
            first = container.agent()
            assert first.bridge is bridge
        with sessions.request(alice.for_request()):
            assert container.agent() is not first
            assert container.agent().bridge is bridge
        assert sessions.stats().connections == 1


def test_context_follows_the_innermost_scope(Container: Any, sessions: Any, alice: Any) -> None:
    container = Container()
    child = alice.for_request(request_id="r-child")
    with sessions.connection(alice):
        assert container.context() is alice
        with sessions.request(child):
            assert container.context() is child
            assert us.current_context() is child
        assert us.current_context() is alice
    assert us.current_context() is None
    assert us.current_scope() is None


@pytest.mark.parametrize("kind", ["request", "connection", "user"])
def test_nested_scope_for_another_user_is_refused(
    Container: Any, sessions: Any, alice: Any, bob: Any, kind: str
) -> None:
    container = Container()
    with sessions.request(alice):
        before = sessions.stats()
        with pytest.raises(us.IsolationError) as info:
            getattr(sessions, kind)(bob).__enter__()
        assert (info.value.expected_user_id, info.value.actual_user_id) == ("alice", "bob")
        assert isinstance(info.value, PermissionError)
        assert container.context() is alice  # nothing was opened, the outer scope is intact
        after = sessions.stats()
        assert (after.users, after.connections, after.requests) == (
            before.users,
            before.connections,
            before.requests,
        )


async def test_nested_scope_for_another_user_is_refused_async(
    sessions: Any, alice: Any, bob: Any
) -> None:
    async with sessions.connection(alice):
        with pytest.raises(us.IsolationError):
            async with sessions.request(bob):
                pass  # pragma: no cover
        assert us.current_context() is alice


def test_closed_scope_refuses_resolution(Container: Any, sessions: Any, alice: Any) -> None:
    container = Container()
    import contextvars

    with sessions.request(alice):
        captured = contextvars.copy_context()
    with pytest.raises(us.ScopeClosedError) as info:
        captured.run(container.agent)
    assert info.value.user_id == "alice"
    assert info.value.provider == "Container.agent"
    assert isinstance(info.value, RuntimeError)


def test_a_creation_racing_the_scope_exit_is_refused_and_leaves_no_cleanup_behind(
    sessions: Any, alice: Any
) -> None:
    """A thread that resolves while the scope closes: the instance is refused, not orphaned.

    The worker's factory runs (with no lock held) while the scope closes; when it
    finishes, the worker must get ScopeClosedError and the instance must be cleaned up
    at once instead of being cached in a scope whose cleanups already ran.
    """
    import contextvars

    opened: list[str] = []
    building = threading.Event()
    exited = threading.Event()

    def resource() -> Any:
        opened.append("opened")
        building.set()
        exited.wait(10)
        yield "resource"
        opened.append("closed")

    class C(containers.DeclarativeContainer):
        item = us.RequestScoped(resource)

    outcome: list[BaseException | str] = []
    scope = sessions.request(alice)
    scope.__enter__()
    captured = contextvars.copy_context()

    def worker() -> None:
        try:
            outcome.append(captured.run(C.item))
        except BaseException as exc:  # the assertion below says which
            outcome.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    assert building.wait(10)
    scope.__exit__(None, None, None)  # no lock is held by the factory: exits at once
    exited.set()
    thread.join(timeout=10)
    [result] = outcome
    assert isinstance(result, us.ScopeClosedError), result
    assert result.provider == "C.item"
    assert opened == ["opened", "closed"]  # built after the exit, so cleaned up at once
    assert sessions.stats().instances == 0


async def test_task_outliving_its_scope_gets_scope_closed(
    Container: Any, sessions: Any, alice: Any
) -> None:
    container = Container()
    gate = asyncio.Event()

    async def late() -> Any:
        await gate.wait()
        return container.agent()

    async with sessions.request(alice):
        task = asyncio.create_task(late())
    gate.set()
    with pytest.raises(us.ScopeClosedError):
        await task


def test_closed_sessions_refuse_new_scopes(sessions: Any, alice: Any) -> None:
    sessions.close()
    with pytest.raises(us.ScopeClosedError) as info:
        sessions.request(alice).__enter__()
    assert info.value.scope is None
    assert us.current_context() is None


def test_scope_requires_a_context_object(sessions: Any) -> None:
    with pytest.raises(TypeError, match="UserExecutionContext"):
        sessions.request({"user_id": "alice"})


@pytest.mark.parametrize("kind", ["request", "connection"])
def test_a_scope_object_serves_one_with_block(sessions: Any, alice: Any, kind: str) -> None:
    scope = getattr(sessions, kind)(alice)
    with scope:
        with pytest.raises(us.UserscopeError, match=f"sessions.{kind}\\(ctx\\) again"):
            scope.__enter__()
        assert us.current_scope() is not None  # the refusal left the open scope alone
    with pytest.raises(us.UserscopeError, match="already used"):
        scope.__enter__()  # reusing it would resolve against a closed state
    with pytest.raises(us.UserscopeError, match="exit it only once"):
        scope.__exit__(None, None, None)
    assert us.current_scope() is None
    assert sessions.stats().connections == 0
    with getattr(sessions, kind)(alice):  # a new scope object opens as usual
        assert us.current_context() is alice


def test_concurrent_first_resolves_in_threads_build_one_instance(sessions: Any, alice: Any) -> None:
    built: list[int] = []

    def slow_registry(ctx: us.UserExecutionContext) -> AgentRegistry:
        built.append(1)
        time.sleep(0.02)
        return AgentRegistry(ctx)

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        registry = us.UserScoped(slow_registry, context)

    results: list[AgentRegistry] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        with sessions.request(alice.for_request()):
            barrier.wait()
            results.append(C.registry())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1
    assert len(results) == 8
    assert all(r is results[0] for r in results)


async def test_concurrent_first_resolves_in_tasks_build_one_instance(
    sessions: Any, alice: Any
) -> None:
    built: list[int] = []

    async def make_bridge(ctx: us.UserExecutionContext) -> Bridge:
        built.append(1)
        await asyncio.sleep(0.01)
        return Bridge(ctx.user_id)

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        bridge = us.ConnectionScoped(make_bridge, context)

    async with sessions.connection(alice):
        results = await asyncio.gather(*(C.bridge.async_() for _ in range(10)))
    assert len(built) == 1
    assert all(r is results[0] for r in results)


async def test_many_users_concurrently_never_share(Container: Any, sessions: Any) -> None:
    container = Container()
    seen: dict[str, set[int]] = {}

    async def user_work(user: str) -> None:
        for _ in range(3):
            async with sessions.request(ctx_for(user).for_request()):
                await asyncio.sleep(0)
                agent = await container.agent.async_()
                assert agent.registry.user_id == user
                assert agent.bridge.user_id == user
                assert container.context().user_id == user
                seen.setdefault(user, set()).add(id(agent.registry))

    await asyncio.gather(*(user_work(f"user-{i}") for i in range(20)))
    assert all(len(ids) == 1 for ids in seen.values())
    assert len({next(iter(ids)) for ids in seen.values()}) == 20


async def test_keyword_injections_that_are_not_parameter_names_reach_the_factory(
    sessions: Any, alice: Any
) -> None:
    """``**{"class": ...}`` and ``**{"a-b": ...}`` are legal injections in dependency-injector."""

    def build(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"args": args, **kwargs}

    async def fetch(ctx: us.UserExecutionContext) -> str:
        return f"fetched for {ctx.user_id}"

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        registry = us.UserScoped(list)
        fetched = us.RequestScoped(fetch, context)
        sync = us.RequestScoped(build, 1, **{"class": registry, "a-b": context, "ok": 2})
        mixed = us.RequestScoped(build, **{"for": fetched, "plain": registry})

    with sessions.request(alice):
        built = C.sync()
        assert built == {"args": (1,), "class": C.registry(), "a-b": alice, "ok": 2}
        assert built["class"] is C.registry()
    async with sessions.request(alice.for_request()):
        mixed = await C.mixed.async_()
        assert mixed == {"args": (), "for": "fetched for alice", "plain": C.registry()}


def test_new_scope_builds_the_state_the_constructor_builds() -> None:
    # `request()`/`connection()` build their scope with `new_scope` compiled (no type
    # call) and with `ScopeCM(...)` pure: the two must give the same object.
    from userscope.container._scope import Scope
    from userscope.container._scopes import ScopeCM, new_scope
    from userscope.container._sessions import table_of

    sessions = us.UserSessions()
    table = table_of(sessions)
    ctx = ctx_for("alice")
    built, constructed = new_scope(table, ctx, Scope.REQUEST), ScopeCM(table, ctx, Scope.REQUEST)
    for scope in (built, constructed):
        assert type(scope) is ScopeCM
        assert (scope._owner, scope._ctx, scope.kind, scope._token) == (
            table,
            ctx,
            Scope.REQUEST,
            None,
        )
        assert (scope.cache, scope.pending, scope.finalizers, scope.closed) == ({}, None, [], False)
    assert built.cache is not constructed.cache
    assert built.finalizers is not constructed.finalizers
    with built:  # and it is a working scope
        assert us.current_scope() is Scope.REQUEST
    with pytest.raises(TypeError, match="UserExecutionContext"):
        new_scope(table, object(), Scope.CONNECTION)  # type: ignore[arg-type]
    assert type(sessions.request(ctx)) is ScopeCM
    assert sessions.connection(ctx).kind is Scope.CONNECTION
    sessions.close()
