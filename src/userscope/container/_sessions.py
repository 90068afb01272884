"""`UserSessions`: the runtime that owns USER scopes and opens CONNECTION/REQUEST scopes.

The public class only: it checks its arguments, holds one
:class:`~userscope.container._table.SessionTable` (the runtime's state, the concurrency
model and the protocol the scopes use; see that module) and delegates each public
method to the module of its job: :mod:`~userscope.container._closing` (``close_user``,
shutdown), :mod:`~userscope.container._expiry` (``sweep``, the reaper),
:mod:`~userscope.container._leaks` and :mod:`~userscope.container._stats`
(``check_leaks``, ``stats``). The scopes it opens
(:mod:`~userscope.container._scopes`) hold the table, not this object; code that needs
the table of a runtime calls :func:`table_of`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from userscope._durations import Duration, to_seconds_or_none
from userscope.container import _closing, _expiry, _leaks, _limits, _stats
from userscope.container import _flags as _creation_flags
from userscope.container._leaks import LeakReport
from userscope.container._observe import ScopeObserver
from userscope.container._scope import Scope
from userscope.container._scopes import ScopeCM, UserScopeCM, new_scope
from userscope.container._stats import SessionStats
from userscope.container._table import SessionTable
from userscope.context import UserExecutionContext

if TYPE_CHECKING:  # the declarations, as typed no-ops
    from userscope import _nocython as cython
else:
    try:  # Cython's pure-Python mode: C types for the compiled build (see _nocython)
        import cython
    except ImportError:  # pragma: no cover - a pure install: no Cython, no-op declarations
        from userscope import _nocython as cython

__all__ = ["LeakReport", "SessionStats", "UserSessions", "table_of"]

_HOUR: Final = 3600.0
_USER: Final = Scope.USER
_CONNECTION: Final = Scope.CONNECTION
_REQUEST: Final = Scope.REQUEST


class _TableHolder:
    """The base of :class:`UserSessions` that holds its :class:`SessionTable` (internal).

    Only so that opening a scope reads the table without an attribute lookup: the
    compiled build makes this an extension type (``_sessions.pxd``) whose one field is a
    C struct member, which ``request``/``connection``/``user`` read through a local
    typed as this class. It has no behaviour; :class:`UserSessions` is a Python class
    (public, its ``__module__`` is rewritten) and holds the table here.
    """

    _table: SessionTable


class UserSessions(_TableHolder):
    """The runtime that owns every USER scope and opens CONNECTION and REQUEST scopes.

    One per application (no module-level global): each instance is independent. A
    user is ``(tenant_id, user_id)`` (:attr:`UserExecutionContext.user_key`); the same
    user id in two tenants is two users. A user's USER scope is created on first use,
    shared by that user's concurrent connections, kept between requests, and ended by
    :meth:`close_user`, by the limits below (through :meth:`sweep` / the reaper), or by
    :meth:`close` at shutdown.

    Durations take seconds (``int``/``float``) or a :class:`datetime.timedelta`.

    Args:
        max_users: most user sessions kept at once; at the limit the least recently
            used idle session is evicted, or the new user is refused. ``None``: no limit.
        max_age: how long a user session may live (default 24 h); expired sessions are
            closed once idle.
        idle_timeout: how long a session may sit unused before it is closed.
            ``None``: never.
        max_connections_per_user: concurrent long-lived connections per user (scopes
            opened with :meth:`connection`, e.g. WebSockets). ``None``: no limit.
        max_requests_per_user: concurrent requests per user (plain HTTP requests and
            requests inside a connection). ``None``: no limit.
        max_instances_per_user: live scoped instances per user, creations in flight
            included. ``None`` (the default): no limit.
        cleanup_timeout: how long one async cleanup may take before it is cancelled and
            recorded as a :class:`~userscope.CleanupTimeoutError`. ``None``: no bound.
        leak_check: record scoped instances still alive after their scope closed.
        clock: monotonic clock in seconds (injectable for tests).
        observer: a :class:`~userscope.ScopeObserver` told what the runtime does
            (settable later as ``sessions.observer``).

    Example:
        >>> import userscope as us
        >>> sessions = us.UserSessions(idle_timeout=900)
        >>> ctx = us.UserExecutionContext(user_id="alice", thread_id="t-1")
        >>> with sessions.request(ctx):
        ...     us.current_context().user_id
        'alice'
        >>> sessions.close()
    """

    def __init__(
        self,
        *,
        max_users: int | None = None,
        max_age: Duration | None = 24 * _HOUR,
        idle_timeout: Duration | None = None,
        max_connections_per_user: int | None = None,
        max_requests_per_user: int | None = None,
        max_instances_per_user: int | None = None,
        cleanup_timeout: Duration | None = None,
        leak_check: bool = False,
        clock: Callable[[], float] = time.monotonic,
        observer: ScopeObserver | None = None,
    ) -> None:
        _limits.check_counts(
            max_users=max_users,
            max_connections_per_user=max_connections_per_user,
            max_requests_per_user=max_requests_per_user,
            max_instances_per_user=max_instances_per_user,
        )
        self._table = SessionTable(
            max_users=max_users,
            max_age=to_seconds_or_none("max_age", max_age),
            idle_timeout=to_seconds_or_none("idle_timeout", idle_timeout),
            max_connections_per_user=max_connections_per_user,
            max_requests_per_user=max_requests_per_user,
            max_instances_per_user=max_instances_per_user,
            cleanup_timeout=to_seconds_or_none("cleanup_timeout", cleanup_timeout),
            leak_check=leak_check,
            clock=clock,
        )
        self.observer = observer

    @property
    def observer(self) -> ScopeObserver | None:
        """The :class:`~userscope.ScopeObserver` told what happens (``None``: none).

        Settable at any time; scopes already open report to the new one from then on.
        """
        return self._table.observer

    @observer.setter
    def observer(self, observer: ScopeObserver | None) -> None:
        if observer is not None and not isinstance(observer, ScopeObserver):
            raise TypeError(
                f"observer must be a userscope.ScopeObserver (subclass it and override the "
                f"methods you need), got {type(observer).__qualname__}"
            )
        if observer is not None:
            _creation_flags.observing = True  # the creation path starts checking
        self._table.observer = observer

    @property
    def leak_check(self) -> bool:
        """Whether closed scopes' instances are watched for leaks (settable).

        Example:
            >>> import userscope as us
            >>> us.UserSessions(leak_check=True).leak_check
            True
        """
        return self._table.leak_check

    @leak_check.setter
    def leak_check(self, on: bool) -> None:
        self._table.leak_check = on

    @property
    def leaks(self) -> list[LeakReport]:
        """Every leak report so far (:meth:`check_leaks` appends to this list).

        Example:
            >>> import userscope as us
            >>> us.UserSessions(leak_check=True).leaks
            []
        """
        return self._table.leaks

    # -- limits (fixed at construction) ----------------------------------------------
    @property
    def max_users(self) -> int | None:
        """Most user sessions kept at once (``None``: no limit; the default)."""
        return self._table.max_users

    @property
    def max_age(self) -> float | None:
        """Seconds a user session may live (default 24 h; ``None``: forever)."""
        return self._table.max_age

    @property
    def idle_timeout(self) -> float | None:
        """Seconds a session may sit unused before it is closed (``None``: the default)."""
        return self._table.idle_timeout

    @property
    def max_connections_per_user(self) -> int | None:
        """Concurrent long-lived connections per user (``None``: no limit; the default)."""
        return self._table.max_connections_per_user

    @property
    def max_requests_per_user(self) -> int | None:
        """Concurrent requests per user (``None``: no limit; the default)."""
        return self._table.max_requests_per_user

    @property
    def max_instances_per_user(self) -> int | None:
        """Live scoped instances per user (``None``: no limit; the default)."""
        return self._table.max_instances_per_user

    @property
    def cleanup_timeout(self) -> float | None:
        """Seconds one async cleanup may take (``None``: no bound; the default)."""
        return self._table.cleanup_timeout

    # -- opening scopes ---------------------------------------------------------------
    @cython.locals(holder=_TableHolder)
    def request(self, ctx: UserExecutionContext) -> ScopeCM:
        """Open a REQUEST scope (``with`` or ``async with``).

        Nests in the active connection of the same user; otherwise joins the user's
        USER scope and opens CONNECTION and REQUEST together (the plain HTTP case, which
        counts toward ``max_requests_per_user`` only).

        Raises:
            IsolationError: a scope of another user is active; nothing is opened.
            ScopeLimitError: a limit was reached; nothing is opened.
            ScopeClosedError: the runtime was closed.

        Example:
            >>> import userscope as us
            >>> sessions = us.UserSessions()
            >>> with sessions.request(us.UserExecutionContext(user_id="a", thread_id="t")):
            ...     us.current_scope()
            <Scope.REQUEST: 1>
        """
        holder = self  # compiled: the table is a C field, no lookup
        if cython.compiled:
            return new_scope(holder._table, ctx, _REQUEST)  # no type call
        return ScopeCM(holder._table, ctx, _REQUEST)

    @cython.locals(holder=_TableHolder)
    def connection(self, ctx: UserExecutionContext) -> ScopeCM:
        """Open a CONNECTION scope (one long-lived connection, e.g. a WebSocket).

        Counts toward ``max_connections_per_user``.

        Example:
            >>> import userscope as us
            >>> sessions = us.UserSessions()
            >>> with sessions.connection(us.UserExecutionContext(user_id="a", thread_id="t")):
            ...     us.current_scope()
            <Scope.CONNECTION: 2>
        """
        holder = self  # compiled: the table is a C field, no lookup
        if cython.compiled:
            return new_scope(holder._table, ctx, _CONNECTION)  # no type call
        return ScopeCM(holder._table, ctx, _CONNECTION)

    @cython.locals(holder=_TableHolder)
    def user(self, ctx: UserExecutionContext) -> UserScopeCM:
        """Enter only the user's USER scope (background jobs that serve one user).

        Example:
            >>> import userscope as us
            >>> sessions = us.UserSessions()
            >>> with sessions.user(us.UserExecutionContext(user_id="a", thread_id="t")):
            ...     us.current_scope()
            <Scope.USER: 3>
        """
        holder = self
        return UserScopeCM(holder._table, ctx)

    # -- closing --------------------------------------------------------------------
    def close_user(self, user_id: str, tenant_id: str | None = None) -> None:
        """End a user's USER scope: at once when idle, else when its last scope exits.

        Args:
            user_id: the user.
            tenant_id: the user's tenant (``None``: no tenant).

        Raises:
            AsyncCleanupRequiredError: the user's scope holds async cleanups; use
                :meth:`aclose_user`. Nothing is closed in that case.
            CleanupError: some cleanups failed (all of them ran).

        Example:
            >>> import userscope as us
            >>> sessions = us.UserSessions()
            >>> with sessions.request(us.UserExecutionContext(user_id="a", thread_id="t")):
            ...     pass
            >>> sessions.close_user("a"); sessions.stats().users
            0
        """
        _closing.close_user(self._table, user_id, tenant_id)

    async def aclose_user(self, user_id: str, tenant_id: str | None = None) -> None:
        """Async twin of :meth:`close_user`; runs async cleanups too.

        Example:
            >>> import asyncio, userscope as us
            >>> asyncio.run(us.UserSessions().aclose_user("nobody"))
        """
        await _closing.aclose_user(self._table, user_id, tenant_id)

    def close(self, timeout: Duration = 30.0) -> None:
        """Shut down: refuse new scopes, wait for open ones, run every user's cleanups.

        Args:
            timeout: how long to wait for scopes still open (seconds or a timedelta).
                Users whose scopes are still open then are finished when their last
                scope exits, in whatever thread that happens.

        Raises:
            AsyncCleanupRequiredError: some idle user scope holds async cleanups; use
                :meth:`aclose`. Nothing is closed in that case.
            ShutdownTimeoutError: scopes were still open at the timeout.
            CleanupError: some cleanups failed (all of them ran).

        Example:
            >>> import userscope as us
            >>> sessions = us.UserSessions(); sessions.close(); sessions.stats().closed
            True
        """
        _closing.close(self._table, timeout)

    async def aclose(self, timeout: Duration = 30.0) -> None:  # noqa: ASYNC109 - the issue's API
        """Async twin of :meth:`close`; also stops the reaper task.

        Every cleanup is bounded by what is left of ``timeout`` (and by
        ``cleanup_timeout``): a stuck cleanup cannot hang shutdown.

        Example:
            >>> import asyncio, userscope as us
            >>> asyncio.run(us.UserSessions().aclose())
        """
        await _closing.aclose(self._table, timeout)

    # -- expiry -----------------------------------------------------------------------
    def sweep(self) -> int:
        """Close every idle session past its ``idle_timeout`` or ``max_age``.

        Costs time proportional to the expired sessions (a deadline heap), not to all.
        A session in use is never reaped. Returns how many sessions were closed.

        Example:
            >>> import userscope as us
            >>> us.UserSessions(idle_timeout=60).sweep()
            0
        """
        return _expiry.sweep(self._table)

    async def asweep(self) -> int:
        """Async twin of :meth:`sweep`; also closes sessions with async cleanups.

        Example:
            >>> import asyncio, userscope as us
            >>> asyncio.run(us.UserSessions(idle_timeout=60).asweep())
            0
        """
        return await _expiry.asweep(self._table)

    def start_reaper(self, interval: Duration | None = None) -> asyncio.Task[None] | None:
        """Start a background task on the running loop that calls :meth:`asweep` periodically.

        Args:
            interval: time between sweeps (seconds or a timedelta); by default a quarter
                of the shortest of ``idle_timeout`` and ``max_age``, between 1 s and 60 s.

        Returns:
            The task (stopped by :meth:`aclose`), or ``None`` when nothing can expire.

        Example:
            >>> import asyncio, userscope as us
            >>> async def main():
            ...     sessions = us.UserSessions(idle_timeout=60)
            ...     task = sessions.start_reaper()
            ...     await sessions.aclose()
            ...     return task.cancelled()
            >>> asyncio.run(main())
            True
        """
        return _expiry.start_reaper(self._table, interval)

    # -- observation ------------------------------------------------------------------
    def check_leaks(self) -> list[LeakReport]:
        """Report scoped instances still alive after their scope closed (``leak_check``).

        Runs a garbage collection only when a watched instance is still alive, and
        inspects what holds at most 20 of them. An instance held only by finished
        frames (a traceback of a cleanup failure or of a handled error) is not reported.
        New reports are appended to :attr:`leaks`, logged, and returned.

        Example:
            >>> import userscope as us
            >>> us.UserSessions(leak_check=True).check_leaks()
            []
        """
        return _leaks.check_leaks(self._table)

    def stats(self) -> SessionStats:
        """Return a snapshot of users, open scopes, live instances and counters.

        Example:
            >>> import userscope as us
            >>> us.UserSessions().stats().connections
            0
        """
        return _stats.snapshot(self._table)

    def __repr__(self) -> str:
        table = self._table
        return f"<UserSessions users={len(table.users)} closed={table.closed}>"


def table_of(sessions: UserSessions) -> SessionTable:
    """The session table a runtime's scopes hold (what the active frame's ``SESSIONS``
    field is while one of them is open).

    Example:
        >>> import userscope as us
        >>> from userscope.container._scope import ACTIVE, SESSIONS
        >>> from userscope.container._sessions import table_of
        >>> sessions = us.UserSessions()
        >>> with sessions.request(us.UserExecutionContext(user_id="a", thread_id="t")):
        ...     ACTIVE.get()[SESSIONS] is table_of(sessions)
        True
    """
    return sessions._table
