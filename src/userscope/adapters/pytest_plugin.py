"""pytest plugin (registered through the ``pytest11`` entry point; no conftest needed).

Fixtures:
    ``userscope_sessions``: a fresh :class:`~userscope.UserSessions` with leak checking
        on. At teardown the test fails if a scope is still open, a cleanup failed, or a
        scoped instance outlived its scope. ``@pytest.mark.userscope_no_leak_check``
        turns the leak check off for one test.
    ``userscope_context``: a factory of valid :class:`~userscope.UserExecutionContext`.

Example:
    >>> # def test_agent(userscope_sessions, userscope_context):
    >>> #     with userscope_sessions.request(userscope_context("alice")):
    >>> #         ...
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from userscope.container import UserSessions
from userscope.context import UserExecutionContext
from userscope.errors import CleanupError, UserscopeError

__all__ = ["userscope_context", "userscope_sessions"]

NO_LEAK_CHECK = "userscope_no_leak_check"


def pytest_configure(config: pytest.Config) -> None:
    """Register the plugin's marker."""
    config.addinivalue_line(
        "markers",
        f"{NO_LEAK_CHECK}: do not fail this test when a scoped instance outlives its scope",
    )


@pytest.fixture
def userscope_context() -> Callable[..., UserExecutionContext]:
    """Return a factory: ``userscope_context("alice", thread_id=..., **fields)``.

    Each call gives a valid context with a fresh, unique ``request_id``.
    """
    counter = itertools.count(1)

    def make(user_id: str = "user-1", **fields: Any) -> UserExecutionContext:
        fields.setdefault("thread_id", f"thread-{user_id}")
        fields.setdefault("request_id", f"req-{user_id}-{next(counter)}")
        return UserExecutionContext(user_id=user_id, **fields)

    return make


@pytest.fixture
def userscope_sessions(request: pytest.FixtureRequest) -> Iterator[UserSessions]:
    """A fresh ``UserSessions`` checked at teardown (open scopes, failed cleanups, leaks)."""
    leak_check = request.node.get_closest_marker(NO_LEAK_CHECK) is None
    sessions = UserSessions(leak_check=leak_check)
    yield sessions
    stats = sessions.stats()
    problems: list[str] = []
    if stats.connections or stats.requests:
        problems.append(
            f"{stats.connections} connection and {stats.requests} request scope(s) still open "
            "at teardown: every `with sessions...` block must exit"
        )
    try:
        if stats.closed:
            sessions.check_leaks()
        else:
            _close(sessions)
    except CleanupError as exc:
        problems.append(f"{len(exc.exceptions)} cleanup(s) failed at shutdown: {exc.exceptions!r}")
    failed = sessions.stats().cleanups_failed
    if failed:
        problems.append(f"{failed} cleanup(s) failed (see the `userscope` log)")
    if leak_check:
        for leak in sessions.leaks:
            problems.append(
                f"leak: {leak.type} from {leak.provider} (user {leak.user_id!r}, {leak.scope} "
                f"scope) is still alive after its scope closed; held by "
                f"{', '.join(leak.referrers) or 'nothing visible'}"
            )
    if problems:
        pytest.fail("userscope: " + "; ".join(problems), pytrace=False)


def _close(sessions: UserSessions) -> None:
    try:
        sessions.close()
    except CleanupError:
        raise
    except UserscopeError:  # async cleanups left over by an async test: run them on a loop
        asyncio.run(sessions.aclose())
