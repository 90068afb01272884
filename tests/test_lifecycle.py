"""Issue 7: limits, eviction, expiry, the reaper, stats and thread safety."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from dependency_injector import containers

import userscope as us
from support import ctx_for
from userscope.container._sessions import table_of


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tracked(log: list[str]) -> Any:
    def factory(ctx: us.UserExecutionContext) -> Iterator[str]:
        log.append(f"open {ctx.user_id}")
        yield ctx.user_id
        log.append(f"close {ctx.user_id}")

    return factory


def container_with(log: list[str]) -> Any:
    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        registry = us.UserScoped(tracked(log), context)
        agent = us.RequestScoped(tracked(log), context)

    return C


def snapshot(sessions: us.UserSessions) -> tuple[int, int, int, int]:
    s = sessions.stats()
    return (s.users, s.connections, s.requests, s.instances)


@pytest.mark.parametrize(
    ("kwargs", "value"),
    [
        ({"max_users": 0}, 0),
        ({"idle_timeout": -1}, -1),
        ({"max_age": 0}, 0),
        ({"cleanup_timeout": -0.5}, -0.5),
    ],
)
def test_limits_must_be_positive(kwargs: dict[str, Any], value: Any) -> None:
    with pytest.raises(ValueError, match="positive") as info:
        us.UserSessions(**kwargs)
    assert repr(value) in str(info.value)
    assert next(iter(kwargs)) in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_instances_per_user": True},
        {"max_users": 2.5},
        {"max_age": "1h"},
        {"idle_timeout": True},
    ],
)
def test_limits_of_the_wrong_type_are_refused_by_name(kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError) as info:
        us.UserSessions(**kwargs)
    assert next(iter(kwargs)) in str(info.value)


def test_defaults_are_documented_values() -> None:
    sessions = us.UserSessions()
    assert sessions.max_age == 24 * 3600
    assert sessions.max_instances_per_user is None
    assert sessions.cleanup_timeout is None
    assert (sessions.max_users, sessions.idle_timeout) == (None, None)
    assert (sessions.max_connections_per_user, sessions.max_requests_per_user) == (None, None)


@pytest.mark.parametrize(
    "name",
    [
        "max_users",
        "max_age",
        "idle_timeout",
        "max_connections_per_user",
        "max_requests_per_user",
        "max_instances_per_user",
    ],
)
def test_limits_are_fixed_at_construction(name: str) -> None:
    sessions = us.UserSessions()
    with pytest.raises(AttributeError):
        setattr(sessions, name, 1)


def test_stats_count_open_scopes_without_any_concurrency_limit() -> None:
    sessions = us.UserSessions()  # no per-user limit: counts come from the open scopes
    alice, bob = ctx_for("alice"), ctx_for("bob")
    bob_request, bob_context = sessions.request(bob), contextvars.Context()
    bob_context.run(bob_request.__enter__)  # bob's plain HTTP request, in its own context
    with sessions.connection(alice), sessions.request(alice.for_request()):
        stats = sessions.stats()
        assert (stats.users, stats.connections, stats.requests) == (2, 2, 2)
        with sessions.user(alice):
            assert (sessions.stats().connections, sessions.stats().requests) == (2, 2)
    bob_context.run(bob_request.__exit__, None, None, None)
    stats = sessions.stats()
    assert (stats.users, stats.connections, stats.requests) == (2, 0, 0)


def test_connection_limit_refuses_and_leaves_nothing_open() -> None:
    sessions = us.UserSessions(max_connections_per_user=2)
    alice = ctx_for("alice")
    with sessions.connection(alice), sessions.request(alice.for_request()):
        with sessions.connection(alice):
            before = snapshot(sessions)
            with pytest.raises(us.ScopeLimitError) as info:
                sessions.connection(alice).__enter__()
            err = info.value
            assert (err.limit, err.user_id, err.current, err.maximum) == (
                "max_connections_per_user",
                "alice",
                2,
                2,
            )
            assert snapshot(sessions) == before
            assert us.current_scope() is us.Scope.CONNECTION
        with sessions.connection(alice):
            pass  # a slot is free again
    assert sessions.stats().refusals == {"max_connections_per_user": 1}
    assert snapshot(sessions)[1:3] == (0, 0)
    sessions.close()


async def test_request_limit_counts_concurrent_requests() -> None:
    sessions = us.UserSessions(max_requests_per_user=1)
    alice = ctx_for("alice")
    async with sessions.connection(alice):
        async with sessions.request(alice.for_request()):
            with pytest.raises(us.ScopeLimitError) as info:
                async with sessions.request(alice.for_request()):
                    pass  # pragma: no cover
            assert info.value.limit == "max_requests_per_user"
        async with sessions.request(alice.for_request()):
            pass  # the first one finished
    async with sessions.request(ctx_for("bob")):
        pass  # other users are not affected
    await sessions.aclose()


def test_instance_limit_refuses_before_building() -> None:
    log: list[str] = []
    built: list[int] = []

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        a = us.RequestScoped(lambda: built.append(1) or "a")
        b = us.RequestScoped(tracked(log), context)

    sessions = us.UserSessions(max_instances_per_user=1)
    with sessions.request(ctx_for("alice")):
        C.a()
        with pytest.raises(us.ScopeLimitError) as info:
            C.b()
        assert (info.value.limit, info.value.current, info.value.maximum) == (
            "max_instances_per_user",
            1,
            1,
        )
        assert log == []  # the generator was never started: nothing half-open
    with sessions.request(ctx_for("alice")):
        C.b()  # instances of closed scopes no longer count
    assert log == ["open alice", "close alice"]
    sessions.close()


def test_max_users_evicts_the_least_recently_used_idle_session() -> None:
    log: list[str] = []
    C = container_with(log)
    clock = Clock()
    sessions = us.UserSessions(max_users=2, clock=clock)
    for user in ("alice", "bob"):
        with sessions.request(ctx_for(user)):
            C.registry()
        clock.now += 1
    with sessions.request(ctx_for("alice")):
        clock.now += 1  # alice is now the most recently used
    with sessions.request(ctx_for("carol")):
        C.registry()
    assert "close bob" in log
    assert "close alice" not in log
    stats = sessions.stats()
    assert (stats.users, stats.evictions) == (2, 1)
    sessions.close()


def test_max_users_refuses_when_nobody_is_idle() -> None:
    sessions = us.UserSessions(max_users=1)
    held = sessions.connection(ctx_for("alice"))
    elsewhere = contextvars.Context()  # alice's connection lives in another task's context
    elsewhere.run(held.__enter__)
    with pytest.raises(us.ScopeLimitError) as info:
        with sessions.request(ctx_for("bob")):
            pass  # pragma: no cover
    elsewhere.run(held.__exit__, None, None, None)
    assert (info.value.limit, info.value.user_id, info.value.current) == ("max_users", "bob", 1)
    assert sessions.stats().refusals == {"max_users": 1}
    sessions.close()


def test_sweep_closes_idle_and_old_sessions_but_never_busy_ones() -> None:
    log: list[str] = []
    C = container_with(log)
    clock = Clock()
    sessions = us.UserSessions(idle_timeout=60, max_age=3600, clock=clock)
    for user in ("alice", "bob"):
        with sessions.request(ctx_for(user)):
            C.registry()
    clock.now += 30
    with sessions.request(ctx_for("bob")):
        pass  # bob stays fresh
    clock.now += 40  # alice idle 70 s, bob 40 s
    assert sessions.sweep() == 1
    assert "close alice" in log
    assert "close bob" not in log
    with sessions.connection(ctx_for("bob")):
        clock.now += 10_000  # far past max_age, but bob is busy
        assert sessions.sweep() == 0
        assert "close bob" not in log
    assert sessions.sweep() == 1  # idle now: reaped
    assert log.count("close bob") == 1
    assert sessions.stats().expired == 2
    sessions.close()


def test_expired_session_is_replaced_on_next_use() -> None:
    log: list[str] = []
    C = container_with(log)
    clock = Clock()
    sessions = us.UserSessions(max_age=100, clock=clock)
    with sessions.request(ctx_for("alice")):
        first = C.registry()
    clock.now += 101
    with sessions.request(ctx_for("alice")):
        C.registry()
    assert log == ["open alice", "close alice", "open alice"]
    assert first == "alice"
    sessions.close()


def test_sweep_cost_follows_the_expired_sessions() -> None:
    clock = Clock()
    sessions = us.UserSessions(idle_timeout=100, clock=clock)
    for i in range(1000):
        with sessions.request(ctx_for(f"u{i}")):
            pass
        if i == 9:
            clock.now += 50  # the first ten are older
    assert len(table_of(sessions).expiry) == 1000  # one entry per idle session, never more
    clock.now += 60  # only the first ten are past their deadline
    assert sessions.sweep() == 10
    assert len(table_of(sessions).expiry) == 990  # the rest were not touched
    sessions.close()


async def test_reaper_task_sweeps_periodically_and_stops_on_aclose() -> None:
    log: list[str] = []
    C = container_with(log)
    clock = Clock()
    sessions = us.UserSessions(idle_timeout=10, clock=clock)
    async with sessions.request(ctx_for("alice")):
        C.registry()
    task = sessions.start_reaper(interval=0.01)
    assert task is not None
    assert sessions.start_reaper(interval=0.01) is task  # one reaper per runtime
    clock.now += 11
    for _ in range(200):
        if "close alice" in log:
            break
        await asyncio.sleep(0.01)
    assert "close alice" in log
    await sessions.aclose()
    assert task.done()


def test_no_reaper_when_nothing_can_expire() -> None:
    sessions = us.UserSessions(max_age=None)
    assert asyncio.run(_start(sessions)) is None


async def _start(sessions: us.UserSessions) -> Any:
    return sessions.start_reaper()


def test_stats_reports_everything() -> None:
    log: list[str] = []
    C = container_with(log)
    sessions = us.UserSessions(leak_check=True)
    with sessions.connection(ctx_for("alice")):
        C.registry()
        with sessions.request(ctx_for("alice", "r-2")):
            C.agent()
            stats = sessions.stats()
            assert (stats.users, stats.connections, stats.requests) == (1, 1, 1)
            assert stats.instances_by_provider == {"C.registry": 1, "C.agent": 1}
            assert stats.instances == 2
    stats = sessions.stats()
    assert stats.cleanups_run == 1
    assert stats.instances_by_provider == {"C.registry": 1}
    sessions.close()
    stats = sessions.stats()
    assert (stats.cleanups_run, stats.cleanups_failed, stats.closed) == (2, 0, True)
    assert stats.leaks_detected == 0
    assert isinstance(stats.model_dump(), dict)


def test_threads_hammering_limits_never_exceed_them() -> None:
    sessions = us.UserSessions(max_connections_per_user=3)
    peak: list[int] = []
    lock = threading.Lock()
    active = {"n": 0}
    refused = {"n": 0}
    barrier = threading.Barrier(12)

    def worker() -> None:
        barrier.wait()
        for _ in range(50):
            try:
                with sessions.connection(ctx_for("alice")):
                    with lock:
                        active["n"] += 1
                        peak.append(active["n"])
                    with lock:
                        active["n"] -= 1
            except us.ScopeLimitError:
                with lock:
                    refused["n"] += 1

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(peak) <= 3
    stats = sessions.stats()
    assert (stats.connections, stats.requests) == (0, 0)
    assert stats.refusals.get("max_connections_per_user", 0) == refused["n"]
    sessions.close()
