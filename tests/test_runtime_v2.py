"""Regression tests for the scope runtime's concurrency model (issue 13, rows V1..V11).

Each test failed on the runtime before the v2 model (checked against commit f2bc741):
a deadlock, a hang, an overshot limit, a swallowed cancellation, a cut cleanup, a
cleanup that never ran, or unbounded memory. Every test is bounded: work that could
hang runs in a daemon thread joined with a timeout, or under ``asyncio.wait_for``, so
a regression is a failure, never a hung suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from dependency_injector import containers

import userscope as us
from support import ctx_for
from userscope.container._sessions import table_of

BOUND = 10.0  # seconds a bounded step may take before it counts as a hang


def bounded(target: Callable[[], Any], seconds: float = BOUND) -> Any:
    """Run ``target`` in a daemon thread; fail (never hang) when it does not finish."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(("ok", target()))
        except BaseException as exc:  # handed to the test below
            outcome.append(("error", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"{getattr(target, '__name__', target)} did not finish in {seconds} s (hang)")
    kind, value = outcome[0]
    if kind == "error":
        raise value
    return value


@contextlib.contextmanager
def fast_switching() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


# -- V1: a refusal under max_users re-took the non-reentrant table lock ---------------
def test_v1_connection_limit_with_max_users_refuses_instead_of_hanging() -> None:
    sessions = us.UserSessions(max_users=10, max_connections_per_user=1)
    alice = ctx_for("alice")

    def second_connection() -> us.ScopeLimitError:
        with sessions.connection(alice):
            with pytest.raises(us.ScopeLimitError) as info, sessions.connection(alice):
                pass
        return info.value

    error = bounded(second_connection)
    assert (error.limit, error.user_id, error.maximum) == ("max_connections_per_user", "alice", 1)
    assert sessions.stats().refusals == {"max_connections_per_user": 1}
    bounded(sessions.close)


# -- V2: instance refusals took session -> table, opening took table -> session ----------
def test_v2_instance_refusals_and_openings_never_deadlock() -> None:
    sessions = us.UserSessions(max_users=5, max_instances_per_user=1)

    class C(containers.DeclarativeContainer):
        first = us.RequestScoped(list)
        second = us.RequestScoped(dict)

    alice = ctx_for("alice")
    rounds = 300
    refused: list[int] = []

    def resolver() -> None:
        for _ in range(rounds):
            with sessions.request(alice):
                try:
                    C.first()
                    C.second()
                except us.ScopeLimitError:
                    refused.append(1)

    def opener() -> None:
        for _ in range(rounds):
            with sessions.connection(alice):
                pass

    def run_all() -> None:
        threads = [
            threading.Thread(target=t, daemon=True) for t in (resolver, resolver, opener, opener)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(BOUND)
            assert not thread.is_alive(), "deadlock between refusals and openings"

    with fast_switching():
        bounded(run_all, BOUND * 2)
    assert refused  # the second instance of every request was refused
    assert sessions.stats().instances == 0
    bounded(sessions.close)


# -- V3: waiters of an async creation hung when the scope closed during it --------------
async def test_v3_waiters_get_scope_closed_when_the_scope_closes_during_creation() -> None:
    sessions = us.UserSessions()
    release = asyncio.Event()
    started = asyncio.Event()
    cleaned: list[str] = []

    async def slow() -> AsyncIterator[str]:
        started.set()
        await release.wait()
        yield "value"
        cleaned.append("value")

    class C(containers.DeclarativeContainer):
        item = us.RequestScoped(slow)

    async with sessions.request(ctx_for("alice")):
        creator = asyncio.create_task(C.item.async_())
        await started.wait()
        waiter = asyncio.create_task(C.item.async_())
        await asyncio.sleep(0)  # the waiter registers on the pending creation
    release.set()
    for task in (creator, waiter):
        with pytest.raises(us.ScopeClosedError) as info:
            await asyncio.wait_for(task, BOUND)
        assert info.value.provider == "C.item"
    assert cleaned == ["value"]  # finished after its scope closed: cleaned up at once
    await asyncio.wait_for(sessions.aclose(), BOUND)


# -- V4: a waiter in another thread's event loop was never woken ----------------------
def test_v4_waiter_in_another_event_loop_is_woken() -> None:
    sessions = us.UserSessions()
    started = threading.Event()
    release = threading.Event()

    async def slow() -> dict[str, str]:
        started.set()
        await asyncio.to_thread(release.wait, BOUND)
        return {"user": "alice"}

    class C(containers.DeclarativeContainer):
        registry = us.UserScoped(slow)

    alice = ctx_for("alice")
    results: dict[str, Any] = {}

    def loop_thread(name: str) -> None:
        async def main() -> None:
            async with sessions.request(alice):
                results[name] = await C.registry.async_()

        asyncio.run(main())

    creator = threading.Thread(target=loop_thread, args=("creator",), daemon=True)
    creator.start()
    assert started.wait(BOUND)
    waiter = threading.Thread(target=loop_thread, args=("waiter",), daemon=True)
    waiter.start()
    threading.Event().wait(0.2)  # let the waiter register (ordering only; nothing is timed)
    release.set()
    creator.join(BOUND)
    waiter.join(BOUND)
    assert not waiter.is_alive(), "the waiter in the other loop was never woken"
    assert results["waiter"] is results["creator"]

    async def close() -> None:
        await sessions.aclose()

    asyncio.run(close())


# -- V5: in-flight and nested creations did not count toward max_instances_per_user -----
async def test_v5_concurrent_async_creations_respect_the_instance_limit() -> None:
    sessions = us.UserSessions(max_instances_per_user=2)

    async def make() -> object:
        await asyncio.sleep(0)
        return object()

    class C(containers.DeclarativeContainer):
        pass

    items = [us.RequestScoped(make) for _ in range(10)]
    async with sessions.request(ctx_for("alice")):
        outcomes = await asyncio.gather(*(p.async_() for p in items), return_exceptions=True)
        built = [o for o in outcomes if not isinstance(o, BaseException)]
        refused = [o for o in outcomes if isinstance(o, us.ScopeLimitError)]
        assert len(built) == 2
        assert len(refused) == 8
        assert sessions.stats().instances == 2
    assert C is not None
    await sessions.aclose()


def test_v5_nested_dependencies_count_toward_the_instance_limit() -> None:
    sessions = us.UserSessions(max_instances_per_user=1)
    built: list[str] = []

    def inner() -> str:
        built.append("inner")
        return "inner"

    def outer(dep: str) -> str:
        built.append("outer")
        return f"outer({dep})"

    class C(containers.DeclarativeContainer):
        dep = us.RequestScoped(inner)
        top = us.RequestScoped(outer, dep)

    with sessions.request(ctx_for("alice")):
        with pytest.raises(us.ScopeLimitError) as info:
            C.top()
        assert (info.value.limit, info.value.maximum) == ("max_instances_per_user", 1)
        assert built == []  # refused before any factory ran: nothing half-open
        assert sessions.stats().instances == 0
        assert C.dep() == "inner"  # the budget was given back
    sessions.close()


# -- V6: a cancellation during evicted users' cleanups inside __aenter__ was swallowed --
async def test_v6_cancellation_during_eviction_cleanup_propagates() -> None:
    sessions = us.UserSessions(max_users=1)
    in_cleanup = asyncio.Event()
    release = asyncio.Event()
    finished: list[str] = []
    body: list[str] = []

    async def registry() -> AsyncIterator[str]:
        yield "registry"
        in_cleanup.set()
        await release.wait()
        finished.append("cleanup")

    class C(containers.DeclarativeContainer):
        item = us.UserScoped(registry)

    async with sessions.request(ctx_for("alice")):
        await C.item.async_()

    async def bob_request() -> None:
        async with sessions.request(ctx_for("bob")):
            body.append("ran")

    task = asyncio.create_task(bob_request())
    await asyncio.wait_for(in_cleanup.wait(), BOUND)
    task.cancel()
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, BOUND)
    assert body == []  # the cancelled request's body never ran
    assert finished == ["cleanup"]  # and alice's cleanup was not cut short
    assert sessions.stats().connections == 0
    await sessions.aclose()


# -- V7: a cancellation during a scope's async cleanups cut the cleanup short ---------
async def test_v7_cancellation_never_cuts_a_cleanup_short() -> None:
    sessions = us.UserSessions()
    in_cleanup = asyncio.Event()
    release = asyncio.Event()
    order: list[str] = []

    async def first() -> AsyncIterator[str]:
        yield "first"
        order.append("first closed")

    async def second() -> AsyncIterator[str]:
        yield "second"
        in_cleanup.set()
        await release.wait()
        order.append("second closed")

    class C(containers.DeclarativeContainer):
        a = us.RequestScoped(first)
        b = us.RequestScoped(second)

    async def work() -> None:
        async with sessions.request(ctx_for("alice")):
            await C.a.async_()
            await C.b.async_()

    task = asyncio.create_task(work())
    await asyncio.wait_for(in_cleanup.wait(), BOUND)
    task.cancel()
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, BOUND)
    assert order == ["second closed", "first closed"]  # both ran, in reverse order
    assert sessions.stats().cleanups_failed == 0
    await sessions.aclose()


# -- V8: a last scope exiting in a worker thread after aclose() never ran USER cleanups -
def _user_cleanup_container(cleaned: list[str]) -> Any:
    async def registry(ctx: us.UserExecutionContext) -> AsyncIterator[str]:
        yield ctx.user_id
        await asyncio.sleep(0)
        cleaned.append(ctx.user_id)

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        item = us.UserScoped(registry, context)

    return C


async def test_v8_user_cleanups_run_when_the_last_scope_exits_in_a_thread_during_aclose() -> None:
    sessions = us.UserSessions()
    cleaned: list[str] = []
    C = _user_cleanup_container(cleaned)
    alice = ctx_for("alice")
    async with sessions.request(alice):
        await C.item.async_()
    inside = threading.Event()
    release = threading.Event()

    def worker() -> None:
        with sessions.request(alice):
            inside.set()
            release.wait(BOUND)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    assert await asyncio.to_thread(inside.wait, BOUND)
    closing = asyncio.create_task(sessions.aclose())
    await asyncio.sleep(0.05)
    release.set()
    await asyncio.wait_for(closing, BOUND)
    thread.join(BOUND)
    assert cleaned == ["alice"]


async def test_v8_user_cleanups_run_when_the_last_scope_exits_after_an_aclose_timeout() -> None:
    sessions = us.UserSessions()
    cleaned: list[str] = []
    C = _user_cleanup_container(cleaned)
    alice = ctx_for("alice")
    async with sessions.request(alice):
        await C.item.async_()
    inside = threading.Event()
    release = threading.Event()

    def worker() -> None:
        with sessions.request(alice):
            inside.set()
            release.wait(BOUND)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    assert await asyncio.to_thread(inside.wait, BOUND)
    with pytest.raises(us.ShutdownTimeoutError) as info:
        await asyncio.wait_for(sessions.aclose(timeout=0.05), BOUND)
    assert info.value.users == ((None, "alice"),)
    assert info.value.open_scopes == 1
    release.set()
    await asyncio.to_thread(thread.join, BOUND)
    for _ in range(200):  # the exit hands the async cleanups to this loop
        if cleaned:
            break
        await asyncio.sleep(0.01)
    assert cleaned == ["alice"]


# -- V9: ended sessions stayed in the deadline heap until their deadline ---------------
def _deadline_entries(sessions: us.UserSessions) -> int:
    return len(table_of(sessions).expiry)


def test_v9_ended_sessions_leave_the_deadline_structure() -> None:
    sessions = us.UserSessions(max_users=10, idle_timeout=3600)
    for index in range(2000):
        with sessions.request(ctx_for(f"user-{index}")):
            pass
        if index % 100 == 0:
            sessions.close_user(f"user-{index}")
    assert sessions.stats().users == 10
    assert _deadline_entries(sessions) <= 4 * 10 + 64
    sessions.close()


# -- V10: the leak watch list grew without bound; cleanup failures were false leaks -----
def _watched(sessions: us.UserSessions) -> int:
    return len(table_of(sessions).leak_watch)


def test_v10_leak_watch_list_stays_bounded() -> None:
    sessions = us.UserSessions(leak_check=True)

    class Item:
        pass

    class C(containers.DeclarativeContainer):
        item = us.RequestScoped(Item)

    alice = ctx_for("alice")
    for _ in range(20_000):
        with sessions.request(alice):
            C.item()
    assert _watched(sessions) <= 4096
    sessions.close()
    assert sessions.leaks == []


class Handle:
    pass


def test_v10_an_instance_held_only_by_a_cleanup_failure_is_not_a_leak() -> None:
    sessions = us.UserSessions(leak_check=True)

    def failing() -> Iterator[Handle]:
        handle = Handle()
        yield handle
        raise ValueError(f"cannot close {handle!r}")

    class C(containers.DeclarativeContainer):
        item = us.RequestScoped(failing)
        user_item = us.UserScoped(failing)

    kept: list[BaseException] = []
    with pytest.raises(us.CleanupError) as info:
        with sessions.request(ctx_for("alice")):
            C.item()
            C.user_item()
    kept.append(info.value)  # a framework keeps the error (e.g. to log it later)
    with pytest.raises(us.CleanupError) as closing:
        sessions.close()
    kept.append(closing.value)
    assert sessions.leaks == []
    assert sessions.stats().cleanups_failed == 2


def _endpoint(C: Any) -> None:
    agent = C.item()  # a local of a frame that a handled error's traceback keeps
    raise RuntimeError(f"500 while using {agent!r}")


def test_v10_an_instance_held_by_a_handled_errors_traceback_is_not_a_leak() -> None:
    sessions = us.UserSessions(leak_check=True)

    class C(containers.DeclarativeContainer):
        item = us.RequestScoped(Handle)

    handled: list[BaseException] = []
    with sessions.request(ctx_for("alice")):
        try:
            _endpoint(C)
        except RuntimeError as exc:  # the framework answers 500 and keeps the error
            handled.append(exc)
    sessions.close()
    assert sessions.leaks == []
    assert handled


def test_v10_a_real_leak_is_still_reported() -> None:
    sessions = us.UserSessions(leak_check=True)

    class C(containers.DeclarativeContainer):
        item = us.RequestScoped(Handle)

    kept: list[Handle] = []
    with sessions.request(ctx_for("alice")):
        kept.append(C.item())
    sessions.close()
    [report] = sessions.leaks
    assert (report.provider, report.user_id, report.tenant_id) == ("C.item", "alice", None)
    assert "list" in report.referrers


def test_v10_leak_check_inspects_a_bounded_number_of_referrers() -> None:
    sessions = us.UserSessions(leak_check=True)

    class C(containers.DeclarativeContainer):
        item = us.RequestScoped(Handle)

    kept: list[Handle] = []
    for index in range(300):
        with sessions.request(ctx_for(f"user-{index}")):
            kept.append(C.item())
    sessions.close()
    assert len(sessions.leaks) == 300
    inspected = [r for r in sessions.leaks if r.referrers and "not inspected" not in r.referrers[0]]
    assert 0 < len(inspected) <= 50
    gc.collect()


# -- V11: one user's slow sync factory stalled everyone while close_user ran -----------
def test_v11_a_slow_factory_never_stalls_other_users() -> None:
    sessions = us.UserSessions(max_users=2)
    started = threading.Event()
    release = threading.Event()

    def slow() -> str:
        started.set()
        release.wait(BOUND * 3)
        return "slow"

    class C(containers.DeclarativeContainer):
        item = us.RequestScoped(slow)

    alice, bob, carol = ctx_for("alice"), ctx_for("bob"), ctx_for("carol")

    def alice_request() -> None:
        with sessions.request(alice):
            C.item()

    thread = threading.Thread(target=alice_request, daemon=True)
    thread.start()
    assert started.wait(BOUND)
    try:
        bounded(lambda: sessions.close_user("alice"))  # alice is busy: ends at her exit

        def others() -> None:
            with sessions.request(bob):
                pass
            with sessions.request(carol):  # evicts bob: the table is at max_users
                pass

        bounded(others)
        bounded(sessions.sweep)
    finally:
        release.set()
        thread.join(BOUND)
    stats = sessions.stats()
    assert (stats.users, stats.open_scopes) == (2, 0)  # bob and carol; alice ended at her exit
    bounded(sessions.close)


# -- shutdown: aclose() waits for in-flight scopes and is bounded ----------------------
async def test_shutdown_waits_for_in_flight_scopes_before_user_cleanups() -> None:
    sessions = us.UserSessions()
    order: list[str] = []
    release = asyncio.Event()

    async def registry() -> AsyncIterator[str]:
        yield "registry"
        order.append("user cleanup")

    class C(containers.DeclarativeContainer):
        item = us.UserScoped(registry)

    async def request() -> None:
        async with sessions.request(ctx_for("alice")):
            await C.item.async_()
            await release.wait()
        order.append("scope exited")

    task = asyncio.create_task(request())
    await asyncio.sleep(0.01)

    async def close() -> None:
        await sessions.aclose()
        order.append("aclose returned")

    closing = asyncio.create_task(close())
    await asyncio.sleep(0.05)
    release.set()
    await asyncio.wait_for(asyncio.gather(task, closing), BOUND)
    assert order == ["scope exited", "user cleanup", "aclose returned"]
    with pytest.raises(us.ScopeClosedError):
        async with sessions.request(ctx_for("bob")):
            pass


async def test_shutdown_with_a_stuck_cleanup_is_bounded() -> None:
    sessions = us.UserSessions()
    never = asyncio.Event()
    other: list[str] = []

    async def stuck() -> AsyncIterator[str]:
        yield "stuck"
        await never.wait()

    def fine() -> Iterator[str]:
        yield "fine"
        other.append("closed")

    class C(containers.DeclarativeContainer):
        item = us.UserScoped(stuck)
        plain = us.UserScoped(fine)

    async with sessions.request(ctx_for("alice")):
        await C.plain.async_()
        await C.item.async_()
    with pytest.raises(us.CleanupError) as info:
        await asyncio.wait_for(sessions.aclose(timeout=0.1), BOUND)
    [failure] = info.value.exceptions
    assert isinstance(failure, us.CleanupTimeoutError)
    assert failure.provider == "C.item"
    assert other == ["closed"]  # the other cleanup still ran, after the stuck one


async def test_v7_a_cancel_scope_recognises_its_cancellation_after_shielded_cleanups() -> None:
    import anyio

    sessions = us.UserSessions()
    order: list[str] = []

    async def slow_close() -> AsyncIterator[str]:
        yield "bridge"
        await asyncio.sleep(0.01)  # suspends: cancelled while it runs
        order.append("closed")

    class C(containers.DeclarativeContainer):
        bridge = us.RequestScoped(slow_close)

    with anyio.CancelScope() as scope:
        async with sessions.request(ctx_for("alice")):
            await C.bridge.async_()
            scope.cancel()  # delivered at the cleanup's first await
    assert scope.cancelled_caught  # the original cancellation came back to its scope
    assert order == ["closed"]
    await sessions.aclose()


# -- a creation that needs itself fails at once instead of waiting for itself ----------
def test_a_factory_resolving_its_own_provider_is_a_dependency_cycle() -> None:
    sessions = us.UserSessions()

    class C(containers.DeclarativeContainer):
        pass

    def make() -> str:
        return f"needs {C.item()}"  # the instance being created, from its own factory

    C.item = us.RequestScoped(make)  # type: ignore[attr-defined]

    def resolve() -> us.DependencyCycleError:
        with sessions.request(ctx_for("alice")):
            with pytest.raises(us.DependencyCycleError) as info:
                C.item()  # type: ignore[attr-defined]
            assert sessions.stats().instances == 0  # the budget was given back
        return info.value

    error = bounded(resolve)
    assert error.scope is us.Scope.REQUEST
    bounded(sessions.close)


async def test_an_async_factory_awaiting_its_own_provider_is_a_dependency_cycle() -> None:
    sessions = us.UserSessions()

    class C(containers.DeclarativeContainer):
        pass

    async def make() -> str:
        return f"needs {await C.item.async_()}"  # type: ignore[attr-defined]

    C.item = us.UserScoped(make)  # type: ignore[attr-defined]
    async with sessions.request(ctx_for("alice")):
        with pytest.raises(us.DependencyCycleError):
            await asyncio.wait_for(C.item.async_(), BOUND)  # type: ignore[attr-defined]
    await sessions.aclose()
