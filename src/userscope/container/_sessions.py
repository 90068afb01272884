"""`UserSessions`: the runtime that owns USER scopes and opens CONNECTION/REQUEST scopes.

Concurrency model
-----------------
Two kinds of lock exist, and no user code (factories, finalizers, eviction and expiry
cleanups, observers) ever runs while either is held:

* the **table lock** (``UserSessions._lock``, one per runtime) protects the session
  table (``_users``, LRU order), the retired set, the deadline heap, the leak watch
  list and the runtime-wide counters;
* a **session lock** (``UserSession.lock``, one per user) protects that user's hold
  counters (``active``, ``connections``, ``requests``, ``instances``) and the caches,
  pending creations and finalizers of every scope of that user.

Order: table lock, then at most one session lock; never a session lock and then the
table lock, never two session locks. Neither lock is re-entrant. A limit refusal is
built under the locks and raised (and counted) after they are released.
:mod:`userscope.container._locks` checks all of this when ``USERSCOPE_LOCK_CHECK=1``
or under the pytest plugin.

Creating an instance (see :mod:`userscope.providers._creation`) takes the session lock
twice: once to reserve (the instance budget counts the creation in flight) and
register a :class:`~userscope.container._pending.PendingCreation`, once to publish
the instance or the failure; the factory runs between the two, with no lock held.
Concurrent resolvers of that instance wait on the pending creation, in any thread or
event loop, and get its one outcome.

Cleanups run after the scope's state was detached under the lock; async ones are
shielded from cancellation and bounded by ``cleanup_timeout``; a cancellation that
arrived meanwhile propagates once they all ran.

Where each job lives
--------------------
This module is the session table and its hold counting: the methods a scope calls
when it opens and exits (``_hold_user``, ``_acquire``, ``_hold_nested``, ``_leave``,
``_release``), which take the locks above. The other jobs are functions of their own
modules, which ``UserSessions`` binds as its methods (public ones as thin methods
that keep their docstrings): :mod:`~userscope.container._limits` (limit checks and
refusals), :mod:`~userscope.container._finish` (running an ended user's USER
cleanups), :mod:`~userscope.container._closing` (``close_user``, shutdown),
:mod:`~userscope.container._expiry` (deadline heap, ``sweep``, the reaper),
:mod:`~userscope.container._leaks` and :mod:`~userscope.container._stats`
(``check_leaks``, ``stats``, counters), :mod:`~userscope.container._observe`
(telling the observer). The scope context managers are in
:mod:`~userscope.container._scopes`, the cleanup runner in
:mod:`~userscope.container._cleanup`.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from userscope._durations import Duration, to_seconds_or_none
from userscope.container import (
    _closing,
    _expiry,
    _finish,
    _leaks,
    _limits,
    _locks,
    _observe,
    _stats,
)
from userscope.container import _flags as _creation_flags
from userscope.container._expiry import DeadlineHeap
from userscope.container._finish import fail_pending as _fail_pending
from userscope.container._leaks import LeakReport, LeakWatch
from userscope.container._leaks import suspects as _suspects
from userscope.container._observe import ScopeObserver
from userscope.container._scope import Scope
from userscope.container._scopes import ScopeCM, UserScopeCM
from userscope.container._session import Release, UserKey, UserSession, table_slot
from userscope.container._stats import SessionStats
from userscope.context import UserExecutionContext
from userscope.errors import ScopeClosedError, ScopeLimitError

if TYPE_CHECKING:
    from userscope.container._state import Finalizer

__all__ = ["LeakReport", "SessionStats", "UserSessions"]

_HOUR: Final = 3600.0
_USER: Final = Scope.USER
_CONNECTION: Final = Scope.CONNECTION
_REQUEST: Final = Scope.REQUEST
_KEEP: Final = Release.KEEP
_SCHEDULE: Final = Release.SCHEDULE
_FINISH: Final = Release.FINISH
_RECENT_FAILURES: Final = 20


class _SessionTable:
    """The session table and its hold counting: the base of :class:`UserSessions` that
    the scope classes and the creation protocol talk to (internal).

    Its methods are the hot path of opening and leaving a scope. The compiled build
    makes this class an extension type (``_sessions.pxd``): these fields become C struct
    members and these methods C methods; :class:`UserSessions`, a plain Python subclass,
    sets the fields in its ``__init__`` and keeps everything else.
    """

    # set by UserSessions.__init__
    _users: OrderedDict[str | UserKey, UserSession]
    _max_users: int | None
    _max_age: float | None
    _max_instances_per_user: int | None
    _clock: Callable[[], float]
    _lock: Any
    _limited: bool
    _closed: bool
    _timed: bool
    _idle_timeout: float | None
    _observer: ScopeObserver | None
    _cleanup_timeout: float | None
    _open_states: set[ScopeCM]
    _retired: set[UserSession]
    _expiry: DeadlineHeap
    _expired: int
    _evictions: int
    _refusals: Counter[str]
    leak_check: bool

    if TYPE_CHECKING:  # UserSessions binds these to the job modules' functions

        def _limit_error(self, session: UserSession, kind: Scope) -> ScopeLimitError | None: ...
        def _refused(self, error: ScopeLimitError, counted: bool = False) -> ScopeLimitError: ...
        def _notify_opened(self, level: Scope, ctx: UserExecutionContext) -> object: ...
        def _watch(self, suspects: list[_leaks.Suspect]) -> None: ...
        def _remember(self, failures: list[BaseException]) -> None: ...

    # -- holds: the scope classes' protocol (internal) --------------------------------

    def _take_hold(self, session: UserSession, kind: Scope) -> ScopeLimitError | None:
        """Count one more open scope of ``kind`` (session lock held); or the refusal."""
        if self._limited:
            error = self._limit_error(session, kind)
            if error is not None:
                return error
            session.connections += kind is _CONNECTION
            session.requests += kind is _REQUEST
        session.active += 1
        return None

    def _hold_user(
        self, ctx: UserExecutionContext, kind: Scope, async_: bool
    ) -> tuple[UserSession, list[UserSession] | None]:
        """Hold the user's session for a new top-level scope; returns the session and
        the sessions evicted to make room (their cleanups are the caller's to run)."""
        tenant_id = ctx.tenant_id
        session = self._users.get(ctx.user_id if tenant_id is None else (tenant_id, ctx.user_id))
        if session is not None and self._max_users is None:
            lock = session.lock
            lock.acquire()  # fast path: a live session, no LRU order to keep
            try:
                if session.retired or (not session.active and self._clock() >= session.expires_at):
                    error: ScopeLimitError | None = None
                    joined = False
                elif self._limited:
                    error = self._take_hold(session, kind)
                    joined = error is None
                else:
                    session.active += 1  # `_take_hold` without a limit to check, inlined
                    error = None
                    joined = True
            finally:
                lock.release()
            if error is not None:
                raise self._refused(error)
            if joined:
                return session, None
        return self._acquire(ctx, kind, async_)

    def _acquire(
        self, ctx: UserExecutionContext, kind: Scope, async_: bool
    ) -> tuple[UserSession, list[UserSession] | None]:
        """Slow path: create, replace or evict sessions under the table lock."""
        key = (ctx.tenant_id, ctx.user_id)
        slot = table_slot(*key)
        now = self._clock()
        evicted: list[UserSession] = []
        created = False
        error: ScopeLimitError | None = None
        with self._lock:
            if self._closed:
                raise ScopeClosedError(None, ctx.user_id, None, ctx.tenant_id)
            session = self._users.get(slot)
            if session is not None and session.active == 0 and now >= session.expires_at:
                self._retire(session)
                self._retired.discard(session)
                self._expired += 1
                evicted.append(session)
                session = None
            if session is None:
                if self._max_users is not None and len(self._users) >= self._max_users:
                    victim = self._pick_victim(async_)
                    if victim is None:
                        error = ScopeLimitError(
                            "max_users",
                            ctx.user_id,
                            len(self._users),
                            self._max_users,
                            ctx.tenant_id,
                        )
                    else:
                        self._retire(victim)
                        self._retired.discard(victim)
                        self._evictions += 1
                        evicted.append(victim)
                if error is None:
                    session = UserSession(key, now, self._max_age, self._max_instances_per_user)
                    self._users[slot] = session
                    created = True
            if session is not None:
                with session.lock:
                    error = self._take_hold(session, kind)
                if error is None and self._max_users is not None:
                    self._users.move_to_end(slot)
            if error is not None:
                self._refusals[error.limit] += 1
        if error is not None:
            raise self._refused(error, counted=True)
        assert session is not None
        if created and self._observer is not None:
            session.state.token = self._notify_opened(_USER, ctx)
        return session, evicted or None

    def _hold_nested(self, session: UserSession) -> None:
        """Hold ``session`` for a request nested in one of its connections."""
        lock = session.lock
        lock.acquire()  # not `with`: the context-manager protocol costs more than the hold
        try:
            if self._closed:
                raise ScopeClosedError(None, session.user_id, None, session.tenant_id)
            if self._limited:
                error = self._take_hold(session, _REQUEST)
            else:
                session.active += 1  # `_take_hold` without a limit to check, inlined
                error = None
        finally:
            lock.release()
        if error is not None:
            raise self._refused(error)

    def _unhold(self, session: UserSession, scope: ScopeCM | None) -> Release:
        """Drop one hold (session lock held); say what the caller must do next."""
        if self._limited and scope is not None:
            session.connections -= scope.kind is _CONNECTION
            session.requests -= scope.kind is _REQUEST
        session.active -= 1
        if session.active:
            return _KEEP
        if session.retired:
            return _FINISH
        idle = self._idle_timeout
        if idle is not None:
            session.expires_at = min(session.max_expiry, self._clock() + idle)
        if session.scheduled or not self._timed:
            return _KEEP
        session.scheduled = True
        return _SCHEDULE

    def _leave(self, scope: ScopeCM) -> tuple[list[Finalizer] | None, Release]:
        """Detach a closing scope's state; drop its hold unless finalizers must run first."""
        self._open_states.discard(scope)
        session = scope.session
        watched: list[_leaks.Suspect] | None = None
        session.lock.acquire()
        try:
            if self.leak_check and scope.cache:
                watched = _suspects(scope)
            pending = scope.pending
            finalizers = scope.detach()
            action = _KEEP if finalizers else self._unhold(session, scope)
            woken = _fail_pending(pending, scope.level, session) if pending else None
        finally:
            session.lock.release()
        if woken:
            for creation in woken:
                creation.wake()
        if watched:
            self._watch(watched)
        if finalizers:
            return finalizers, _KEEP
        return None, action

    def _schedule(self, session: UserSession) -> None:
        with self._lock:
            if not session.retired:
                self._expiry.push(session)

    def _release(
        self, session: UserSession, scope: ScopeCM | None, ran: int, failures: list[BaseException]
    ) -> Release:
        """Drop one hold after cleanups ran; returns FINISH or KEEP."""
        session.lock.acquire()
        try:
            if ran:
                session.cleanups_run += ran
                session.cleanups_failed += len(failures)
            action = self._unhold(session, scope)
        finally:
            session.lock.release()
        if failures:
            self._remember(failures)
        if action is _SCHEDULE:
            self._schedule(session)
            return _KEEP
        return action

    def _pick_victim(self, async_: bool) -> UserSession | None:
        for session in self._users.values():  # least recently used first
            if session.active == 0 and (async_ or not session.state.has_async_finalizers()):
                return session
        return None

    def _retire(self, session: UserSession) -> None:
        """Take a session out of the table (table lock held)."""
        if self._users.get(session.slot) is session:
            del self._users[session.slot]
        with session.lock:
            session.retired = True
            self._expiry.ended(session)
        self._retired.add(session)


class UserSessions(_SessionTable):
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
        self._max_users = max_users
        self._max_age = to_seconds_or_none("max_age", max_age)
        self._idle_timeout = to_seconds_or_none("idle_timeout", idle_timeout)
        self._max_connections_per_user = max_connections_per_user
        self._max_requests_per_user = max_requests_per_user
        self._max_instances_per_user = max_instances_per_user
        self._cleanup_timeout = to_seconds_or_none("cleanup_timeout", cleanup_timeout)
        self.leak_check = leak_check
        self._observer: ScopeObserver | None = None
        self.observer = observer
        self._clock = clock
        self._lock: Any = _locks.new_lock(_locks.TABLE)
        # keyed by `table_slot(tenant_id, user_id)`; in LRU order
        self._users: OrderedDict[str | UserKey, UserSession] = OrderedDict()
        self._retired: set[UserSession] = set()  # out of the table, scopes still open
        self._open_states: set[ScopeCM] = set()  # open CONNECTION/REQUEST states
        self._expiry = DeadlineHeap()
        self._closed = False
        self._timed = self._max_age is not None or self._idle_timeout is not None
        # per-user concurrency counters are only kept when a limit needs them
        self._limited = max_connections_per_user is not None or max_requests_per_user is not None
        self._cleanups_run = 0
        self._cleanups_failed = 0
        self._recent_failures: deque[str] = deque(maxlen=_RECENT_FAILURES)
        self._evictions = 0
        self._expired = 0
        self._refusals: Counter[str] = Counter()
        self._leak_watch = LeakWatch()
        self.leaks: list[LeakReport] = []
        self._reaper: asyncio.Task[None] | None = None
        self._background: set[Any] = set()  # tasks/futures finishing retired users
        self._observer_failed: set[str] = set()

    @property
    def observer(self) -> ScopeObserver | None:
        """The :class:`~userscope.ScopeObserver` told what happens (``None``: none).

        Settable at any time; scopes already open report to the new one from then on.
        """
        return self._observer

    @observer.setter
    def observer(self, observer: ScopeObserver | None) -> None:
        if observer is not None and not isinstance(observer, ScopeObserver):
            raise TypeError(
                f"observer must be a userscope.ScopeObserver (subclass it and override the "
                f"methods you need), got {type(observer).__qualname__}"
            )
        if observer is not None:
            _creation_flags.observing = True  # the creation path starts checking
        self._observer = observer

    # -- limits (fixed at construction) ----------------------------------------------
    @property
    def max_users(self) -> int | None:
        """Most user sessions kept at once (``None``: no limit; the default)."""
        return self._max_users

    @property
    def max_age(self) -> float | None:
        """Seconds a user session may live (default 24 h; ``None``: forever)."""
        return self._max_age

    @property
    def idle_timeout(self) -> float | None:
        """Seconds a session may sit unused before it is closed (``None``: the default)."""
        return self._idle_timeout

    @property
    def max_connections_per_user(self) -> int | None:
        """Concurrent long-lived connections per user (``None``: no limit; the default)."""
        return self._max_connections_per_user

    @property
    def max_requests_per_user(self) -> int | None:
        """Concurrent requests per user (``None``: no limit; the default)."""
        return self._max_requests_per_user

    @property
    def max_instances_per_user(self) -> int | None:
        """Live scoped instances per user (``None``: no limit; the default)."""
        return self._max_instances_per_user

    @property
    def cleanup_timeout(self) -> float | None:
        """Seconds one async cleanup may take (``None``: no bound; the default)."""
        return self._cleanup_timeout

    # -- opening scopes ---------------------------------------------------------------
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
        return ScopeCM(self, ctx, _REQUEST)

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
        return ScopeCM(self, ctx, _CONNECTION)

    def user(self, ctx: UserExecutionContext) -> UserScopeCM:
        """Enter only the user's USER scope (background jobs that serve one user).

        Example:
            >>> import userscope as us
            >>> sessions = us.UserSessions()
            >>> with sessions.user(us.UserExecutionContext(user_id="a", thread_id="t")):
            ...     us.current_scope()
            <Scope.USER: 3>
        """
        return UserScopeCM(self, ctx)

    # -- bound to the job modules' functions (the holds above call some) -------------
    _limit_error = _limits.limit_error  # the refusals: :mod:`userscope.container._limits`
    _refused = _limits.refused
    _notify = _observe.notify
    _notify_opened = _observe.notify_opened
    _notify_closed = _observe.notify_closed
    _observe_cleanup = _observe.observe_cleanup
    _notify_created = _observe.notify_created
    _watch = _leaks.watch
    _remember = _stats.remember

    # -- finishing users (:mod:`userscope.container._finish`) ------------------------
    _finish_user_sync = _finish.finish_user_sync
    _finish_user_async = _finish.finish_user_async
    _finish_evicted_sync = _finish.finish_evicted_sync
    _finish_evicted_async = _finish.finish_evicted_async

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
        _closing.close_user(self, user_id, tenant_id)

    async def aclose_user(self, user_id: str, tenant_id: str | None = None) -> None:
        """Async twin of :meth:`close_user`; runs async cleanups too.

        Example:
            >>> import asyncio, userscope as us
            >>> asyncio.run(us.UserSessions().aclose_user("nobody"))
        """
        await _closing.aclose_user(self, user_id, tenant_id)

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
        _closing.close(self, timeout)

    async def aclose(self, timeout: Duration = 30.0) -> None:  # noqa: ASYNC109 - the issue's API
        """Async twin of :meth:`close`; also stops the reaper task.

        Every cleanup is bounded by what is left of ``timeout`` (and by
        ``cleanup_timeout``): a stuck cleanup cannot hang shutdown.

        Example:
            >>> import asyncio, userscope as us
            >>> asyncio.run(us.UserSessions().aclose())
        """
        await _closing.aclose(self, timeout)

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
        return _expiry.sweep(self)

    async def asweep(self) -> int:
        """Async twin of :meth:`sweep`; also closes sessions with async cleanups.

        Example:
            >>> import asyncio, userscope as us
            >>> asyncio.run(us.UserSessions(idle_timeout=60).asweep())
            0
        """
        return await _expiry.asweep(self)

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
        return _expiry.start_reaper(self, interval)

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
        return _leaks.check_leaks(self)

    def stats(self) -> SessionStats:
        """Return a snapshot of users, open scopes, live instances and counters.

        Example:
            >>> import userscope as us
            >>> us.UserSessions().stats().connections
            0
        """
        return _stats.snapshot(self)

    def __repr__(self) -> str:
        return f"<UserSessions users={len(self._users)} closed={self._closed}>"
