"""Contract 5: nothing outlives its scope."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
from dependency_injector import containers

import userscope as us
from support import Bridge, ctx_for


def test_thousand_cycles_over_several_users_leave_nothing_alive(Container: Any) -> None:
    container = Container()
    sessions = us.UserSessions()
    refs: list[weakref.ref[Any]] = []
    for i in range(1000):
        with sessions.request(ctx_for(f"user-{i % 7}", request=f"r-{i}")):
            agent = container.agent()
            refs += [weakref.ref(agent), weakref.ref(agent.bridge)]
        del agent
    sessions.close()
    gc.collect()
    alive = [r() for r in refs if r() is not None]
    assert alive == []
    stats = sessions.stats()
    assert (stats.users, stats.connections, stats.requests, stats.instances) == (0, 0, 0, 0)
    assert stats.cleanups_run == 1000  # one bridge generator per cycle


def test_user_instances_die_with_the_user_session(Container: Any) -> None:
    container = Container()
    sessions = us.UserSessions()
    with sessions.request(ctx_for("alice")):
        ref = weakref.ref(container.registry())
    gc.collect()
    assert ref() is not None  # kept between requests
    sessions.close_user("alice")
    gc.collect()
    assert ref() is None


def test_leak_check_reports_what_holds_an_instance() -> None:
    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        bridge = us.RequestScoped(Bridge, "alice")

    sessions = us.UserSessions(leak_check=True)
    keeper: list[Bridge] = []
    with sessions.request(ctx_for("alice")):
        keeper.append(C.bridge())
    with sessions.request(ctx_for("alice", "r-2")):
        C.bridge()
    leaks = sessions.check_leaks()
    assert len(leaks) == 1
    leak = leaks[0]
    assert (leak.type, leak.provider, leak.user_id, leak.scope) == (
        "Bridge",
        "C.bridge",
        "alice",
        "REQUEST",  # the provider's level, though plain HTTP shares one state for both
    )
    assert "list" in leak.referrers
    assert sessions.stats().leaks_detected == 1
    sessions.close()


@pytest.mark.userscope_no_leak_check
def test_plugin_fixture_runs_and_marker_is_registered(userscope_sessions: Any) -> None:
    with userscope_sessions.request(ctx_for("alice")):
        pass
    assert userscope_sessions.stats().users == 1


def test_exited_scope_holds_no_references(Container: Any) -> None:
    container = Container()
    sessions = us.UserSessions()
    scope = sessions.request(ctx_for("alice"))
    with scope:
        container.agent()
        assert len(scope.cache) == 2  # the agent and the bridge share the HTTP scope
        assert len(scope.finalizers) == 1
    assert scope.cache == {}
    assert scope.finalizers == []
    assert scope.closed
    sessions.close()
