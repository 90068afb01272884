"""`userscope._speedups`: the compiled twin and the pure twin behave the same.

Runs in both modes (scripts/check runs it again with USERSCOPE_PURE=1), so every
assertion here holds for the C lock and for ``threading.Lock`` alike.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Generator
from typing import Any

import pytest

import userscope
from support import hang_guard, run_threads
from userscope import _speedups
from userscope.container import _locks
from userscope.container._session import UserSession, table_slot
from userscope.container._sessions import table_of as userscope_table


def test_lock_acquire_release_and_locked() -> None:
    lock = _speedups.Lock()
    assert lock.locked() is False
    assert lock.acquire() is True
    assert lock.locked() is True
    assert lock.acquire(False) is False  # not re-entrant
    assert lock.acquire(blocking=False) is False
    lock.release()
    assert lock.locked() is False


def test_lock_is_a_context_manager() -> None:
    lock = _speedups.Lock()
    with lock:
        assert lock.locked()
    assert not lock.locked()


def test_release_of_an_unlocked_lock_raises_runtime_error() -> None:
    lock = _speedups.Lock()
    with pytest.raises(RuntimeError):
        lock.release()


def test_timeout_gives_up_and_reports_false() -> None:
    lock = _speedups.Lock()
    lock.acquire()
    try:
        assert lock.acquire(True, 0.01) is False
        assert lock.acquire(timeout=0.01) is False
    finally:
        lock.release()


def test_bad_timeouts_are_refused_like_threading_lock() -> None:
    lock = _speedups.Lock()
    lock.acquire()
    try:
        with pytest.raises(ValueError, match="non-blocking"):
            lock.acquire(False, 1.0)
        # threading.Lock's wording: "must be positive" to 3.12, "must be a non-negative
        # number" from 3.13 on
        with pytest.raises(ValueError, match="timeout value must be"):
            lock.acquire(True, -5.0)
    finally:
        lock.release()


def test_a_blocked_thread_gets_the_lock_once_released() -> None:
    lock = _speedups.Lock()
    lock.acquire()
    got: list[bool] = []
    started = threading.Event()

    def wait_for_it() -> None:
        started.set()
        got.append(lock.acquire(True, 10.0))
        lock.release()

    worker = threading.Thread(target=wait_for_it)
    worker.start()
    assert started.wait(10.0)
    lock.release()
    worker.join(10.0)
    assert not worker.is_alive()
    assert got == [True]


def test_checked_lock_is_a_runtime_lock_and_serves_a_session() -> None:
    checked = _locks.CheckedLock(_locks.SESSION)
    assert isinstance(checked, _speedups.LockBase)
    before = _locks.lock_check_enabled()
    _locks.enable_lock_check(True)
    try:
        session = UserSession((None, "alice"), 0.0, None, None)
    finally:
        _locks.enable_lock_check(before)
    assert isinstance(session.lock, _locks.CheckedLock)
    with session.lock:
        assert session.lock.locked()


def test_the_lock_is_the_c_lock_exactly_when_compiled() -> None:
    assert (_speedups.Lock is threading.Lock) is (not userscope.COMPILED)


def test_thread_ident_is_threading_get_ident() -> None:
    seen: list[int] = []
    worker = threading.Thread(target=lambda: seen.append(_speedups.thread_ident()))
    worker.start()
    worker.join(timeout=10)
    assert _speedups.thread_ident() == threading.get_ident()
    assert seen == [worker.ident]
    assert seen[0] != threading.get_ident()


def test_var_get_reads_the_value_then_the_default_then_refuses() -> None:
    with_default: contextvars.ContextVar[str] = contextvars.ContextVar("d", default="dflt")
    without: contextvars.ContextVar[str] = contextvars.ContextVar("n")
    assert _speedups.var_get(with_default) == "dflt"
    token = with_default.set("set")
    assert _speedups.var_get(with_default) == "set"
    with_default.reset(token)
    assert _speedups.var_get(with_default) == "dflt"
    with pytest.raises(LookupError):
        _speedups.var_get(without)
    assert contextvars.copy_context().run(lambda: without.set("x") and None) is None
    with pytest.raises(LookupError):
        _speedups.var_get(without)  # set in another context only


def test_call_passes_positional_and_keyword_arguments() -> None:
    def pair(*args: object, **kwargs: object) -> tuple[object, object]:
        return args, kwargs

    assert _speedups.call(pair, (1, 2), {"a": 3, "class": 4}) == ((1, 2), {"a": 3, "class": 4})
    assert _speedups.call(pair, (), {}) == ((), {})
    with pytest.raises(TypeError):
        _speedups.call(len, (), {"x": 1})


async def test_ready_gives_its_value_without_suspending() -> None:
    error = ValueError("a value, not raised")
    for value in (42, None, (1, 2), error, StopIteration("inside")):
        got = await _speedups.ready(value)
        assert got is value


async def test_done_gives_none_every_time() -> None:
    assert await _speedups.DONE is None
    assert await _speedups.DONE is None
    assert inspect.isawaitable(_speedups.DONE)


def test_ready_awaitables_never_yield_to_the_loop() -> None:
    # driven by hand, no event loop: the first step already finishes with the value
    for awaitable, expected in ((_speedups.ready("v"), "v"), (_speedups.DONE, None)):
        step = awaitable.__await__()
        with pytest.raises(StopIteration) as info:
            next(step)
        assert info.value.value == expected


async def test_a_ready_awaitable_is_a_coroutine_to_asyncio() -> None:
    # `async_()` may return one where its contract says coroutine: create_task takes it
    for value in (42, None, (1, 2)):
        awaitable = _speedups.ready(value)
        assert asyncio.iscoroutine(awaitable)
        assert await asyncio.create_task(awaitable) == value


def test_a_ready_awaitable_speaks_the_coroutine_protocol() -> None:
    with pytest.raises(StopIteration) as info:
        _speedups.ready((1, 2)).send(None)
    assert info.value.value == (1, 2)  # a tuple travels whole, as from a coroutine
    error = ValueError("thrown in")
    with pytest.raises(ValueError, match="thrown in") as thrown:
        _speedups.ready("v").throw(error)
    assert thrown.value is error  # thrown before the first step: propagates as it is
    with pytest.raises(KeyError):
        _speedups.ready("v").throw(KeyError)  # a class is instantiated
    assert _speedups.ready("v").close() is None


def test_monotonic_reads_the_clock_time_monotonic_reads() -> None:
    # the same clock and the same double: interleaved readings never go backwards
    readings = []
    for _ in range(1000):
        readings += [time.monotonic(), _speedups.monotonic()]
    assert readings == sorted(readings)
    assert all(type(reading) is float for reading in readings)


def test_context_slot_is_the_session_table_key() -> None:
    plain = userscope.UserExecutionContext(user_id="alice", thread_id="t-1")
    tenant = userscope.UserExecutionContext(user_id="alice", thread_id="t-1", tenant_id="acme")
    assert _speedups.context_slot(plain) == table_slot(None, "alice") == "alice"
    assert _speedups.context_slot(tenant) == table_slot("acme", "alice") == ("acme", "alice")
    derived = tenant.for_request(request_id="r-2")  # built without __init__
    assert _speedups.context_slot(derived) == ("acme", "alice")


def test_context_slot_of_an_object_without_the_fields_in_its_dict_reads_the_attributes() -> None:
    class Other:
        tenant_id = None
        user_id = "bob"

    assert _speedups.context_slot(Other()) == "bob"


def test_dict_get_looks_up_dicts_and_ordered_dicts_like_get() -> None:
    ordered: OrderedDict[object, int] = OrderedDict(a=1)
    ordered[("t", "u")] = 2
    for mapping in (ordered, dict(ordered)):
        assert _speedups.dict_get(mapping, "a") == 1
        assert _speedups.dict_get(mapping, ("t", "u")) == 2
        assert _speedups.dict_get(mapping, "missing") is None
        with pytest.raises(TypeError):
            _speedups.dict_get(mapping, ["unhashable"])

    class Mapping:
        def get(self, key: object) -> object:
            return ("got", key)

    assert _speedups.dict_get(Mapping(), "k") == ("got", "k")


def test_contended_lock_keeps_mutual_exclusion_and_never_loses_a_waiter() -> None:
    # Threads that block (no timeout), time out (short timeouts), and try without
    # blocking, all on one lock. Nobody is ever inside twice, every thread finishes, and
    # the lock ends free. (Compiled, this drives the handover path: `release` with
    # waiters hands the lock to one of them.)
    lock = _speedups.Lock()
    inside: list[int] = []
    overlaps: list[int] = []
    entered = [0]
    errors: list[BaseException] = []

    def critical() -> None:
        if inside:
            overlaps.append(threading.get_ident())
        inside.append(1)
        for _ in range(20):  # Python work under the lock: the GIL switches meanwhile
            pass
        entered[0] += 1
        inside.pop()

    def worker(style: int) -> None:
        try:
            for _ in range(300):
                if style == 0:
                    got = lock.acquire()
                elif style == 1:
                    got = lock.acquire(timeout=0.0005)
                else:
                    got = lock.acquire(False)
                if got:
                    try:
                        critical()
                    finally:
                        lock.release()
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    with hang_guard(60):
        threads = [threading.Thread(target=worker, args=(i % 3,)) for i in range(9)]
        run_threads(threads, "a waiter was lost")
    assert errors == []
    assert overlaps == []
    assert entered[0] >= 3 * 300  # every blocking acquire got the lock
    assert lock.locked() is False
    assert lock.acquire(False) is True
    lock.release()


def test_a_release_racing_with_a_waiters_timeout_hands_the_lock_over_or_frees_it() -> None:
    # The holder keeps the GIL (a busy loop) past the waiter's timeout, then releases:
    # the waiter's wait has timed out but it cannot take the GIL to leave before the
    # release sees it still waiting. The handover must not be lost: either the waiter
    # reports True (it got the lock) or the lock is free afterwards. Without the
    # waiter's last try of the baton after a timeout, such a round left the lock held
    # by nobody (until some later blocking acquire took the handover).
    lock = _speedups.Lock()
    outcomes: list[bool] = []
    with hang_guard(60):
        for _ in range(40):
            assert lock.acquire(timeout=5) is True
            ready = threading.Event()

            def wait_briefly(ready: threading.Event) -> None:
                ready.set()
                got = lock.acquire(timeout=0.001)
                outcomes.append(got)
                if got:
                    lock.release()

            waiter = threading.Thread(target=wait_briefly, args=(ready,))
            waiter.start()
            assert ready.wait(10)
            deadline = time.perf_counter() + 0.003
            while time.perf_counter() < deadline:  # holds the GIL past the timeout
                pass
            lock.release()
            waiter.join(timeout=10)
            assert not waiter.is_alive()
            # not a blocking acquire: one would take a lost handover as its own
            assert lock.locked() is False, "the handover was lost"
            assert lock.acquire(False) is True
            lock.release()
    assert len(outcomes) == 40
    assert lock.locked() is False


def test_release_of_a_lock_being_handed_over_is_refused() -> None:
    # only meaningful compiled (threading.Lock lets any thread release a held lock)
    if not userscope.COMPILED:
        pytest.skip("the C lock's handover; threading.Lock has none")
    lock = _speedups.Lock()
    lock.acquire()
    waiting = threading.Event()
    got: list[bool] = []

    def wait_for_it() -> None:
        waiting.set()
        got.append(lock.acquire(timeout=10))
        lock.release()

    with hang_guard(60):
        worker = threading.Thread(target=wait_for_it)
        worker.start()
        assert waiting.wait(10)
        deadline = time.perf_counter() + 0.05
        while time.perf_counter() < deadline:  # the worker reaches its wait meanwhile
            time.sleep(0.001)
        # hold the GIL from the release on: the worker cannot take the handover yet
        lock.release()
        with pytest.raises(RuntimeError, match="handed"):
            lock.release()
        worker.join(timeout=10)
    assert got == [True]
    assert lock.locked() is False


def test_agen_step_finishes_suspends_or_reports_a_second_yield() -> None:
    log: list[str] = []

    async def finishing() -> AsyncIterator[str]:
        yield "open"
        log.append("cleaned")

    class Pause:
        def __await__(self) -> Generator[str, None, None]:
            yield "paused"

    async def suspending() -> AsyncIterator[str]:
        yield "open"
        await Pause()
        log.append("resumed")

    async def yielding_twice() -> AsyncIterator[str]:
        yield "open"
        yield "again"

    def started(agen: Any) -> Any:
        with pytest.raises(StopIteration):
            agen.asend(None).send(None)  # the creation's first step, by hand
        return agen

    assert _speedups.agen_step(started(finishing()), None) is None
    assert log == ["cleaned"]

    outcome = _speedups.agen_step(started(suspending()), None)
    assert outcome is not None
    suspended, step, yielded = outcome
    assert (suspended, yielded) == (True, "paused")
    with pytest.raises(StopAsyncIteration):
        step.send(None)
    assert log == ["cleaned", "resumed"]

    assert _speedups.agen_step(started(yielding_twice()), None) == (False, None, None)


def test_agen_step_throws_the_body_exception_and_propagates_other_failures() -> None:
    seen: list[BaseException] = []

    async def recording() -> AsyncIterator[str]:
        try:
            yield "open"
        except ValueError as exc:
            seen.append(exc)
            raise

    async def failing() -> AsyncIterator[str]:
        yield "open"
        raise KeyError("cleanup failed")

    body = ValueError("body")
    agen = recording()
    with pytest.raises(StopIteration):
        agen.asend(None).send(None)
    with pytest.raises(ValueError, match="body") as info:
        _speedups.agen_step(agen, body)
    assert info.value is body
    assert seen == [body]

    agen = failing()
    with pytest.raises(StopIteration):
        agen.asend(None).send(None)
    with pytest.raises(KeyError, match="cleanup failed"):
        _speedups.agen_step(agen, None)


def test_the_runtime_on_its_own_locks_shares_nothing_and_closes_everything_once() -> None:
    # The pytest plugin turns the lock-order checker on, so the runtime's tests run on
    # checked locks; this one runs on the runtime's own locks (the C lock compiled):
    # threads of a few users open request scopes concurrently and resolve through them.
    from support import Log, ctx_for, make_container

    before = _locks.lock_check_enabled()
    _locks.enable_lock_check(False)
    try:
        log = Log()
        container = make_container(log)()
        sessions = userscope.UserSessions(max_requests_per_user=50)
        assert not isinstance(userscope_table(sessions).lock, _locks.CheckedLock)
    finally:
        _locks.enable_lock_check(before)
    errors: list[BaseException] = []
    agents: list[object] = []
    start = threading.Barrier(6)

    def worker(number: int) -> None:
        ctx = ctx_for(f"user-{number % 3}", request=f"r-{number}")
        try:
            start.wait(10)
            for _ in range(300):
                with sessions.request(ctx):
                    agent = container.agent()
                    assert container.agent() is agent
                    assert agent.registry.user_id == ctx.user_id
                    agents.append(agent)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    with hang_guard(60):
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
        run_threads(threads, "a scope hung")
    assert errors == []
    assert len({id(agent) for agent in agents}) == len(agents) == 6 * 300  # all alive
    opened = sum(event.startswith("open bridge") for event in log.events)
    closed = sum(event.startswith("close bridge") for event in log.events)
    assert opened == closed == 6 * 300
    stats = sessions.stats()
    assert (stats.open_scopes, stats.requests, stats.connections) == (0, 0, 0)
    assert stats.users == 3
    sessions.close()


# -- screened: the WebSocket receive guard's steady path --------------------------------

TEXT = {"type": "websocket.receive", "text": "hello", "bytes": None}
BIG = {"type": "websocket.receive", "text": "x" * 100, "bytes": None}
REFUSED = {"type": "websocket.disconnect", "code": 1009}


class Receive:
    """A server's receive: hands out ``messages``, suspending ``pauses`` times first."""

    def __init__(self, *messages: Any, pauses: int = 0) -> None:
        self.messages = list(messages)
        self.pauses = pauses
        self.cancelled = 0

    async def __call__(self) -> Any:
        try:
            for _ in range(self.pauses):
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return self.messages.pop(0)


class Slow:
    """The slow path: records what it was given and refuses it."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    async def __call__(self, message: Any) -> Any:
        self.seen.append(message)
        await asyncio.sleep(0)  # it may suspend too
        return REFUSED


@pytest.mark.parametrize("pauses", [0, 2])
async def test_screened_hands_back_a_small_text_as_it_is(pauses: int) -> None:
    slow = Slow()
    message = await _speedups.screened(Receive(TEXT, pauses=pauses)(), 5, slow)
    assert message is TEXT
    assert slow.seen == []


@pytest.mark.parametrize(
    "message",
    [
        BIG,  # a text over the limit
        {"type": "websocket.receive", "bytes": b"hi", "text": None},  # binary
        {"type": "websocket.disconnect", "code": 1000},  # no text at all
        OrderedDict(TEXT),  # not a dict exactly: the slow path decides
        {"type": "websocket.receive", "text": b"hello"},  # not a str
    ],
)
@pytest.mark.parametrize("pauses", [0, 2])
async def test_screened_sends_anything_else_to_the_slow_path(message: Any, pauses: int) -> None:
    slow = Slow()
    assert await _speedups.screened(Receive(message, pauses=pauses)(), 5, slow) is REFUSED
    assert slow.seen == [message]


async def test_screened_limit_is_inclusive() -> None:
    slow = Slow()
    assert await _speedups.screened(Receive(TEXT)(), len("hello"), slow) is TEXT
    assert await _speedups.screened(Receive(TEXT)(), len("hello") - 1, slow) is REFUSED


async def test_screened_is_a_coroutine_to_asyncio_and_runs_as_a_task() -> None:
    awaitable = _speedups.screened(Receive(TEXT, pauses=1)(), 5, Slow())
    assert asyncio.iscoroutine(awaitable)
    # compiled, the C awaitable (no coroutine frame); pure, the coroutine it stands for
    assert (type(awaitable).__name__ == "Screened") is userscope.COMPILED
    assert await asyncio.create_task(awaitable) is TEXT
    big = asyncio.create_task(_speedups.screened(Receive(BIG, pauses=1)(), 5, Slow()))
    assert await big is REFUSED


async def test_a_cancellation_reaches_the_receive_and_propagates() -> None:
    receive, slow = Receive(TEXT, pauses=5), Slow()
    task = asyncio.create_task(_speedups.screened(receive(), 5, slow))
    await asyncio.sleep(0)  # suspended in the receive
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert receive.cancelled == 1
    assert slow.seen == []


class Pause:
    """Suspends once (yields ``"paused"``), with no event loop needed."""

    def __await__(self) -> Generator[str, None, None]:
        yield "paused"


def test_a_message_returned_despite_a_throw_is_screened() -> None:
    # a receive that swallows what is thrown in and returns a message: screened as any
    async def swallowing() -> Any:
        try:
            await Pause()
        except asyncio.CancelledError:
            return BIG
        raise AssertionError("not reached")

    slow = Slow()
    awaitable = _speedups.screened(swallowing(), 5, slow)
    assert awaitable.send(None) == "paused"  # suspended in the receive
    assert awaitable.throw(asyncio.CancelledError()) is None  # now suspended in `slow`
    assert slow.seen == [BIG]
    with pytest.raises(StopIteration) as stopped:
        awaitable.send(None)
    assert stopped.value.value is REFUSED


async def test_errors_of_the_receive_and_of_the_slow_path_propagate() -> None:
    async def broken() -> Any:
        raise OSError("the connection broke")

    async def failing(message: Any) -> Any:
        raise ValueError("slow path failed")

    with pytest.raises(OSError, match="connection broke"):
        await _speedups.screened(broken(), 5, Slow())
    with pytest.raises(ValueError, match="slow path failed"):
        await _speedups.screened(Receive(BIG)(), 5, failing)


def test_closing_screened_closes_the_receive() -> None:
    steps: list[str] = []

    async def receive() -> Any:
        try:
            await Pause()
        finally:
            steps.append("receive closed")
        return TEXT

    slow = Slow()
    awaitable = _speedups.screened(receive(), 5, slow)
    assert awaitable.send(None) == "paused"
    awaitable.close()
    assert steps == ["receive closed"]
    awaitable.close()  # again: nothing left to close
    assert slow.seen == []
