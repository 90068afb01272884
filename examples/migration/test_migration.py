"""The migration example: the legacy backend leaks, the migrated one isolates users, and
the legacy shims report (then refuse) the call site that was not migrated yet."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import userscope as us
from examples.migration.after import accessors, admin, server
from examples.migration.after import old_singletons as after_old
from examples.migration.before import admin as before_admin
from examples.migration.before import agents as before_agents
from examples.migration.before import server as before_server
from examples.migration.before import websocket_bridge as before_bridge
from userscope.adapters import legacy
from userscope.adapters.legacy import LegacyAccessError, LegacyAccessWarning
from userscope.audit import AuditConfig, scan_paths

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DOC = ROOT / "docs" / "migration.md"


def line_of(path: str | Path, needle: str) -> int:
    """1-based line of the only line of ``path`` containing ``needle``."""
    lines = [n for n, text in enumerate(Path(path).read_text().splitlines(), 1) if needle in text]
    assert len(lines) == 1, (path, needle, lines)
    return lines[0]


ADMIN_CALL = line_of(admin.__file__, "agent = get_registry().pop(thread_id)")
ATTACH_CALL = line_of(server.__file__, "get_agent_websocket_bridge().attach(socket)")


class FakeSocket:
    """Records what the backend sent; yields to the loop so connections interleave."""

    def __init__(self, sessions: us.UserSessions | None = None) -> None:
        self.received: list[dict[str, Any]] = []
        self.sessions = sessions
        self.open_connections_seen = 0

    async def send_json(self, data: Any) -> None:
        await asyncio.sleep(0)
        if self.sessions is not None:
            seen = self.sessions.stats().connections
            self.open_connections_seen = max(self.open_connections_seen, seen)
        self.received.append(data)


async def feed(items: list[tuple[str, str]]) -> AsyncIterator[tuple[str, str]]:
    for item in items:
        await asyncio.sleep(0)
        yield item


def ctx(user_id: str) -> us.UserExecutionContext:
    return us.UserExecutionContext(user_id=user_id, thread_id="default")


@pytest.fixture
def sessions() -> Iterator[us.UserSessions]:
    runtime = us.UserSessions()
    yield runtime
    runtime.close()


@pytest.fixture(autouse=True)
def fresh_migration_state() -> Iterator[None]:
    """Fresh counters and 'warn' mode for the example's shims; old singletons emptied."""
    shims: tuple[legacy.LegacyAccessor[Any], ...] = (
        accessors.get_registry,
        accessors.get_agent_websocket_bridge,
    )
    modes = [shim.mode for shim in shims]
    for shim in shims:
        shim.mode = "warn"
    legacy.reset()
    before_bridge.reset_bridge_for_tests()
    before_agents.global_registry.agents.clear()
    after_old.global_registry.agents.clear()
    yield
    for shim, mode in zip(shims, modes, strict=True):
        shim.mode = mode
    legacy.reset()


# -- before: the bug ----------------------------------------------------------------------


async def test_before_users_receive_each_others_events_and_history() -> None:
    alice, bob = FakeSocket(), FakeSocket()
    await before_server.on_connect("alice", alice)
    await before_server.on_connect("bob", bob)  # the shared bridge now points at bob
    await before_server.handle_message("alice", "default", "my card ends in 4242")
    await before_server.handle_message("bob", "default", "hi")
    assert alice.received == []
    assert bob.received == [
        {"user_id": "alice", "reply": "message 1 of thread default: my card ends in 4242"},
        {"user_id": "bob", "reply": "message 2 of thread default: hi"},
    ]
    assert before_admin.clear_thread("default") == 2  # one command wipes both users' thread


# -- after: isolation ---------------------------------------------------------------------


async def test_after_concurrent_users_only_see_their_own_events(
    sessions: us.UserSessions,
) -> None:
    users = [f"user-{n}" for n in range(20)]
    sockets = {user: FakeSocket(sessions) for user in users}
    texts = ["hello", "my card ends in 4242", "bye"]
    await asyncio.gather(
        *(
            server.serve_connection(
                sessions,
                ctx(user),
                sockets[user],
                feed([("default", f"{user}: {t}") for t in texts]),
            )
            for user in users
        )
    )
    for user in users:
        assert sockets[user].received == [
            {"user_id": user, "reply": f"message {n} of thread default: {user}: {t}"}
            for n, t in enumerate(texts, 1)
        ]
    assert max(s.open_connections_seen for s in sockets.values()) > 1  # they really overlapped
    assert sessions.stats().connections == 0
    # Each user kept their own registry, in their USER scope.
    assert admin.clear_user_thread(sessions, "user-3", "default") == 3
    assert admin.clear_user_thread(sessions, "user-3", "default") == 0
    assert admin.clear_user_thread(sessions, "user-4", "default") == 3


# -- after: the shims report, then refuse, the call site not migrated yet -----------------


async def conversation(sessions: us.UserSessions) -> tuple[FakeSocket, FakeSocket]:
    alice, bob = FakeSocket(), FakeSocket()
    await asyncio.gather(
        server.serve_connection(
            sessions, ctx("alice"), alice, feed([("default", "a1"), ("default", "a2")])
        ),
        server.serve_connection(sessions, ctx("bob"), bob, feed([("default", "b1")])),
    )
    return alice, bob


async def test_warn_mode_reports_the_call_site_that_falls_back(sessions: us.UserSessions) -> None:
    await conversation(sessions)  # every legacy call here is scoped: no warning
    with pytest.warns(LegacyAccessWarning) as caught:
        cleared = admin.clear_thread("default")
    assert cleared == 0  # the old shared registry no longer holds the users' threads
    # only ours: a garbage collection inside the block may add e.g. a ResourceWarning
    [record] = [w for w in caught if issubclass(w.category, LegacyAccessWarning)]
    assert (record.filename, record.lineno) == (admin.__file__, ADMIN_CALL)

    report = legacy.report()
    registry_entry = report.accessor("get_registry")
    assert [
        (s.filename, s.lineno, s.function, s.scoped, s.fallback) for s in registry_entry.sites
    ] == [(admin.__file__, ADMIN_CALL, "clear_thread", 0, 1)]
    bridge_entry = report.accessor("get_agent_websocket_bridge")
    assert [
        (s.filename, s.lineno, s.function, s.scoped, s.fallback) for s in bridge_entry.sites
    ] == [(server.__file__, ATTACH_CALL, "serve_connection", 2, 0)]
    assert bridge_entry.next_step == "every call was scoped: flip to mode='error'"
    assert registry_entry.next_step.startswith("fix 1 call site that fell back")
    ours = tuple(a for a in report.accessors if a.name in {"get_registry", bridge_entry.name})
    table = legacy.LegacyReport(accessors=ours).format(relative_to=ROOT)
    assert f"examples/migration/after/admin.py:{ADMIN_CALL} in clear_thread" in table
    assert f"examples/migration/after/server.py:{ATTACH_CALL} in serve_connection" in table
    [quoted] = re.findall(r"```text\n(accessor / call site.*?)\n```", DOC.read_text(), re.DOTALL)
    assert quoted == table, "update the report table in docs/migration.md"


async def test_error_mode_refuses_the_unmigrated_call_and_the_fixed_paths_still_work(
    sessions: us.UserSessions,
) -> None:
    legacy.set_mode("error")
    alice, bob = await conversation(sessions)
    assert [e["user_id"] for e in alice.received + bob.received] == ["alice", "alice", "bob"]
    with pytest.raises(us.OutOfScopeError) as info:
        admin.clear_thread("default")
    err = info.value
    assert isinstance(err, LegacyAccessError)
    assert (err.accessor, err.provider, err.required_scope) == (
        "get_registry",
        "Container.registry",
        us.Scope.USER,
    )
    assert (err.filename, err.lineno, err.function) == (admin.__file__, ADMIN_CALL, "clear_thread")
    assert err.hint is not None
    assert "inject Container.registry" in err.hint
    # The migrated command reaches exactly one user's data.
    assert admin.clear_user_thread(sessions, "alice", "default") == 2
    assert admin.clear_user_thread(sessions, "bob", "default") == 1
    assert legacy.report().accessor("get_registry").refused == 1


def test_mode_comes_from_the_environment() -> None:
    code = (
        "from examples.migration.after import accessors;"
        "print(accessors.get_registry.mode, accessors.get_agent_websocket_bridge.mode)"
    )
    env = {**os.environ, "CHAT_LEGACY_ACCESSOR_MODE": "error"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["error", "error"]


# -- the audit agrees with the report -------------------------------------------------------


DEPRECATED = {"get_registry": "", "get_agent_websocket_bridge": "inject Container.bridge"}


def findings(folder: str) -> set[tuple[str, int, str]]:
    config = AuditConfig(deprecated_accessors=DEPRECATED)
    result = scan_paths([HERE / folder], config)
    return {(Path(f.path).name, f.line, f.code) for f in result.findings}


def test_audit_before_and_after() -> None:
    before = HERE / "before"
    assert findings("before") == {
        ("agents.py", line_of(before / "agents.py", "global_registry = AgentRegistry()"), "US001"),
        ("websocket_bridge.py", line_of(before / "websocket_bridge.py", "def get_agent_"), "US002"),
        (
            "server.py",
            line_of(before / "server.py", "get_agent_websocket_bridge().attach"),
            "US007",
        ),
        ("server.py", line_of(before / "server.py", "agent = get_registry()"), "US007"),
        ("server.py", line_of(before / "server.py", "await get_agent_websocket_bridge()"), "US007"),
        ("admin.py", line_of(before / "admin.py", "agent = get_registry()"), "US007"),
    }
    # After: only the old singletons (deleted in the last step) and the two call sites
    # the legacy report also shows.
    old = HERE / "after" / "old_singletons.py"
    assert findings("after") == {
        ("old_singletons.py", line_of(old, "global_registry = AgentRegistry()"), "US001"),
        ("old_singletons.py", line_of(old, "def get_agent_websocket_bridge"), "US002"),
        ("server.py", ATTACH_CALL, "US007"),
        ("admin.py", ADMIN_CALL, "US007"),
    }
