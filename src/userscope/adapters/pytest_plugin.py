"""pytest plugin, registered through the ``pytest11`` entry point: no conftest needed.

Fixtures:
    ``userscope_sessions``: a fresh :class:`~userscope.UserSessions` with leak checking
        on, closed at teardown. The test fails (an error at teardown) when a scope is
        still open, a cleanup failed, or a scoped instance outlived its scope (reported
        with its type, provider, user and what holds it). In an ``async def`` test it is
        closed with ``await sessions.aclose()`` on the test's own event loop.
    ``userscope_asessions``: the same, as an async fixture (pytest-asyncio).
    ``userscope_context``: a factory of valid :class:`~userscope.UserExecutionContext`.

Lock-order checker:
    On for the whole run (every ``UserSessions`` created while the plugin is active
    checks the runtime's documented lock order and fails the moment it is broken);
    ``USERSCOPE_LOCK_CHECK=0`` turns it off.

Marker:
    ``@pytest.mark.userscope_no_leak_check``: no leak check for this test (open scopes
    and failed cleanups still fail it).

Example:
    A test module that uses the fixtures, run by pytest (here in a subprocess): both
    tests pass, and the second, which keeps an ``Agent`` past its scope, then gets an
    error at teardown that names the leaked instance.

    >>> test_module = '''
    ... import userscope as us
    ... from dependency_injector import containers
    ...
    ... class Agent:
    ...     def __init__(self, context):
    ...         self.user_id = context.user_id
    ...
    ... class Container(containers.DeclarativeContainer):
    ...     agent = us.RequestScoped(Agent, us.CurrentContext())
    ...
    ... def test_agent(userscope_sessions, userscope_context):
    ...     with userscope_sessions.request(userscope_context("alice")):
    ...         assert Container.agent().user_id == "alice"
    ...
    ... kept = []
    ...
    ... def test_keeps_an_agent(userscope_sessions, userscope_context):
    ...     with userscope_sessions.request(userscope_context("bob")):
    ...         kept.append(Container.agent())
    ... '''
    >>> import pathlib, subprocess, sys, tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     _ = pathlib.Path(folder, "test_agent.py").write_text(test_module)
    ...     done = subprocess.run(
    ...         [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", folder],
    ...         capture_output=True, text=True, timeout=120,
    ...     )
    >>> print(*(line for line in done.stdout.splitlines() if line.startswith("userscope:")))
    userscope: leak: Agent from Container.agent (user 'bob', REQUEST scope) is still alive...
    >>> done.stdout.splitlines()[-1]
    '2 passed, 1 error in ...'
"""

from __future__ import annotations

import inspect
import itertools
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from userscope import _mode
from userscope.container import UserSessions, _locks
from userscope.container._scope import ACTIVE, SESSIONS
from userscope.container._sessions import table_of
from userscope.context import UserExecutionContext
from userscope.errors import (
    AsyncCleanupRequiredError,
    CleanupError,
    ShutdownTimeoutError,
    UserscopeError,
)

try:  # pytest-asyncio drives the async fixture when installed
    import pytest_asyncio

    _async_fixture: Callable[..., Any] = pytest_asyncio.fixture
    _HAS_ASYNCIO = True
except ImportError:  # pragma: no cover - pytest-asyncio is a dev dependency here
    _async_fixture = pytest.fixture
    _HAS_ASYNCIO = False

__all__ = ["userscope_asessions", "userscope_context", "userscope_sessions"]

NO_LEAK_CHECK = "userscope_no_leak_check"
_MAX_REPORTED = 5


def pytest_report_header(config: pytest.Config) -> str:
    """Say which runtime the tests exercise: ``userscope: compiled``, ``userscope: pure
    (USERSCOPE_PURE=1)``, ``userscope: pure (extension not built)``, ..."""
    return f"userscope: {_mode.describe()}"


def pytest_configure(config: pytest.Config) -> None:
    """Register the plugin's marker; turn the lock-order checker on."""
    if os.environ.get("USERSCOPE_LOCK_CHECK", "1") != "0":
        _locks.enable_lock_check()
    config.addinivalue_line(
        "markers",
        f"{NO_LEAK_CHECK}: do not fail this test when a scoped instance outlives its scope",
    )


@pytest.fixture
def userscope_context() -> Callable[..., UserExecutionContext]:
    """Return a factory: ``userscope_context("alice", thread_id=..., **fields)``.

    Each call gives a valid context with a fresh, unique ``request_id``; ``thread_id``
    defaults to ``"thread-<user>"``.

    Example:
        In a test, ``userscope_context("alice", connection_id="ws-1")`` is a context of
        user ``alice`` in thread ``thread-alice`` on connection ``ws-1``. Fixtures run
        only inside pytest: the module's example runs a test that uses this one.
    """
    counter = itertools.count(1)

    def make(user_id: str = "user-1", **fields: Any) -> UserExecutionContext:
        fields.setdefault("thread_id", f"thread-{user_id}")
        fields.setdefault("request_id", f"req-{user_id}-{next(counter)}")
        return UserExecutionContext(user_id=user_id, **fields)

    return make


class _Watch:
    """One fixture's sessions plus what the teardown check needs."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.leak_check = request.node.get_closest_marker(NO_LEAK_CHECK) is None
        self.sessions = UserSessions(leak_check=self.leak_check)
        self.problems: list[str] = []
        self.left_open = False

    def before_close(self) -> None:
        stats = self.sessions.stats()
        if stats.open_scopes:
            self.left_open = True
            self.problems.append(
                f"{stats.open_scopes} scope(s) still open at teardown "
                f"({stats.connections} connection, {stats.requests} request): every "
                "`with`/`async with sessions...` block must exit before the test ends"
            )
        frame = ACTIVE.get()
        if frame is not None and frame[SESSIONS] is table_of(self.sessions):
            ACTIVE.set(None)  # do not let the abandoned scope leak into the next test

    @property
    def timeout(self) -> float:
        """Shutdown waits for nothing when a scope was left open (already reported)."""
        return 0.01 if self.left_open else 30.0

    def closing_failed(self, exc: BaseException) -> None:
        if isinstance(exc, CleanupError):
            return  # counted below through stats().cleanups_failed
        if isinstance(exc, ShutdownTimeoutError) and self.left_open:
            return  # reported by before_close
        self.problems.append(f"closing the sessions failed: {exc}")

    def verdict(self) -> None:
        stats = self.sessions.stats()
        if stats.cleanups_failed:
            shown = "; ".join(stats.cleanup_failures[:_MAX_REPORTED]) or "see the `userscope` log"
            self.problems.append(f"{stats.cleanups_failed} cleanup(s) failed: {shown}")
        if self.leak_check:
            leaks = list(self.sessions.leaks)
            for leak in leaks[:_MAX_REPORTED]:
                self.problems.append(
                    f"leak: {leak.type} from {leak.provider} (user {leak.user_id!r}, "
                    f"{leak.scope} scope) is still alive after its scope closed; held by "
                    f"{', '.join(leak.referrers) or 'nothing visible'}"
                )
            if len(leaks) > _MAX_REPORTED:
                self.problems.append(f"... and {len(leaks) - _MAX_REPORTED} more leak(s)")
            if leaks:
                self.problems.append(
                    f"drop what keeps them, or mark the test @pytest.mark.{NO_LEAK_CHECK}"
                )
        if self.problems:
            pytest.fail("userscope: " + "\n  ".join(self.problems), pytrace=False)


def _is_async_test(request: pytest.FixtureRequest) -> bool:
    function = getattr(request, "function", None)
    return function is not None and inspect.iscoroutinefunction(function)


@pytest.fixture
def userscope_sessions(request: pytest.FixtureRequest) -> Iterator[UserSessions]:
    """A fresh ``UserSessions`` checked at teardown (open scopes, failed cleanups, leaks).

    In an ``async def`` test this is :func:`userscope_asessions`, so async cleanups run on
    the test's own event loop.

    Example:
        ``with userscope_sessions.request(userscope_context("alice")):`` opens alice's
        scopes for the test body. Fixtures run only inside pytest: the module's example
        runs a test that uses this one and shows the teardown error of a leak.
    """
    if _HAS_ASYNCIO and _is_async_test(request):
        yield request.getfixturevalue("userscope_asessions")
        return
    watch = _Watch(request)
    yield watch.sessions
    watch.before_close()
    try:
        if watch.sessions.stats().closed:
            watch.sessions.check_leaks()
        else:
            watch.sessions.close(timeout=watch.timeout)
    except UserscopeError as exc:
        if isinstance(exc, AsyncCleanupRequiredError):
            exc = UserscopeError(
                f"{exc} (a sync test cannot run async cleanups: write the test as "
                "`async def` so the fixture closes on its event loop, or "
                "`await sessions.aclose()` in the test)"
            )
        watch.closing_failed(exc)
    watch.verdict()


@_async_fixture
async def userscope_asessions(request: pytest.FixtureRequest) -> AsyncIterator[UserSessions]:
    """Async twin of :func:`userscope_sessions`: closed with ``await sessions.aclose()``.

    Runs on the test's event loop (pytest-asyncio, function loop scope), so async
    generator and ``aclose()`` cleanups finish on the loop that created them.

    Example:
        ``async with userscope_asessions.request(userscope_context("alice")):`` in an
        ``async def`` test. Fixtures run only inside pytest: the async test of
        docs/testing.md (run by ``tests/testing/test_docs_async_snippet.py``) gets this
        fixture under the name ``userscope_sessions``.
    """
    watch = _Watch(request)
    yield watch.sessions
    watch.before_close()
    try:
        if watch.sessions.stats().closed:
            watch.sessions.check_leaks()
        else:
            await watch.sessions.aclose(timeout=watch.timeout)
    except UserscopeError as exc:
        watch.closing_failed(exc)
    watch.verdict()
