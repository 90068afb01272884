"""Contract 3: every finalizer runs, in reverse order, whatever happens."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from dependency_injector import containers

import userscope as us


def tracked(name: str, log: list[str], fail: bool = False) -> Any:
    def factory() -> Iterator[str]:
        log.append(f"open {name}")
        try:
            yield name
        finally:
            log.append(f"close {name}")
            if fail:
                raise ValueError(f"{name} cleanup failed")

    return factory


def atracked(name: str, log: list[str], fail: bool = False, suspend: bool = True) -> Any:
    """An async generator factory; its cleanup suspends once unless ``suspend`` is false."""

    async def factory() -> AsyncIterator[str]:
        log.append(f"open {name}")
        try:
            yield name
        finally:
            if suspend:
                await asyncio.sleep(0)
            log.append(f"close {name}")
            if fail:
                raise ValueError(f"{name} cleanup failed")

    return factory


def test_reverse_creation_order_across_levels(sessions: Any, alice: Any) -> None:
    log: list[str] = []

    class C(containers.DeclarativeContainer):
        a = us.RequestScoped(tracked("a", log))
        b = us.ConnectionScoped(tracked("b", log))
        c = us.RequestScoped(tracked("c", log))

    with sessions.connection(alice):
        C.b()
        with sessions.request(alice.for_request()):
            C.a()
            C.c()
        assert log[-2:] == ["close c", "close a"]
    assert log == ["open b", "open a", "open c", "close c", "close a", "close b"]


def test_all_finalizers_run_when_some_raise(sessions: Any, alice: Any, caplog: Any) -> None:
    log: list[str] = []

    class C(containers.DeclarativeContainer):
        a = us.RequestScoped(tracked("a", log, fail=True))
        b = us.RequestScoped(tracked("b", log))
        c = us.RequestScoped(tracked("c", log, fail=True))

    with caplog.at_level(logging.ERROR, logger="userscope"), pytest.raises(us.CleanupError) as info:
        with sessions.request(alice):
            C.a(), C.b(), C.c()
    assert log[-3:] == ["close c", "close b", "close a"]
    err = info.value
    assert isinstance(err, ExceptionGroup)
    assert [str(e) for e in err.exceptions] == ["c cleanup failed", "a cleanup failed"]
    assert err.scope is us.Scope.CONNECTION
    assert err.user_id == "alice"
    assert sum("cleanup of C.a failed" in r.getMessage() for r in caplog.records) == 1
    assert sessions.stats().cleanups_failed == 2
    match, rest = err.split(ValueError)
    assert isinstance(match, us.CleanupError)
    assert rest is None


def test_body_exception_propagates_unchanged_with_notes(sessions: Any, alice: Any) -> None:
    log: list[str] = []
    seen_in_generator: list[BaseException] = []

    def watcher() -> Iterator[str]:
        try:
            yield "w"
        except KeyError as exc:
            seen_in_generator.append(exc)
            raise

    class C(containers.DeclarativeContainer):
        w = us.RequestScoped(watcher)
        a = us.RequestScoped(tracked("a", log, fail=True))

    boom = KeyError("boom")
    with pytest.raises(KeyError) as info, sessions.request(alice):
        C.w(), C.a()
        raise boom
    assert info.value is boom
    assert seen_in_generator == [boom]
    assert log == ["open a", "close a"]
    assert any("a cleanup failed" in note for note in boom.__notes__)


def test_generator_cannot_swallow_the_body_exception(sessions: Any, alice: Any) -> None:
    def swallower() -> Iterator[str]:
        try:
            yield "s"
        except RuntimeError:
            pass

    class C(containers.DeclarativeContainer):
        s = us.RequestScoped(swallower)

    with pytest.raises(RuntimeError, match="original"), sessions.request(alice):
        C.s()
        raise RuntimeError("original")


def test_generator_yielding_twice_is_a_cleanup_failure(sessions: Any, alice: Any) -> None:
    def twice() -> Iterator[int]:
        yield 1
        yield 2

    class C(containers.DeclarativeContainer):
        t = us.RequestScoped(twice)

    with pytest.raises(us.CleanupError) as info, sessions.request(alice):
        C.t()
    assert "yielded more than once" in str(info.value.exceptions[0])


def test_generator_that_never_yields_is_refused(sessions: Any, alice: Any) -> None:
    def empty() -> Iterator[int]:
        return
        yield  # pragma: no cover

    class C(containers.DeclarativeContainer):
        e = us.RequestScoped(empty)

    with sessions.request(alice), pytest.raises(us.UserscopeError, match="without yielding"):
        C.e()


async def test_async_cleanup_reverse_order_and_failures(sessions: Any, alice: Any) -> None:
    log: list[str] = []

    class C(containers.DeclarativeContainer):
        a = us.RequestScoped(atracked("a", log))
        b = us.RequestScoped(tracked("b", log, fail=True))
        c = us.RequestScoped(atracked("c", log, fail=True))

    with pytest.raises(us.CleanupError) as info:
        async with sessions.request(alice):
            await C.a.async_()
            C.b()
            await C.c.async_()
    assert log == ["open a", "open b", "open c", "close c", "close b", "close a"]
    assert [str(e) for e in info.value.exceptions] == ["c cleanup failed", "b cleanup failed"]


async def test_async_body_exception_is_thrown_into_async_generators(
    sessions: Any, alice: Any
) -> None:
    seen: list[BaseException] = []

    async def watcher() -> AsyncIterator[str]:
        try:
            yield "w"
        except ValueError as exc:
            seen.append(exc)
            raise

    class C(containers.DeclarativeContainer):
        w = us.RequestScoped(watcher)

    boom = ValueError("boom")
    with pytest.raises(ValueError, match="boom") as info:
        async with sessions.request(alice):
            await C.w.async_()
            raise boom
    assert info.value is boom
    assert seen == [boom]


async def test_cancellation_runs_every_cleanup_first(sessions: Any, alice: Any) -> None:
    log: list[str] = []
    started = asyncio.Event()

    class C(containers.DeclarativeContainer):
        a = us.ConnectionScoped(atracked("a", log))
        b = us.RequestScoped(atracked("b", log))

    async def body() -> None:
        async with sessions.connection(alice):
            await C.a.async_()
            async with sessions.request(alice.for_request()):
                await C.b.async_()
                started.set()
                await asyncio.sleep(10)

    task = asyncio.create_task(body())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == ["open a", "open b", "close b", "close a"]
    assert sessions.stats().connections == 0


async def test_closing_calls_close_or_aclose(sessions: Any, alice: Any) -> None:
    calls: list[str] = []

    class SyncResource:
        def close(self) -> None:
            calls.append("close")

    class AsyncResource:
        async def aclose(self) -> None:
            calls.append("aclose")

    class C(containers.DeclarativeContainer):
        s = us.RequestScoped(SyncResource).closing()
        a = us.RequestScoped(AsyncResource).closing()
        plain = us.RequestScoped(SyncResource)

    async with sessions.request(alice):
        C.s(), C.a(), C.plain()
    assert calls == ["aclose", "close"]


def test_closing_without_close_method_is_refused(sessions: Any, alice: Any) -> None:
    class C(containers.DeclarativeContainer):
        x = us.RequestScoped(dict).closing()

    with sessions.request(alice), pytest.raises(us.UserscopeError, match="no close"):
        C.x()


def test_async_factory_in_sync_scope_is_refused(sessions: Any, alice: Any) -> None:
    async def make() -> str:
        return "x"  # pragma: no cover

    class C(containers.DeclarativeContainer):
        x = us.RequestScoped(make)

    with sessions.request(alice), pytest.raises(us.UserscopeError) as info:
        C.x()
    assert "async with" in str(info.value)


def test_user_scope_cleanup_at_close_user_and_shutdown(sessions: Any) -> None:
    log: list[str] = []

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        reg = us.UserScoped(tracked("reg", log))

    from support import ctx_for

    with sessions.request(ctx_for("alice")):
        C.reg()
    with sessions.request(ctx_for("bob")):
        C.reg()
    assert log == ["open reg", "open reg"]
    sessions.close_user("alice")
    assert log[-1] == "close reg"
    assert sessions.stats().users == 1
    sessions.close()
    assert log.count("close reg") == 2


def test_close_user_waits_for_active_connections(sessions: Any, alice: Any) -> None:
    log: list[str] = []

    class C(containers.DeclarativeContainer):
        reg = us.UserScoped(tracked("reg", log))

    with sessions.connection(alice):
        first = C.reg()
        sessions.close_user("alice")
        assert log == ["open reg"]  # still in use
        assert C.reg() is first
    assert log == ["open reg", "close reg"]
    with sessions.request(alice):
        C.reg()
    assert log == ["open reg", "close reg", "open reg"]  # a fresh session was created


async def test_async_user_cleanups_need_aclose(sessions: Any, alice: Any) -> None:
    log: list[str] = []

    class C(containers.DeclarativeContainer):
        reg = us.UserScoped(atracked("reg", log))

    async with sessions.request(alice):
        await C.reg.async_()
    with pytest.raises(us.UserscopeError, match="aclose_user"):
        sessions.close_user("alice")
    with pytest.raises(us.UserscopeError, match="aclose"):
        sessions.close()
    assert log == ["open reg"]  # nothing was closed by the refused calls
    await sessions.aclose_user("alice")
    assert log == ["open reg", "close reg"]
    await sessions.aclose()


# -- the async exit runs inline while no cleanup suspends ---------------------------------


def inline(name: str, log: list[str], fail: bool = False) -> Any:
    """An async generator factory whose cleanup finishes without suspending."""
    return atracked(name, log, fail, suspend=False)


async def test_async_exit_without_suspending_cleanups_runs_them_before_the_await(
    sessions: Any, alice: Any
) -> None:
    log: list[str] = []

    class C(containers.DeclarativeContainer):
        a = us.RequestScoped(inline("a", log))
        b = us.RequestScoped(tracked("b", log))

    scope = sessions.request(alice)
    await scope.__aenter__()
    await C.a.async_()
    C.b()
    leaving = scope.__aexit__(None, None, None)
    # every cleanup already ran, in reverse order, and the scope let go of its user
    assert log == ["open a", "open b", "close b", "close a"]
    assert sessions.stats().connections == 0
    assert await leaving is None
    assert sessions.stats().cleanups_run == 2


async def test_a_suspending_cleanup_continues_in_the_awaited_exit_in_reverse_order(
    sessions: Any, alice: Any
) -> None:
    log: list[str] = []

    class C(containers.DeclarativeContainer):
        a = us.RequestScoped(inline("a", log, fail=True))
        b = us.RequestScoped(atracked("b", log))  # suspends in its cleanup
        c = us.RequestScoped(inline("c", log, fail=True))

    scope = sessions.request(alice)
    await scope.__aenter__()
    for provider in (C.a, C.b, C.c):
        await provider.async_()
    leaving = scope.__aexit__(None, None, None)
    assert log[-1] == "close c"  # ran inline; b suspended, a has not started
    assert "close a" not in log
    with pytest.raises(us.CleanupError) as info:
        await leaving
    assert log[3:] == ["close c", "close b", "close a"]
    assert [str(e) for e in info.value.exceptions] == ["c cleanup failed", "a cleanup failed"]
    assert sessions.stats().cleanups_run == 3
    assert sessions.stats().connections == 0


async def test_async_generator_yielding_twice_is_a_cleanup_failure(
    sessions: Any, alice: Any
) -> None:
    closed: list[str] = []

    def twice(suspend: bool) -> Any:
        async def factory() -> AsyncIterator[int]:
            try:
                yield 1
                if suspend:
                    await asyncio.sleep(0)
                yield 2
            finally:
                closed.append("suspending" if suspend else "inline")

        return factory

    class C(containers.DeclarativeContainer):
        inline_twice = us.RequestScoped(twice(False))
        suspending_twice = us.RequestScoped(twice(True))

    with pytest.raises(us.CleanupError) as info:
        async with sessions.request(alice):
            await C.inline_twice.async_()
            await C.suspending_twice.async_()
    assert [(e.provider, e.problem) for e in info.value.exceptions] == [
        ("C.suspending_twice", "yielded_twice"),
        ("C.inline_twice", "yielded_twice"),
    ]
    assert closed == ["suspending", "inline"]  # each one closed after its second yield
