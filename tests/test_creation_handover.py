"""A creation handed over before it started must not keep its reservation.

A factory first found to return an awaitable (a plain function returning a coroutine)
has already been called under the scope's reservation of its provider when that is
found out; the rest of the creation is handed to a coroutine that awaits the result.
Until that coroutine runs, the reservation is held. A task cancelled before its first
step (``asyncio.wait_for`` with a deadline already past, `task.cancel()` right after
`create_task`) or a result never awaited never runs it: the reservation must be given
back then, or every later resolve of that provider in that scope waits for a creation
that never ends (another task) or reports a false cycle (the same task).

Both hand-overs are covered: `begin_acreate` (the provider is async through a
dependency) and `create` (a provider not known to be async). Each test bounds its
waits (`asyncio.wait_for`), so a leaked reservation fails the test instead of hanging.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from dependency_injector import containers

import userscope as us
from support import Bridge

#: how long a resolve may wait for a creation before the test calls it a hang
BOUND = 5.0


def _containers(made: list[str], finished: list[str]) -> list[Any]:
    """Two containers whose ``made`` factory returns a coroutine: one async through a
    connection's bridge (`begin_acreate`'s hand-over), one plain (`create`'s)."""

    async def open_bridge(ctx: us.UserExecutionContext) -> AsyncIterator[Bridge]:
        yield Bridge(ctx.user_id)

    async def finish(label: str) -> str:
        await asyncio.sleep(0)
        finished.append(label)
        return label

    def make_over_bridge(bridge: Bridge) -> Any:
        made.append("bridge")
        return finish(f"made for {bridge.user_id}")

    def make_plain(ctx: us.UserExecutionContext) -> Any:
        made.append("plain")
        return finish(f"made for {ctx.user_id}")

    class OverBridge(containers.DeclarativeContainer):
        context = us.CurrentContext()
        bridge = us.ConnectionScoped(open_bridge, context)
        made = us.RequestScoped(make_over_bridge, bridge)

    class Plain(containers.DeclarativeContainer):
        context = us.CurrentContext()
        made = us.RequestScoped(make_plain, context)

    return [OverBridge, Plain]


def _container(kind: str) -> tuple[Any, list[str], list[str]]:
    """One of `_containers`' two, with the lists its factories record into."""
    made: list[str] = []
    finished: list[str] = []
    return _containers(made, finished)[0 if kind == "over a bridge" else 1], made, finished


async def _prime(sessions: Any, alice: Any, C: Any) -> Callable[[], Any]:
    """Bring ``C.made`` to its hand-over and return how to resolve it there.

    Over a bridge: one creation in a request of its own first, which learns that the
    provider is async (through the bridge); the next ``async_()`` is
    `begin_acreate`'s. Plain: the DI-style call ``C.made()`` in an async scope, whose
    first creation is `create`'s (an async provider's call hands back an awaitable).
    """
    if hasattr(C, "bridge"):
        async with sessions.request(alice.for_request()):
            await C.made.async_()
        return C.made.async_  # type: ignore[no-any-return]
    return C.made  # type: ignore[no-any-return]


def _drop_by_cancel_before_start(awaitable: Any) -> None:
    task = asyncio.ensure_future(awaitable)
    task.cancel()  # before its first step: the coroutine is thrown into, never run


def _drop_by_close(awaitable: Any) -> None:
    awaitable.close()


def _drop_unawaited(awaitable: Any) -> None:
    del awaitable  # the caller forgot the `await`
    gc.collect()


DROPS: dict[str, Callable[[Any], None]] = {
    "cancelled before it started": _drop_by_cancel_before_start,
    "closed": _drop_by_close,
    "never awaited": _drop_unawaited,
}


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited")
@pytest.mark.parametrize("drop", list(DROPS))
@pytest.mark.parametrize("kind", ["over a bridge", "plain"])
async def test_a_handed_over_creation_dropped_before_it_ran_gives_its_reservation_back(
    sessions: Any, alice: Any, kind: str, drop: str
) -> None:
    C, made, finished = _container(kind)
    async with sessions.connection(alice):
        resolve = await _prime(sessions, alice, C)
        async with sessions.request(alice.for_request()):
            before, built = sessions.stats().instances, len(made)
            DROPS[drop](resolve())
            await asyncio.sleep(0)  # let a cancelled task take its (only) step
            assert len(made) == built + 1  # the factory ran, once
            assert sessions.stats().instances == before  # the budget came back
            # another task, then this one: neither waits for the dropped creation
            other = await asyncio.wait_for(asyncio.ensure_future(C.made.async_()), BOUND)
            assert other == "made for alice"
            assert await asyncio.wait_for(C.made.async_(), BOUND) == other
            assert len(made) == built + 2  # built again, once
            assert finished.count("made for alice") == built + 1  # the dropped one never ran
    assert sessions.stats().instances == 0


@pytest.mark.parametrize("kind", ["over a bridge", "plain"])
async def test_a_handed_over_creation_cancelled_before_it_started_wakes_its_waiter(
    sessions: Any, alice: Any, kind: str
) -> None:
    C, made, _ = _container(kind)
    async with sessions.connection(alice):
        resolve = await _prime(sessions, alice, C)
        async with sessions.request(alice.for_request()):
            built = len(made)
            first = asyncio.ensure_future(resolve())  # reserved, not started yet
            waiter = asyncio.ensure_future(C.made.async_())  # queued behind it
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            # the waiter is not left waiting for the creator that gave up: it builds
            assert await asyncio.wait_for(waiter, BOUND) == "made for alice"
            assert len(made) == built + 2
    assert sessions.stats().instances == 0


@pytest.mark.parametrize("kind", ["over a bridge", "plain"])
async def test_a_handed_over_creation_under_a_deadline_already_past(
    sessions: Any, alice: Any, kind: str
) -> None:
    C, _, _ = _container(kind)
    async with sessions.connection(alice):
        resolve = await _prime(sessions, alice, C)
        async with sessions.request(alice.for_request()):
            # a deadline computed as already past: wait_for cancels the task it made for
            # the awaitable before that task's first step
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(resolve(), 0)
            assert await asyncio.wait_for(C.made.async_(), BOUND) == "made for alice"
    assert sessions.stats().instances == 0


async def test_a_started_hand_over_runs_as_before(sessions: Any, alice: Any) -> None:
    made: list[str] = []
    finished: list[str] = []
    for C in _containers(made, finished):
        async with sessions.connection(alice):
            resolve = await _prime(sessions, alice, C)
            async with sessions.request(alice.for_request()):
                awaitable = resolve()
                assert asyncio.iscoroutine(awaitable)  # create_task() takes it
                assert await asyncio.create_task(awaitable) == "made for alice"
                assert await C.made.async_() == "made for alice"
    assert made == ["bridge", "bridge", "plain"]
    assert finished == ["made for alice"] * 3
    assert sessions.stats().instances == 0


async def test_a_hand_over_collected_while_its_lock_is_held_gives_back_from_a_thread(
    sessions: Any, alice: Any
) -> None:
    # The cyclic GC can finalize a dropped hand-over inside one of the runtime's own
    # critical sections: the finalizer must not wait for the session lock there (this
    # thread holds it: a self-deadlock), so a helper thread gives the reservation back
    # once the lock is free.
    made: list[str] = []
    C = _containers(made, [])[0]
    async with sessions.connection(alice):
        resolve = await _prime(sessions, alice, C)
        async with sessions.request(alice.for_request()):
            handover = resolve()
            session = handover._handed[1].session  # the user's session (its budget)
            reserved = session.instances
            lock = session.lock
            lock.acquire()
            try:
                del handover
                gc.collect()  # finalized with the lock held: deferred, not deadlocked
                assert session.instances == reserved  # not given back yet
            finally:
                lock.release()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + BOUND
            while session.instances != reserved - 1:  # the helper thread's turn
                assert loop.time() < deadline, "the reservation was never given back"
                await asyncio.sleep(0.01)
            assert await asyncio.wait_for(C.made.async_(), BOUND) == "made for alice"
            assert len(made) == 3  # primed, dropped, built again
    assert sessions.stats().instances == 0


async def test_a_throw_into_a_started_hand_over_reaches_the_creation(
    sessions: Any, alice: Any
) -> None:
    # a task cancelled after its first step: the cancellation is thrown into the running
    # creation (one exception, passed on alone), which gives its reservation back
    C, made, _ = _container("over a bridge")
    async with sessions.connection(alice):
        resolve = await _prime(sessions, alice, C)
        async with sessions.request(alice.for_request()):
            before, built = sessions.stats().instances, len(made)
            handover = resolve()
            assert handover.send(None) is None  # running: suspended in the factory's sleep
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # no deprecated throw() form on the way
                with pytest.raises(asyncio.CancelledError):
                    handover.throw(asyncio.CancelledError())
            assert sessions.stats().instances == before
            assert await asyncio.wait_for(C.made.async_(), BOUND) == "made for alice"
            assert len(made) == built + 2
    assert sessions.stats().instances == 0
