"""`ScopeObserver`: the runtime reports scopes, instances, cleanups, refusals, ended users,
sweeps and leaks, at the documented moments, never with a runtime lock held.

Only the public protocol and real scopes are used, so these tests hold for any runtime
that wires the observer.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import threading
from typing import Any

import pytest
from dependency_injector import containers

import userscope as us
from userscope.container._observe import UserKey


class Recorder(us.ScopeObserver):
    """Records every call; optionally probes that no runtime lock is held."""

    def __init__(self, sessions: us.UserSessions | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.sessions = sessions
        self.blocked: list[str] = []
        self.tokens = 0

    def _probe(self, method: str, user_id: str | None) -> None:
        """From another thread, take the table lock (stats) and, for a user, the session
        lock (enter that user's USER scope); a lock held here blocks it."""
        sessions = self.sessions
        if sessions is None:
            return

        def probe() -> None:
            sessions.stats()
            if user_id is not None:
                with sessions.user(us.UserExecutionContext(user_id=user_id, thread_id="probe")):
                    pass

        thread = threading.Thread(target=probe, daemon=True)
        thread.start()
        thread.join(timeout=10)
        if thread.is_alive():
            self.blocked.append(method)

    def scope_opened(self, level: us.Scope, ctx: us.UserExecutionContext) -> object:
        self.tokens += 1
        token = f"{level.name}-{self.tokens}"
        self.calls.append(("opened", level, ctx.user_id, token))
        return token

    def scope_closed(self, token: object, level: us.Scope, error: BaseException | None) -> None:
        self.calls.append(("closed", token, level, type(error).__name__ if error else None))

    def instance_created(self, token: object, provider: str, level: us.Scope) -> None:
        self.calls.append(("created", token, provider, level))
        self._probe("instance_created", None)

    def cleanup_finished(
        self,
        token: object,
        provider: str,
        level: us.Scope,
        seconds: float,
        error: BaseException | None,
    ) -> None:
        assert seconds >= 0
        failure = type(error).__name__ if error else None
        self.calls.append(("cleanup", token, provider, level, failure))

    def limit_refused(self, limit: str, user: UserKey | None) -> None:
        self.calls.append(("refused", limit, user))
        self._probe("limit_refused", user[1] if user else None)

    def user_ended(self, user: UserKey, reason: str) -> None:
        self.calls.append(("ended", user, reason))
        self._probe("user_ended", None)

    def swept(self, closed: int, seconds: float) -> None:
        assert seconds >= 0
        self.calls.append(("swept", closed))

    def leak_detected(self, provider: str, level: us.Scope, type_name: str) -> None:
        self.calls.append(("leak", provider, level, type_name))

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] == kind]


def _fail() -> Any:
    yield "x"
    raise RuntimeError("disk gone")


class Box:
    pass


class C(containers.DeclarativeContainer):
    context = us.CurrentContext()
    registry = us.UserScoped(dict)
    bridge = us.ConnectionScoped(list)
    agent = us.RequestScoped(dict, registry=registry, bridge=bridge)
    flaky = us.RequestScoped(_fail)
    box = us.RequestScoped(Box)


def ctx(user: str, tenant: str | None = None) -> us.UserExecutionContext:
    return us.UserExecutionContext(user_id=user, thread_id="t", tenant_id=tenant)


def test_scopes_instances_and_cleanups_are_reported_in_order() -> None:
    sessions = us.UserSessions()
    recorder = Recorder(sessions)
    sessions.observer = recorder
    assert sessions.observer is recorder
    with pytest.raises(us.CleanupError) as caught:
        with sessions.connection(ctx("alice", "acme")), sessions.request(ctx("alice", "acme")):
            C.agent()
            C.flaky()
    assert str(caught.value.exceptions[0]) == "disk gone"
    assert [c[:3] for c in recorder.of("opened")] == [
        ("opened", us.Scope.USER, "alice"),
        ("opened", us.Scope.CONNECTION, "alice"),
        ("opened", us.Scope.REQUEST, "alice"),
    ]
    user_token, conn_token, req_token = (c[3] for c in recorder.of("opened"))
    created = {(c[1], c[2], c[3]) for c in recorder.of("created")}
    assert created == {
        (user_token, "C.registry", us.Scope.USER),
        (conn_token, "C.bridge", us.Scope.CONNECTION),
        (req_token, "C.agent", us.Scope.REQUEST),
        (req_token, "C.flaky", us.Scope.REQUEST),
    }
    assert recorder.of("cleanup") == [
        ("cleanup", req_token, "C.flaky", us.Scope.REQUEST, "RuntimeError")
    ]
    closed = recorder.of("closed")
    assert closed[0] == ("closed", req_token, us.Scope.REQUEST, "RuntimeError")
    assert closed[1] == ("closed", conn_token, us.Scope.CONNECTION, None)
    # the user's scope stays open between connections; closing it reports the end
    sessions.close_user("alice", tenant_id="acme")
    assert recorder.of("closed")[-1] == ("closed", user_token, us.Scope.USER, None)
    assert recorder.of("ended") == [("ended", ("acme", "alice"), "closed")]
    assert recorder.blocked == []


def test_a_second_scope_of_the_same_user_does_not_reopen_the_user_scope() -> None:
    recorder = Recorder()
    sessions = us.UserSessions(observer=recorder)
    for _ in range(3):
        with sessions.request(ctx("alice")):
            C.registry()
    levels = [c[1] for c in recorder.of("opened")]
    assert levels.count(us.Scope.USER) == 1
    assert levels.count(us.Scope.REQUEST) == 3
    assert len(recorder.of("created")) == 1  # the USER instance is created once


async def test_async_scopes_and_async_creation_are_reported() -> None:
    async def make_client() -> Any:
        yield "client"
        raise ValueError("close failed")

    class A(containers.DeclarativeContainer):
        client = us.RequestScoped(make_client)

    recorder = Recorder()
    sessions = us.UserSessions(observer=recorder)
    with pytest.raises(us.CleanupError):
        async with sessions.request(ctx("bob")):
            assert await A.client.async_() == "client"
    req_token = recorder.of("opened")[-1][3]
    assert recorder.of("created") == [("created", req_token, "A.client", us.Scope.REQUEST)]
    assert recorder.of("cleanup") == [
        ("cleanup", req_token, "A.client", us.Scope.REQUEST, "ValueError")
    ]
    assert recorder.of("closed")[0] == ("closed", req_token, us.Scope.REQUEST, "ValueError")
    await sessions.aclose()
    assert recorder.of("ended") == [("ended", (None, "bob"), "shutdown")]


def test_limit_refusals_are_reported_without_a_lock_held() -> None:
    sessions = us.UserSessions(max_connections_per_user=1, max_instances_per_user=1)
    recorder = Recorder(sessions)
    sessions.observer = recorder
    with sessions.connection(ctx("alice")):
        with pytest.raises(us.ScopeLimitError), sessions.connection(ctx("alice")):
            pass
        with sessions.request(ctx("alice")):
            C.box()
            with pytest.raises(us.ScopeLimitError):
                C.agent()
    crowded = us.UserSessions(max_users=1, observer=recorder)

    def bob_arrives() -> None:
        with pytest.raises(us.ScopeLimitError), crowded.request(ctx("bob", "acme")):
            pass

    with crowded.request(ctx("alice")):  # alice is busy: bob is refused, not her evicted
        contextvars.Context().run(bob_arrives)
    assert recorder.of("refused") == [
        ("refused", "max_connections_per_user", (None, "alice")),
        ("refused", "max_instances_per_user", (None, "alice")),
        ("refused", "max_users", ("acme", "bob")),
    ]
    assert recorder.blocked == []


async def test_async_instance_refusal_is_reported() -> None:
    async def make() -> str:
        return "made"

    class A(containers.DeclarativeContainer):
        first = us.RequestScoped(make)
        second = us.RequestScoped(make)

    recorder = Recorder()
    sessions = us.UserSessions(max_instances_per_user=1, observer=recorder)
    async with sessions.request(ctx("carol")):
        await A.first.async_()
        with pytest.raises(us.ScopeLimitError):
            await A.second.async_()
    assert recorder.of("refused") == [("refused", "max_instances_per_user", (None, "carol"))]


def test_evictions_expiry_and_sweeps_are_reported() -> None:
    now = [0.0]
    recorder = Recorder()
    sessions = us.UserSessions(max_users=1, idle_timeout=10, clock=lambda: now[0])
    sessions.observer = recorder
    with sessions.request(ctx("alice")):
        pass
    with sessions.request(ctx("bob")):  # alice is idle: evicted to make room
        pass
    assert recorder.of("ended") == [("ended", (None, "alice"), "evicted")]
    now[0] = 100.0
    assert sessions.sweep() == 1
    assert recorder.of("ended")[-1] == ("ended", (None, "bob"), "expired")
    assert recorder.of("swept") == [("swept", 1)]


def test_leaks_are_reported() -> None:
    recorder = Recorder()
    sessions = us.UserSessions(leak_check=True, observer=recorder)
    kept = []
    with sessions.request(ctx("dave")):
        kept.append(C.box())
    sessions.check_leaks()
    assert recorder.of("leak") == [("leak", "C.box", us.Scope.REQUEST, "Box")]
    kept.clear()
    gc.collect()


def test_a_raising_observer_is_logged_once_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(us.ScopeObserver):
        def scope_opened(self, level: us.Scope, ctx: us.UserExecutionContext) -> object:
            raise RuntimeError("observer bug")

    sessions = us.UserSessions(observer=Broken())
    with caplog.at_level(logging.ERROR, logger="userscope"):
        for _ in range(3):
            with sessions.request(ctx("erin")):
                assert C.registry() == {}
    records = [r for r in caplog.records if "observer" in r.getMessage()]
    assert len(records) == 1
    assert records[0].userscope_event == "observer_failed"  # type: ignore[attr-defined]


def test_observer_must_be_a_scope_observer() -> None:
    with pytest.raises(TypeError, match="ScopeObserver"):
        us.UserSessions(observer=object())  # type: ignore[arg-type]
    sessions = us.UserSessions()
    with pytest.raises(TypeError, match="ScopeObserver"):
        sessions.observer = "x"  # type: ignore[assignment]
    assert sessions.observer is None


def test_an_observer_set_late_sees_the_next_events_only() -> None:
    sessions = us.UserSessions()
    with sessions.request(ctx("frank")):
        C.registry()
    recorder = Recorder()
    sessions.observer = recorder
    with sessions.request(ctx("frank")):
        C.agent()
    sessions.close()
    # the USER scope opened before the observer: a runtime may announce it late or not
    assert [c[1] for c in recorder.of("opened") if c[1] is not us.Scope.USER] == [us.Scope.REQUEST]
    assert {c[2] for c in recorder.of("created")} == {"C.bridge", "C.agent"}  # registry: cached
    assert recorder.of("ended") == [("ended", (None, "frank"), "shutdown")]


def test_concurrent_threads_report_each_creation_once() -> None:
    recorder = Recorder()
    sessions = us.UserSessions(observer=recorder)
    barrier = threading.Barrier(4)

    def work() -> None:
        with sessions.request(ctx("gina")):
            barrier.wait(timeout=10)
            C.registry()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert [c[2] for c in recorder.of("created")] == ["C.registry"]
    asyncio.run(sessions.aclose())


def test_the_creation_path_follows_the_observing_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The creation path reads its own copy of `_flags.observing` (a C global compiled);
    setting the flag, as giving a runtime its first observer does, must reach it."""
    from userscope.container import _flags

    class C(containers.DeclarativeContainer):
        items = us.RequestScoped(list)

    ctx = us.UserExecutionContext(user_id="a", thread_id="t")
    monkeypatch.setattr(_flags, "observing", False)  # as in a process with no observer yet
    sessions = us.UserSessions()
    recorder = Recorder()
    sessions.observer = recorder  # switches the flag on
    try:
        with sessions.request(ctx):
            C.items()
    finally:
        sessions.close()
    created = [call for call in recorder.calls if call[0] == "created"]
    assert [call[2] for call in created] == ["C.items"]
