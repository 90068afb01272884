"""Credentials that expire on an open WebSocket, driven by direct ASGI calls (no server).

The middleware bounds a pending receive by the connection's credential expiry. On asyncio
that is one timer per connection (`ExpiryDeadline`: it cancels the task waiting in
``receive`` and the receive takes its own cancellation back); elsewhere (and here, as the
``fallback`` parameter) each receive runs under its own ``anyio.move_on_after``. Both must
keep the same contract, so most tests run on both:

- a receive pending at expiry ends then: the socket is closed with ``1008`` and the app gets
  ``websocket.disconnect`` (code ``1008``); sends and ``message_scope`` are refused after it;
- an expiry while a message is being handled interrupts nothing: the next receive, send and
  ``message_scope`` see it;
- a cancellation from elsewhere always propagates, also when it races the expiry, and the
  app's own timeouts around ``receive`` keep working;
- nothing of the deadline outlives the connection.

Every test is bounded (``asyncio.timeout`` inside, a faulthandler dump if even that hangs);
assertions are on outcomes, never on durations.
"""

from __future__ import annotations

import asyncio
import faulthandler
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from adapter_support import websocket_scope
from dependency_injector import containers
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

import userscope as us
from userscope.adapters.fastapi import (
    CredentialsExpiredError,
    _middleware,
    install,
    message_scope,
    set_credentials_expiry,
)
from userscope.adapters.fastapi._middleware import ExpiryDeadline

GUARD = 20.0  # seconds: the bound of every test (the stress test's 200 connections included)
SHORT = 0.5  # seconds: an expiry that passes during the test
# the stress test's expiry for connections that must receive a message first (200 of
# them start at once on a loaded box: the first message must come through before it)
STRESS_SHORT = 1.5
LONG = 600.0  # seconds: an expiry that does not


@contextmanager
def hang_guard(seconds: float = GUARD + 30) -> Iterator[None]:
    """Dump every stack to stderr if the block outlives its own ``asyncio.timeout``."""
    faulthandler.dump_traceback_later(seconds, exit=False, file=sys.stderr)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def text(value: str) -> dict[str, Any]:
    return {"type": "websocket.receive", "text": value, "bytes": None}


class Peer:
    """The server side of one socket as the app sees it: ``receive`` waits on an inbox."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.inbox.put_nowait({"type": "websocket.connect"})
        self.sent: list[dict[str, Any]] = []
        self.waiting = asyncio.Event()  # set while a receive waits on an empty inbox

    async def receive(self) -> dict[str, Any]:
        if self.inbox.empty():
            self.waiting.set()
        try:
            return await self.inbox.get()
        finally:
            self.waiting.clear()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def closes(self) -> list[int]:
        return [m["code"] for m in self.sent if m["type"] == "websocket.close"]


def ws_scope(expires_in: float, conn: str) -> dict[str, Any]:
    return websocket_scope(
        [(b"x-expires-in", str(expires_in).encode()), (b"x-conn", conn.encode())]
    )


@dataclass
class Outcome:
    """What the endpoint of one connection saw."""

    conn: str = "0"  # the connection's ``x-conn`` header
    received: list[str] = field(default_factory=list)
    disconnect: int | None = None  # the code of the `websocket.disconnect` it got
    send_refused: int | None = None  # the code of the WebSocketDisconnect a send raised
    scope_refused: CredentialsExpiredError | None = None
    app_timeouts: list[str] = field(default_factory=list)
    handled_past_expiry: bool = False
    cleanups: list[str] = field(default_factory=list)
    cancelling_seen: list[int] = field(default_factory=list)


Endpoint = Callable[[WebSocket, Outcome], Any]


class Harness:
    """An installed app whose connections each record an `Outcome` (by the ``x-expires-in``
    header, each connection's credentials expire that many seconds after it opens)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.outcomes: list[Outcome] = []
        self.deadlines: list[tuple[ExpiryDeadline, asyncio.TimerHandle | None]] = []

        def channel(ctx: us.UserExecutionContext) -> Iterator[list[str]]:
            cleanups: list[str] = []
            try:
                yield cleanups  # the connection's Outcome.cleanups
            finally:  # the body's exception (a cancellation) is thrown in at the yield
                cleanups.append("channel")

        class Container(containers.DeclarativeContainer):
            context = us.CurrentContext()
            channel_ = us.ConnectionScoped(channel, context)

        self.container = Container()
        self.sessions = us.UserSessions()

        async def authenticate(connection: Any) -> us.UserExecutionContext:
            expires_in = float(connection.headers["x-expires-in"])
            set_credentials_expiry(connection, time.time() + expires_in)
            return us.UserExecutionContext(user_id="alice", thread_id="t-1")

        app = FastAPI()

        @app.websocket("/ws")
        async def ws(websocket: WebSocket) -> None:
            outcome = Outcome(conn=websocket.headers["x-conn"])
            self.outcomes.append(outcome)
            # opened in the CONNECTION scope, cleaned up at its end
            outcome.cleanups = self.container.channel_()
            try:
                await endpoint(websocket, outcome)
            finally:
                outcome.cleanups.append("endpoint")

        install(app, self.container, self.sessions, authenticate=authenticate)
        self.app = app

    async def serve(self, peer: Peer, expires_in: float, conn: str = "0") -> None:
        await self.app(ws_scope(expires_in, conn), peer.receive, peer.send)

    def record_deadlines(self, monkeypatch: pytest.MonkeyPatch, mechanism: str) -> None:
        if mechanism == "fallback":
            monkeypatch.setattr(_middleware, "start_deadline", lambda expires_at: None)
            return
        start = _middleware.start_deadline

        def recording(expires_at: float) -> ExpiryDeadline | None:
            deadline = start(expires_at)
            assert deadline is not None, "the asyncio loop must get the per-connection timer"
            self.deadlines.append((deadline, deadline.handle))
            return deadline

        monkeypatch.setattr(_middleware, "start_deadline", recording)

    def assert_nothing_outlived(self, mechanism: str, connections: int) -> None:
        """Every connection's scope closed and (on the timer) its timer is gone."""
        assert self.sessions.stats().connections == 0
        if mechanism == "deadline":
            assert len(self.deadlines) == connections
            for deadline, first_handle in self.deadlines:
                assert deadline.handle is None
                assert deadline.waiter is None
                assert deadline.fired is None
                assert first_handle is not None
            assert pending_expiry_timers() == []


def pending_expiry_timers() -> list[asyncio.TimerHandle]:
    """Timers of ours still scheduled on the running loop (its private heap: the direct
    evidence that nothing of a connection is left behind)."""
    loop = asyncio.get_running_loop()
    scheduled: list[asyncio.TimerHandle] = loop._scheduled  # type: ignore[attr-defined]
    return [
        handle
        for handle in scheduled
        if not handle.cancelled()
        and getattr(handle._callback, "__func__", None) is ExpiryDeadline._expire  # type: ignore[attr-defined]
    ]


async def wait_past(expires_in_from: float, expires_in: float) -> None:
    """Wait until the wall clock has passed the expiry, and a little longer, so that any
    timer for it has run (the loop's clock and the wall clock may differ slightly)."""
    await asyncio.sleep(max(0.0, expires_in_from + expires_in - time.time()) + 0.05)


async def receive_until_disconnect(websocket: WebSocket, outcome: Outcome) -> None:
    """The plain endpoint: echo texts until the disconnect, then try one more send."""
    await websocket.accept()
    while True:
        message = await websocket.receive()
        outcome.cancelling_seen.append(_cancelling())
        if message["type"] == "websocket.disconnect":
            outcome.disconnect = message.get("code")
            break
        outcome.received.append(message["text"])
        await websocket.send_text(message["text"])
    try:
        await websocket.send_text("after the disconnect")
    except WebSocketDisconnect as exc:
        outcome.send_refused = exc.code


def _cancelling() -> int:
    task = asyncio.current_task()
    assert task is not None
    return task.cancelling()


MECHANISMS = pytest.mark.parametrize("mechanism", ["deadline", "fallback"])


@MECHANISMS
async def test_a_receive_idle_at_expiry_ends_with_1008_and_a_disconnect(
    monkeypatch: pytest.MonkeyPatch, mechanism: str
) -> None:
    harness = Harness(receive_until_disconnect)
    harness.record_deadlines(monkeypatch, mechanism)
    peer = Peer()
    peer.inbox.put_nowait(text("before"))
    with hang_guard():
        async with asyncio.timeout(GUARD):
            await harness.serve(peer, SHORT)  # nothing arrives after "before": idle at exp
            assert pending_expiry_timers() == []
    outcome = harness.outcomes[0]
    assert outcome.received == ["before"]
    assert outcome.disconnect == 1008
    assert outcome.send_refused == 1008
    assert peer.closes() == [1008]
    assert "expired" in peer.sent[-1]["reason"]
    assert outcome.cancelling_seen == [0, 0]  # no cancellation request left on the task
    assert outcome.cleanups == ["endpoint", "channel"]
    harness.assert_nothing_outlived(mechanism, 1)


@MECHANISMS
async def test_an_expiry_while_a_message_is_handled_interrupts_nothing(
    monkeypatch: pytest.MonkeyPatch, mechanism: str
) -> None:
    """The handling goes on past ``exp``; then a send is refused, ``message_scope``
    refuses, and the next receive gets the disconnect."""

    async def endpoint(websocket: WebSocket, outcome: Outcome) -> None:
        await websocket.accept()
        opened = time.time()
        message = await websocket.receive()
        outcome.received.append(message["text"])
        await wait_past(opened, SHORT)  # handling the message while the credentials expire
        outcome.handled_past_expiry = True
        try:
            await websocket.send_text("too late")
        except WebSocketDisconnect as exc:
            outcome.send_refused = exc.code
        try:
            async with message_scope(websocket):
                pass  # pragma: no cover - refused
        except CredentialsExpiredError as exc:
            outcome.scope_refused = exc
        after = await websocket.receive()
        outcome.disconnect = after.get("code") if after["type"] == "websocket.disconnect" else -1

    harness = Harness(endpoint)
    harness.record_deadlines(monkeypatch, mechanism)
    peer = Peer()
    peer.inbox.put_nowait(text("work"))
    peer.inbox.put_nowait(text("queued behind the expiry"))  # never handed to the app
    with hang_guard():
        async with asyncio.timeout(GUARD):
            await harness.serve(peer, SHORT)
    outcome = harness.outcomes[0]
    assert outcome.received == ["work"]
    assert outcome.handled_past_expiry
    assert outcome.send_refused == 1008
    assert outcome.scope_refused is not None
    assert outcome.disconnect == 1008
    assert peer.closes() == [1008]
    assert [m["type"] for m in peer.sent] == ["websocket.accept", "websocket.close"]
    harness.assert_nothing_outlived(mechanism, 1)


@MECHANISMS
async def test_cancelling_the_connection_while_it_receives_propagates_and_cleans_up(
    monkeypatch: pytest.MonkeyPatch, mechanism: str
) -> None:
    harness = Harness(receive_until_disconnect)
    harness.record_deadlines(monkeypatch, mechanism)
    peer = Peer()
    with hang_guard():
        async with asyncio.timeout(GUARD):
            task = asyncio.create_task(harness.serve(peer, LONG))
            await peer.waiting.wait()  # the endpoint waits in receive, long before exp
            if mechanism == "deadline":
                assert harness.deadlines[0][0].waiter is task
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert task.cancelled()
    outcome = harness.outcomes[0]
    assert outcome.disconnect is None  # not mistaken for the expiry
    assert peer.closes() == []
    assert outcome.cleanups == ["endpoint", "channel"]
    harness.assert_nothing_outlived(mechanism, 1)
    if mechanism == "deadline":
        first_handle = harness.deadlines[0][1]
        assert first_handle is not None
        assert first_handle.cancelled()


@pytest.mark.parametrize("order", ["cancel after the expiry", "cancel before the expiry"])
async def test_a_cancellation_racing_the_expiry_still_propagates(
    monkeypatch: pytest.MonkeyPatch, order: str
) -> None:
    """The deadline's callback and an outer ``Task.cancel`` in the same loop iteration,
    before the receive resumes, in either order: the outer cancellation wins."""
    harness = Harness(receive_until_disconnect)
    harness.record_deadlines(monkeypatch, "deadline")
    expire = ExpiryDeadline._expire
    tasks: list[asyncio.Task[None]] = []

    def racing(self: ExpiryDeadline) -> None:
        if time.time() < self.expires_at:
            expire(self)  # early by the wall clock: it reschedules itself
            return
        if order == "cancel before the expiry":
            tasks[0].cancel()
        expire(self)
        if order == "cancel after the expiry":
            assert self.fired is tasks[0]  # the callback did cancel the waiting task
            tasks[0].cancel()

    monkeypatch.setattr(ExpiryDeadline, "_expire", racing)
    peer = Peer()
    with hang_guard():
        async with asyncio.timeout(GUARD):
            tasks.append(asyncio.create_task(harness.serve(peer, SHORT)))
            with pytest.raises(asyncio.CancelledError):
                await tasks[0]
    assert tasks[0].cancelled()
    outcome = harness.outcomes[0]
    assert outcome.disconnect is None  # the endpoint never saw an expiry disconnect
    assert outcome.cleanups == ["endpoint", "channel"]
    harness.assert_nothing_outlived("deadline", 1)


@MECHANISMS
async def test_the_apps_own_timeouts_around_receive_keep_working(
    monkeypatch: pytest.MonkeyPatch, mechanism: str
) -> None:
    """anyio's ``move_on_after`` and ``fail_after`` and asyncio's ``timeout`` around a
    receive on a connection whose credentials expire (later) time out as they would
    without the deadline, leave no cancellation request behind, and the connection goes
    on."""
    ready = asyncio.Event()

    async def endpoint(websocket: WebSocket, outcome: Outcome) -> None:
        await websocket.accept()
        with anyio.move_on_after(0.05) as scope:
            await websocket.receive()
        if scope.cancelled_caught:
            outcome.app_timeouts.append("move_on_after")
        outcome.cancelling_seen.append(_cancelling())
        try:
            with anyio.fail_after(0.05):
                await websocket.receive()
        except TimeoutError:
            outcome.app_timeouts.append("fail_after")
        outcome.cancelling_seen.append(_cancelling())
        try:
            async with asyncio.timeout(0.05):
                await websocket.receive()
        except TimeoutError:
            outcome.app_timeouts.append("asyncio.timeout")
        outcome.cancelling_seen.append(_cancelling())
        outcome.received.append("ready")
        ready.set()
        message = await websocket.receive()  # now the peer sends
        outcome.received.append(message["text"])
        message = await websocket.receive()
        outcome.disconnect = message.get("code")

    harness = Harness(endpoint)
    harness.record_deadlines(monkeypatch, mechanism)
    peer = Peer()
    with hang_guard():
        async with asyncio.timeout(GUARD):
            task = asyncio.create_task(harness.serve(peer, LONG))
            await ready.wait()
            peer.inbox.put_nowait(text("hello"))
            peer.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
            await task
    outcome = harness.outcomes[0]
    assert outcome.app_timeouts == ["move_on_after", "fail_after", "asyncio.timeout"]
    if mechanism == "deadline":
        assert outcome.cancelling_seen == [0, 0, 0]
    # (the fallback is for loops without Task.cancelling; on asyncio with anyio 4.2, the
    # FastAPI 0.110 leg, its move_on_after nested in the app's leaves requests counted)
    assert outcome.received == ["ready", "hello"]
    assert outcome.disconnect == 1000
    assert peer.closes() == []
    harness.assert_nothing_outlived(mechanism, 1)


@pytest.mark.parametrize("order", ["app scope first", "expiry first"])
async def test_the_apps_cancel_scope_and_the_expiry_in_the_same_iteration(
    monkeypatch: pytest.MonkeyPatch, order: str
) -> None:
    """The app's anyio scope around ``receive`` is cancelled in the same loop iteration as
    the expiry: the connection is not cancelled, the app's scope ends as it would, and the
    app gets the expiry's disconnect (at once or at its next receive)."""
    scopes: list[anyio.CancelScope] = []

    async def endpoint(websocket: WebSocket, outcome: Outcome) -> None:
        await websocket.accept()
        message: dict[str, Any] | None = None
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            message = await websocket.receive()
        if scope.cancelled_caught:
            outcome.app_timeouts.append("scope")
            message = await websocket.receive()
        assert message is not None
        outcome.disconnect = message.get("code")
        outcome.cancelling_seen.append(_cancelling())

    expire = ExpiryDeadline._expire

    def racing(self: ExpiryDeadline) -> None:
        if time.time() < self.expires_at:
            expire(self)
            return
        if order == "app scope first":
            scopes[0].cancel()
        expire(self)
        if order == "expiry first":
            scopes[0].cancel()

    harness = Harness(endpoint)
    harness.record_deadlines(monkeypatch, "deadline")
    monkeypatch.setattr(ExpiryDeadline, "_expire", racing)
    peer = Peer()
    with hang_guard():
        async with asyncio.timeout(GUARD):
            await harness.serve(peer, SHORT)  # returns: the connection was not cancelled
    outcome = harness.outcomes[0]
    assert outcome.disconnect == 1008
    assert outcome.cancelling_seen == [0]
    assert peer.closes() == [1008]
    if order == "app scope first":
        assert outcome.app_timeouts == ["scope"]  # its own cancellation reached the app
    harness.assert_nothing_outlived("deadline", 1)


@MECHANISMS
async def test_many_connections_each_end_the_way_they_should(
    monkeypatch: pytest.MonkeyPatch, mechanism: str
) -> None:
    """200 concurrent connections, four kinds of fate: expiry while receiving (nothing ever
    arrives), expiry while handling a message, cancelled while receiving, and a normal
    end. Each gets its own outcome."""
    kinds = ["expire receiving", "expire handling", "cancelled", "normal"]
    per_kind = 50

    async def endpoint(websocket: WebSocket, outcome: Outcome) -> None:
        await websocket.accept()
        opened = time.time()
        while True:
            message = await websocket.receive()
            outcome.cancelling_seen.append(_cancelling())
            if message["type"] == "websocket.disconnect":
                outcome.disconnect = message.get("code")
                return
            outcome.received.append(message["text"])
            if message["text"] == "slow":
                await wait_past(opened, STRESS_SHORT)
                outcome.handled_past_expiry = True
            try:
                await websocket.send_text(message["text"])
            except WebSocketDisconnect as exc:
                outcome.send_refused = exc.code

    harness = Harness(endpoint)
    harness.record_deadlines(monkeypatch, mechanism)
    peers: list[tuple[str, Peer]] = []
    tasks: list[asyncio.Task[None]] = []
    with hang_guard():
        async with asyncio.timeout(GUARD):
            for i in range(per_kind * len(kinds)):
                kind = kinds[i % len(kinds)]
                peer = Peer()
                expires_in = LONG
                if kind == "expire receiving":
                    expires_in = SHORT
                elif kind == "expire handling":
                    peer.inbox.put_nowait(text("slow"))
                    expires_in = STRESS_SHORT
                elif kind == "normal":
                    peer.inbox.put_nowait(text("hello"))
                    peer.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
                peers.append((kind, peer))
                tasks.append(asyncio.create_task(harness.serve(peer, expires_in, f"{i}")))
            for (kind, peer), task in zip(peers, tasks, strict=True):
                if kind == "cancelled":
                    await peer.waiting.wait()
                    task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert pending_expiry_timers() == []
    assert len(harness.outcomes) == len(peers)
    # per kind: (ended by, disconnect code the app got, closes sent, send refused with,
    # messages the app received, handled a message past exp)
    expected = {
        "expire receiving": ("returned", 1008, [1008], None, 0, False),
        "expire handling": ("returned", 1008, [1008], 1008, 1, True),
        "cancelled": ("cancelled", None, [], None, 0, False),
        "normal": ("returned", 1000, [], None, 1, False),
    }
    for i, ((kind, peer), task, result) in enumerate(zip(peers, tasks, results, strict=True)):
        outcome = next(o for o in harness.outcomes if o.conn == f"{i}")
        ended = "cancelled" if isinstance(result, asyncio.CancelledError) else "returned"
        if ended == "returned":
            assert result is None, (kind, i, result)
        else:
            assert task.cancelled(), (kind, i)
        observed = (
            ended,
            outcome.disconnect,
            peer.closes(),
            outcome.send_refused,
            len(outcome.received),
            outcome.handled_past_expiry,
        )
        assert observed == expected[kind], (kind, i)
        assert outcome.cleanups == ["endpoint", "channel"], (kind, i)
        assert set(outcome.cancelling_seen) <= {0}, (kind, i)
    harness.assert_nothing_outlived(mechanism, len(peers))


async def test_the_timer_is_armed_once_per_connection_not_per_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ten messages under expiring credentials: one timer for the connection, no timer
    and no cancel scope per receive (``anyio.move_on_after`` is never called)."""
    harness = Harness(receive_until_disconnect)
    harness.record_deadlines(monkeypatch, "deadline")
    scopes: list[float] = []
    move_on_after = anyio.move_on_after

    def counting(delay: float | None, shield: bool = False) -> anyio.CancelScope:
        scopes.append(delay or 0.0)
        return move_on_after(delay, shield)

    monkeypatch.setattr(anyio, "move_on_after", counting)
    peer = Peer()
    for i in range(10):
        peer.inbox.put_nowait(text(f"{i}"))
    peer.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
    loop = asyncio.get_running_loop()
    call_later = loop.call_later
    timers: list[float] = []

    def counting_call_later(delay: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        timers.append(delay)
        return call_later(delay, callback, *args)

    monkeypatch.setattr(loop, "call_later", counting_call_later)
    with hang_guard():
        async with asyncio.timeout(GUARD):
            await harness.serve(peer, LONG)
    assert harness.outcomes[0].received == [f"{i}" for i in range(10)]
    assert scopes == []
    assert len(timers) == 1
    harness.assert_nothing_outlived("deadline", 1)


async def test_a_reader_task_of_the_app_and_a_second_concurrent_receive_both_end_at_expiry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The app reads in child tasks of its own task group (two at once: the second receive
    is bounded by the fallback). At expiry each reader gets the ``1008`` disconnect; the
    connection's own task is not cancelled and returns."""

    async def endpoint(websocket: WebSocket, outcome: Outcome) -> None:
        await websocket.accept()

        async def reader() -> None:
            message = await websocket.receive()
            outcome.received.append(f"{message['type']} {message.get('code')}")
            outcome.cancelling_seen.append(_cancelling())

        async with anyio.create_task_group() as group:
            group.start_soon(reader)
            group.start_soon(reader)
        outcome.disconnect = 1008 if outcome.received else None

    harness = Harness(endpoint)
    harness.record_deadlines(monkeypatch, "deadline")
    peer = Peer()
    with hang_guard():
        async with asyncio.timeout(GUARD):
            await harness.serve(peer, SHORT)
    outcome = harness.outcomes[0]
    assert outcome.received == ["websocket.disconnect 1008"] * 2
    assert outcome.cancelling_seen == [0, 0]
    assert peer.closes() == [1008]
    assert outcome.cleanups == ["endpoint", "channel"]
    harness.assert_nothing_outlived("deadline", 1)


async def test_the_timer_waits_for_the_wall_clock_when_it_fires_early(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The credentials are in wall-clock time, the timer in the loop's: when the timer
    fires while the wall clock is still before ``exp`` (it lags, or was set back), it
    re-arms itself and cancels nothing; once the wall clock is past ``exp`` it cancels
    the waiting receive."""
    clock = {"now": 1_000.0}
    monkeypatch.setattr(_middleware, "time", type("Clock", (), {"time": lambda: clock["now"]}))
    release = asyncio.Event()
    waiter = asyncio.create_task(release.wait())
    deadline = ExpiryDeadline(asyncio.get_running_loop(), expires_at=1_000.0)

    def fire() -> None:
        """What the loop does when the timer is due: the handle runs (here, by hand)."""
        assert deadline.handle is not None
        deadline.handle.cancel()
        deadline._expire()

    try:
        deadline.waiter = waiter
        clock["now"] = 999.9  # the wall clock went back before the loop's timer fired
        fire()
        assert deadline.handle is not None  # re-armed for the 0.1 s left
        assert deadline.fired is None
        assert not waiter.cancelled()
        clock["now"] = 1_000.0
        fire()
        assert deadline.handle is None
        assert deadline.fired is waiter
        with pytest.raises(asyncio.CancelledError):
            await waiter
    finally:
        deadline.cancel()
        waiter.cancel()
    assert pending_expiry_timers() == []


def test_off_asyncio_there_is_no_deadline_and_receives_take_the_fallback() -> None:
    """No running asyncio loop (anyio's trio backend, say): no timer is armed, and each
    receive is bounded by its own ``anyio.move_on_after``."""
    assert _middleware.start_deadline(time.time() + LONG) is None


def test_on_uvloop_expiry_and_cancellation_end_the_way_they_do_on_asyncio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uvicorn runs on uvloop when it is installed: its timers and tasks carry the same
    deadline (an idle receive at expiry ends with 1008, a cancelled connection propagates
    its cancellation; no timer is left either way)."""
    uvloop = pytest.importorskip("uvloop")
    harness = Harness(receive_until_disconnect)
    harness.record_deadlines(monkeypatch, "deadline")

    async def scenario() -> tuple[Peer, Peer, asyncio.Task[None]]:
        async with asyncio.timeout(GUARD):
            expiring = Peer()
            await harness.serve(expiring, SHORT)
            cancelled = Peer()
            task = asyncio.create_task(harness.serve(cancelled, LONG))
            await cancelled.waiting.wait()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return expiring, cancelled, task

    loop = uvloop.new_event_loop()
    try:
        with hang_guard():
            expiring, cancelled, task = loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert [o.disconnect for o in harness.outcomes] == [1008, None]
    assert expiring.closes() == [1008]
    assert cancelled.closes() == []
    assert task.cancelled()
    assert [o.cleanups for o in harness.outcomes] == [["endpoint", "channel"]] * 2
    assert len(harness.deadlines) == 2
    for deadline, _ in harness.deadlines:
        assert deadline.handle is None
        assert deadline.waiter is None
        assert deadline.fired is None
    assert harness.sessions.stats().connections == 0


class SwallowingPeer(Peer):
    """A server whose ``receive`` does not let a cancellation out: it answers with a
    message instead (``swallow``), or raises an error of its own (``convert``)."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    async def receive(self) -> dict[str, Any]:
        try:
            return await super().receive()
        except asyncio.CancelledError:
            if self.mode == "swallow":
                return text("handed over although cancelled")
            raise RuntimeError("the server's receive failed") from None


async def test_a_server_receive_that_swallows_the_cancellation_still_ends_at_expiry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The expiry does not depend on the server letting the cancellation through: the
    receive still ends as the expiry, and the task keeps no cancellation request."""
    harness = Harness(receive_until_disconnect)
    harness.record_deadlines(monkeypatch, "deadline")
    peer = SwallowingPeer("swallow")
    with hang_guard():
        async with asyncio.timeout(GUARD):
            await harness.serve(peer, SHORT)
    outcome = harness.outcomes[0]
    assert outcome.received == []  # the message handed over at expiry is not the app's
    assert outcome.disconnect == 1008
    assert outcome.cancelling_seen == [0]
    assert peer.closes() == [1008]
    harness.assert_nothing_outlived("deadline", 1)


async def test_a_server_receive_that_fails_on_the_cancellation_fails_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server error raised instead of the cancellation propagates as that error (the
    connection ends with 1011 as for any failure), with the expiry's cancellation
    request taken back."""
    harness = Harness(receive_until_disconnect)
    harness.record_deadlines(monkeypatch, "deadline")
    peer = SwallowingPeer("convert")
    with hang_guard():
        async with asyncio.timeout(GUARD):
            task = asyncio.create_task(harness.serve(peer, SHORT))
            await task
    assert task.cancelling() == 0
    assert harness.outcomes[0].disconnect is None
    assert peer.closes() == [1011]
    assert harness.outcomes[0].cleanups == ["endpoint", "channel"]
    harness.assert_nothing_outlived("deadline", 1)
