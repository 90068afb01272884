"""Issue 14 in the runtime: tenant keys, durations, limits that mean what users expect,
the lock-order checker and the observer hooks. Each test failed before runtime v2."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

import pytest
from dependency_injector import containers

import userscope as us
from userscope.container._sessions import table_of


def ctx(user: str, tenant: str | None = None, request: str = "r-1") -> us.UserExecutionContext:
    return us.UserExecutionContext(
        user_id=user, tenant_id=tenant, thread_id=f"t-{user}", request_id=request
    )


class Registry:
    def __init__(self, context: us.UserExecutionContext) -> None:
        self.key = context.user_key


def container() -> Any:
    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        registry = us.UserScoped(Registry, context)

    return C


# -- tenants ---------------------------------------------------------------------------
def test_same_user_id_in_two_tenants_are_two_users() -> None:
    sessions = us.UserSessions(max_connections_per_user=1)
    C = container()

    def globex_connection() -> Registry:
        with sessions.connection(ctx("alice", "globex")):  # another user: its own limit
            return C.registry()

    with sessions.connection(ctx("alice", "acme")):
        acme = C.registry()
        outcome: list[Registry] = []
        thread = threading.Thread(target=lambda: outcome.append(globex_connection()))
        thread.start()
        thread.join(10)
    [globex] = outcome
    assert acme is not globex
    assert (acme.key, globex.key) == (("acme", "alice"), ("globex", "alice"))
    assert sessions.stats().users == 2
    sessions.close_user("alice", tenant_id="acme")
    assert sessions.stats().users == 1
    sessions.close_user("alice")  # no tenant: a third user, who has no session
    assert sessions.stats().users == 1
    sessions.close()


def test_nesting_another_tenants_same_user_id_is_refused() -> None:
    sessions = us.UserSessions()
    with sessions.request(ctx("alice", "acme")):
        with pytest.raises(us.IsolationError) as info, sessions.request(ctx("alice", "globex")):
            pass
        with pytest.raises(us.IsolationError), sessions.user(ctx("alice")):
            pass
    error = info.value
    assert (error.expected_user_id, error.expected_tenant_id) == ("alice", "acme")
    assert (error.actual_user_id, error.actual_tenant_id) == ("alice", "globex")
    sessions.close()


def test_limit_errors_and_leak_reports_carry_the_tenant() -> None:
    sessions = us.UserSessions(max_connections_per_user=1, leak_check=True)
    C = container()
    kept: list[Registry] = []
    with sessions.connection(ctx("bob", "acme")):
        with pytest.raises(us.ScopeLimitError) as info, sessions.connection(ctx("bob", "acme")):
            pass
        kept.append(C.registry())
    assert (info.value.user_id, info.value.tenant_id) == ("bob", "acme")
    sessions.close()
    [report] = sessions.leaks
    assert (report.user_id, report.tenant_id) == ("bob", "acme")


# -- limits ----------------------------------------------------------------------------
def test_plain_requests_do_not_count_as_connections() -> None:
    import contextvars

    sessions = us.UserSessions(max_connections_per_user=1, max_requests_per_user=2)
    alice = ctx("alice")

    def plain_http(request_id: str) -> None:  # outside the socket's scope: its own request
        with sessions.request(ctx("alice", request=request_id)):
            pass

    with sessions.connection(alice):  # one WebSocket: the connection budget is spent
        contextvars.Context().run(plain_http, "r-2")  # plain HTTP still gets through
        with sessions.request(alice), sessions.request(alice):  # two messages on the socket
            with pytest.raises(us.ScopeLimitError) as info:
                contextvars.Context().run(plain_http, "r-3")  # a third request: refused
    assert info.value.limit == "max_requests_per_user"
    assert sessions.stats().refusals == {"max_requests_per_user": 1}
    sessions.close()


def test_max_instances_per_user_is_off_by_default() -> None:
    sessions = us.UserSessions()
    providers = [us.RequestScoped(object) for _ in range(80)]
    with sessions.request(ctx("alice")):
        assert len({id(p()) for p in providers}) == 80
    sessions.close()


# -- durations -------------------------------------------------------------------------
def test_every_duration_takes_seconds_or_a_timedelta() -> None:
    sessions = us.UserSessions(
        max_age=timedelta(hours=1),
        idle_timeout=timedelta(minutes=5),
        cleanup_timeout=timedelta(seconds=2),
    )
    assert (sessions.max_age, sessions.idle_timeout, sessions.cleanup_timeout) == (
        3600.0,
        300.0,
        2.0,
    )
    with pytest.raises(TypeError, match="timeout"):
        sessions.close(timeout="soon")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        sessions.close(timeout=0)
    sessions.close(timeout=timedelta(seconds=1))

    async def reaper() -> None:
        runtime = us.UserSessions(idle_timeout=60)
        with pytest.raises(ValueError, match="interval"):
            runtime.start_reaper(interval=-1)
        with pytest.raises(TypeError, match="interval"):
            runtime.start_reaper(interval="1s")  # type: ignore[arg-type]
        assert runtime.start_reaper(interval=timedelta(seconds=30)) is not None
        await runtime.aclose(timeout=timedelta(seconds=5))

    asyncio.run(reaper())


async def test_cleanup_timeout_bounds_a_stuck_cleanup() -> None:
    sessions = us.UserSessions(cleanup_timeout=0.05)
    never = asyncio.Event()

    async def stuck() -> Any:
        yield "x"
        await never.wait()

    class C(containers.DeclarativeContainer):
        item = us.RequestScoped(stuck)

    with pytest.raises(us.CleanupError) as info:
        async with sessions.request(ctx("alice")):
            await C.item.async_()
    [failure] = info.value.exceptions
    assert isinstance(failure, us.CleanupTimeoutError)
    assert (failure.provider, failure.timeout) == ("C.item", 0.05)
    assert sessions.stats().cleanups_failed == 1
    await sessions.aclose()


# -- lock-order checker ----------------------------------------------------------------
def test_the_lock_checker_is_on_under_the_plugin_and_catches_a_broken_order() -> None:
    from userscope.container import _locks
    from userscope.errors import LockOrderError

    assert _locks.lock_check_enabled()
    sessions = us.UserSessions()
    with sessions.request(ctx("alice")):
        pass
    session = table_of(sessions).users["alice"]
    assert isinstance(session.lock, _locks.CheckedLock)
    with session.lock:
        with pytest.raises(LockOrderError) as info:
            table_of(sessions).lock.acquire()  # session -> table: the forbidden order
        with pytest.raises(LockOrderError):
            _locks.assert_unlocked("a factory")
    assert info.value.held == ("session lock",)
    sessions.close()


def test_no_factory_or_cleanup_runs_under_a_lock() -> None:
    from userscope.container import _locks

    sessions = us.UserSessions()
    seen: list[bool] = []

    def factory() -> Any:
        _locks.assert_unlocked("a factory")  # raises under a checked lock
        seen.append(True)
        yield "x"
        _locks.assert_unlocked("a cleanup")
        seen.append(True)

    class C(containers.DeclarativeContainer):
        item = us.RequestScoped(factory)
        user_item = us.UserScoped(factory)

    def work() -> None:
        with sessions.request(ctx("alice")):
            C.item()
            C.user_item()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    sessions.close()
    assert seen == [True] * 10  # 4 request items + 1 user item, each built and closed


# -- observer --------------------------------------------------------------------------
def test_observer_hooks_are_called_and_their_failures_ignored(caplog: Any) -> None:
    class Recorder(us.ScopeObserver):
        def __init__(self) -> None:
            self.calls: list[tuple[Any, ...]] = []

        def scope_opened(self, level: us.Scope, ctx: us.UserExecutionContext) -> object:
            self.calls.append(("opened", level.name))
            return level.name

        def scope_closed(self, token: object, level: us.Scope, error: BaseException | None) -> None:
            self.calls.append(("closed", token, level.name))

        def instance_created(self, token: object, provider: str, level: us.Scope) -> None:
            self.calls.append(("created", token, provider))

        def cleanup_finished(
            self, token: object, provider: str, level: us.Scope, seconds: float, error: Any
        ) -> None:
            self.calls.append(("cleanup", token, provider, error is None))

        def limit_refused(self, limit: str, user: Any) -> None:
            self.calls.append(("refused", limit, user))

        def user_ended(self, user: Any, reason: str) -> None:
            self.calls.append(("ended", user, reason))
            raise RuntimeError("observers may fail: logged once, ignored")

    recorder = Recorder()
    sessions = us.UserSessions(max_requests_per_user=1)
    sessions.observer = recorder

    def bridge() -> Any:
        yield "bridge"

    class C(containers.DeclarativeContainer):
        item = us.RequestScoped(bridge)

    with sessions.request(ctx("alice", "acme")):
        C.item()
        with pytest.raises(us.ScopeLimitError), sessions.request(ctx("alice", "acme")):
            pass
    sessions.close_user("alice", "acme")
    sessions.close()
    assert recorder.calls == [
        ("opened", "USER"),
        ("opened", "REQUEST"),
        ("created", "REQUEST", "C.item"),
        ("refused", "max_requests_per_user", ("acme", "alice")),
        ("cleanup", "REQUEST", "C.item", True),
        ("closed", "REQUEST", "REQUEST"),
        ("closed", "USER", "USER"),
        ("ended", ("acme", "alice"), "closed"),
    ]
    assert sum("observer" in r.getMessage() for r in caplog.records) == 1


def test_the_creation_hook_runs_under_the_checker() -> None:
    from userscope.providers import _creation

    assert _creation.before_create  # the plugin switched the checker on, and the hook with it
