"""`SessionTable`: a runtime's state and the protocol its scopes use to open and leave.

A :class:`~userscope.UserSessions` holds one :class:`SessionTable` and delegates to it;
the scope context managers (:mod:`~userscope.container._scopes`), the creation
protocol (:mod:`~userscope.providers._creation`, through the active frame's
``SESSIONS`` field, which is always the table) and the job modules talk to the table
only, through its public names: no module reaches into another's underscore members
(``tests/test_gates.py`` checks it).

Concurrency model
-----------------
Two kinds of lock exist, and no user code (factories, finalizers, eviction and expiry
cleanups, observers) ever runs while either is held:

* the **table lock** (``SessionTable.lock``, one per runtime) protects the session
  table (``users``, LRU order), the ``retired`` set, the deadline heap (``expiry``),
  the leak watch list and the runtime-wide counters;
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

The protocol
------------
A scope opens with :meth:`SessionTable.hold_user` (a connection, a plain request, a
USER-only scope) or :meth:`SessionTable.hold_nested` (a request inside its user's
connection), and leaves with :meth:`SessionTable.leave` (detach its state, drop the
hold unless finalizers must run first), then :meth:`SessionTable.release` (drop the
hold after the cleanups ran) or :meth:`SessionTable.schedule` (queue an idle user's
next possible expiry); when it was a retired user's last scope it finishes the user
(``finish_user_sync``/``finish_user_async``), and it runs the cleanups of users its
opening evicted (``finish_evicted_sync``/``finish_evicted_async``). These methods take
the locks above. The other jobs are functions of their own modules taking the table:
:mod:`~userscope.container._limits` (limit checks and refusals),
:mod:`~userscope.container._finish` (running an ended user's USER cleanups),
:mod:`~userscope.container._closing` (``close_user``, shutdown),
:mod:`~userscope.container._expiry` (deadline heap, ``sweep``, the reaper),
:mod:`~userscope.container._leaks` and :mod:`~userscope.container._stats`
(``check_leaks``, ``stats``, counters), :mod:`~userscope.container._observe`
(telling the observer); the table's methods of the same names delegate to them for
the scopes and the creation protocol. The cleanup runner is
:mod:`~userscope.container._cleanup`.

The compiled build makes :class:`SessionTable` an extension type (``_table.pxd``):
its fields are C struct members and the hold/leave/release protocol C methods that
the scope classes call directly.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from userscope._speedups import context_slot, dict_get, monotonic
from userscope.container import _finish, _leaks, _limits, _locks, _observe, _stats
from userscope.container._expiry import DeadlineHeap
from userscope.container._leaks import LeakReport, LeakWatch
from userscope.container._observe import ScopeObserver
from userscope.container._scope import Scope
from userscope.container._session import Release, UserKey, UserSession, table_slot
from userscope.context import UserExecutionContext
from userscope.errors import ScopeClosedError, ScopeLimitError

if TYPE_CHECKING:  # the declarations, as typed no-ops
    from userscope import _nocython as cython
else:
    try:  # Cython's pure-Python mode: `cython.compiled` picks the C helpers (see _nocython)
        import cython
    except ImportError:  # pragma: no cover - a pure install: no Cython, no-op declarations
        from userscope import _nocython as cython

if TYPE_CHECKING:
    from userscope.container._cleanup import Observe
    from userscope.container._scopes import ScopeCM
    from userscope.container._state import Finalizer, ScopeState

__all__ = ["SessionTable"]

_USER: Final = Scope.USER
_CONNECTION: Final = Scope.CONNECTION
_REQUEST: Final = Scope.REQUEST
_KEEP: Final = Release.KEEP
_SCHEDULE: Final = Release.SCHEDULE
_FINISH: Final = Release.FINISH
_RECENT_FAILURES: Final = 20
_MONOTONIC: Final = time.monotonic  # the default clock, which `monotonic()` reads in C


class SessionTable:
    """A runtime's session table, limits, counters, and the protocol of its scopes (internal).

    One per :class:`~userscope.UserSessions`, which validates the arguments and holds
    it; the scope classes and the creation protocol hold the table itself. Every field
    below is read and written by the runtime's own modules under the locks the module
    docstring names.

    Example:
        >>> from userscope.container._table import SessionTable
        >>> table = SessionTable(max_users=None, max_age=None, idle_timeout=None,
        ...     max_connections_per_user=None, max_requests_per_user=None,
        ...     max_instances_per_user=None, cleanup_timeout=None, leak_check=False,
        ...     clock=lambda: 0.0)
        >>> len(table.users), table.closed
        (0, False)
    """

    users: OrderedDict[str | UserKey, UserSession]
    max_users: int | None
    max_age: float | None
    max_instances_per_user: int | None
    clock: Callable[[], float]
    lock: Any
    limited: bool
    closed: bool
    timed: bool
    idle_timeout: float | None
    observer: ScopeObserver | None
    cleanup_timeout: float | None
    open_states: set[ScopeCM]
    retired: set[UserSession]
    expiry: DeadlineHeap
    expired: int
    evictions: int
    refusals: Counter[str]
    leak_check: bool
    max_connections_per_user: int | None
    max_requests_per_user: int | None
    cleanups_run: int
    cleanups_failed: int
    recent_failures: deque[str]
    leak_watch: LeakWatch
    leaks: list[LeakReport]
    reaper: asyncio.Task[None] | None
    background: set[Any]
    observer_failed: set[str]

    def __init__(
        self,
        *,
        max_users: int | None,
        max_age: float | None,
        idle_timeout: float | None,
        max_connections_per_user: int | None,
        max_requests_per_user: int | None,
        max_instances_per_user: int | None,
        cleanup_timeout: float | None,
        leak_check: bool,
        clock: Callable[[], float],
    ) -> None:
        self.max_users = max_users
        self.max_age = max_age
        self.idle_timeout = idle_timeout
        self.max_connections_per_user = max_connections_per_user
        self.max_requests_per_user = max_requests_per_user
        self.max_instances_per_user = max_instances_per_user
        self.cleanup_timeout = cleanup_timeout
        self.leak_check = leak_check
        self.observer = None
        self.clock = clock
        self.lock = _locks.new_lock(_locks.TABLE)
        # keyed by `table_slot(tenant_id, user_id)`; in LRU order
        self.users = OrderedDict()
        self.retired = set()  # out of the table, scopes still open
        self.open_states = set()  # open CONNECTION/REQUEST states
        self.expiry = DeadlineHeap()
        self.closed = False
        self.timed = max_age is not None or idle_timeout is not None
        # per-user concurrency counters are only kept when a limit needs them
        self.limited = max_connections_per_user is not None or max_requests_per_user is not None
        self.cleanups_run = 0
        self.cleanups_failed = 0
        self.recent_failures = deque(maxlen=_RECENT_FAILURES)
        self.evictions = 0
        self.expired = 0
        self.refusals = Counter()
        self.leak_watch = LeakWatch()
        self.leaks = []
        self.reaper = None
        self.background = set()  # tasks/futures finishing retired users
        self.observer_failed = set()

    # -- holds: opening a scope ----------------------------------------------------------

    def _take_hold(self, session: UserSession, kind: Scope) -> ScopeLimitError | None:
        """Count one more open scope of ``kind`` (session lock held); or the refusal."""
        if self.limited:
            error = _limits.limit_error(self, session, kind)
            if error is not None:
                return error
            session.connections += kind is _CONNECTION
            session.requests += kind is _REQUEST
        session.active += 1
        return None

    def hold_user(
        self, ctx: UserExecutionContext, kind: Scope, async_: bool
    ) -> tuple[UserSession, list[UserSession] | None]:
        """Hold the user's session for a new top-level scope; returns the session and
        the sessions evicted to make room (their cleanups are the caller's to run)."""
        if cython.compiled:  # C calls: no attribute hook of the pydantic model, no
            # method call of the OrderedDict; pure, the same as expressions (no calls)
            session = dict_get(self.users, context_slot(ctx))
        else:
            tenant_id = ctx.tenant_id
            session = self.users.get(ctx.user_id if tenant_id is None else (tenant_id, ctx.user_id))
        if session is not None and self.max_users is None:
            lock = session.lock
            lock.acquire()  # fast path: a live session, no LRU order to keep
            try:
                if session.retired or (
                    not session.active
                    and (self._now() if cython.compiled else self.clock()) >= session.expires_at
                ):
                    error: ScopeLimitError | None = None
                    joined = False
                elif self.limited:
                    error = self._take_hold(session, kind)
                    joined = error is None
                else:
                    session.active += 1  # `_take_hold` without a limit to check, inlined
                    error = None
                    joined = True
            finally:
                lock.release()
            if error is not None:
                raise _limits.refused(self, error)
            if joined:
                return session, None
        return self._acquire(ctx, kind, async_)

    def _now(self) -> float:
        """The clock's time (compiled: the default clock read in C, no Python call)."""
        return monotonic() if self.clock is _MONOTONIC else self.clock()

    def _acquire(
        self, ctx: UserExecutionContext, kind: Scope, async_: bool
    ) -> tuple[UserSession, list[UserSession] | None]:
        """Slow path: create, replace or evict sessions under the table lock."""
        key = (ctx.tenant_id, ctx.user_id)
        slot = table_slot(*key)
        now = self.clock()
        evicted: list[UserSession] = []
        created = False
        error: ScopeLimitError | None = None
        with self.lock:
            if self.closed:
                raise ScopeClosedError(None, ctx.user_id, None, ctx.tenant_id)
            session = self.users.get(slot)
            if session is not None and session.active == 0 and now >= session.expires_at:
                self.retire(session)
                self.retired.discard(session)
                self.expired += 1
                evicted.append(session)
                session = None
            if session is None:
                if self.max_users is not None and len(self.users) >= self.max_users:
                    victim = self._pick_victim(async_)
                    if victim is None:
                        error = ScopeLimitError(
                            "max_users",
                            ctx.user_id,
                            len(self.users),
                            self.max_users,
                            ctx.tenant_id,
                        )
                    else:
                        self.retire(victim)
                        self.retired.discard(victim)
                        self.evictions += 1
                        evicted.append(victim)
                if error is None:
                    session = UserSession(key, now, self.max_age, self.max_instances_per_user)
                    self.users[slot] = session
                    created = True
            if session is not None:
                with session.lock:
                    error = self._take_hold(session, kind)
                if error is None and self.max_users is not None:
                    self.users.move_to_end(slot)
            if error is not None:
                self.refusals[error.limit] += 1
        if error is not None:
            raise _limits.refused(self, error, counted=True)
        assert session is not None
        if created and self.observer is not None:
            session.state.token = _observe.notify_opened(self, _USER, ctx)
        return session, evicted or None

    def hold_nested(self, session: UserSession) -> None:
        """Hold ``session`` for a request nested in one of its connections."""
        lock = session.lock
        lock.acquire()  # not `with`: the context-manager protocol costs more than the hold
        try:
            if self.closed:
                raise ScopeClosedError(None, session.user_id, None, session.tenant_id)
            if self.limited:
                error = self._take_hold(session, _REQUEST)
            else:
                session.active += 1  # `_take_hold` without a limit to check, inlined
                error = None
        finally:
            lock.release()
        if error is not None:
            raise _limits.refused(self, error)

    # -- holds: leaving a scope ----------------------------------------------------------

    def _unhold(self, session: UserSession, scope: ScopeCM | None) -> Release:
        """Drop one hold (session lock held); say what the caller must do next."""
        if self.limited and scope is not None:
            session.connections -= scope.kind is _CONNECTION
            session.requests -= scope.kind is _REQUEST
        session.active -= 1
        if session.active:
            return _KEEP
        if session.retired:
            return _FINISH
        idle = self.idle_timeout
        if idle is not None:
            now = self._now() if cython.compiled else self.clock()
            session.expires_at = min(session.max_expiry, now + idle)
        if session.scheduled or not self.timed:
            return _KEEP
        session.scheduled = True
        return _SCHEDULE

    def leave(self, scope: ScopeCM) -> list[Finalizer] | Release:
        """Detach a closing scope's state; drop its hold unless finalizers must run first.

        Returns the finalizers to run (a non-empty list; then :meth:`release` drops the
        hold), or, with none to run, the :class:`Release` saying what the caller must do
        next (:meth:`schedule`, or finish the user). One value, not a pair: no tuple to
        build and unpack on every exit.
        """
        self.open_states.discard(scope)
        session = scope.session
        watched: list[_leaks.Suspect] | None = None
        session.lock.acquire()
        try:
            if self.leak_check and scope.cache:
                watched = _leaks.suspects(scope)
            pending = scope.pending
            finalizers = scope.detach()
            action = _KEEP if finalizers else self._unhold(session, scope)
            woken = _finish.fail_pending(pending, scope.level, session) if pending else None
        finally:
            session.lock.release()
        if woken:
            for creation in woken:
                creation.wake()
        if watched:
            _leaks.watch(self, watched)
        if finalizers:
            return finalizers
        return action

    def schedule(self, session: UserSession) -> None:
        """Queue an idle session's next possible expiry (takes the table lock)."""
        with self.lock:
            if not session.retired:
                self.expiry.push(session)

    def release(
        self, session: UserSession, scope: ScopeCM | None, ran: int, failures: list[BaseException]
    ) -> Release:
        """Drop one hold after ``ran`` cleanups ran (``failures`` of them failed);
        returns FINISH (the caller finishes the user) or KEEP."""
        session.lock.acquire()
        try:
            if ran:
                session.cleanups_run += ran
                session.cleanups_failed += len(failures)
            action = self._unhold(session, scope)
        finally:
            session.lock.release()
        if failures:
            _stats.remember(self, failures)
        if action is _SCHEDULE:
            self.schedule(session)
            return _KEEP
        return action

    def _pick_victim(self, async_: bool) -> UserSession | None:
        for session in self.users.values():  # least recently used first
            if session.active == 0 and (async_ or not session.state.has_async_finalizers()):
                return session
        return None

    def retire(self, session: UserSession) -> None:
        """Take a session out of the table (table lock held)."""
        if self.users.get(session.slot) is session:
            del self.users[session.slot]
        with session.lock:
            session.retired = True
            self.expiry.ended(session)
        self.retired.add(session)

    # -- finishing users (:mod:`userscope.container._finish`) ----------------------------

    def finish_user_sync(
        self, session: UserSession, exc: BaseException | None = None
    ) -> list[BaseException]:
        """Run a retired user's USER cleanups after its last scope left (sync exit)."""
        return _finish.finish_user_sync(self, session, exc=exc)

    async def finish_user_async(
        self, session: UserSession, exc: BaseException | None = None
    ) -> tuple[list[BaseException], asyncio.CancelledError | None]:
        """Async twin of :meth:`finish_user_sync`: ``(failures, cancellation)``."""
        return await _finish.finish_user_async(self, session, exc=exc)

    def finish_evicted_sync(self, evicted: list[UserSession]) -> None:
        """Run the cleanups of the users a scope's opening evicted (failures are logged)."""
        _finish.finish_evicted_sync(self, evicted)

    async def finish_evicted_async(
        self, evicted: list[UserSession]
    ) -> asyncio.CancelledError | None:
        """Async twin of :meth:`finish_evicted_sync`; the cancellation that arrived."""
        return await _finish.finish_evicted_async(self, evicted)

    # -- limits and observation (:mod:`~userscope.container._limits`, ``_observe``) ------

    def refused(self, error: ScopeLimitError) -> ScopeLimitError:
        """Count a refusal (no lock held) and tell the observer; return it to raise."""
        return _limits.refused(self, error)

    def notify_opened(self, level: Scope, ctx: UserExecutionContext) -> object:
        """A scope opened: the observer's token for it (call only with an observer)."""
        return _observe.notify_opened(self, level, ctx)

    def notify_closed(self, scope: ScopeCM, failures: list[BaseException]) -> None:
        """A CONNECTION/REQUEST scope closed (call only with an observer)."""
        _observe.notify_closed(self, scope, failures)

    def observe_cleanup(self, state: ScopeState) -> Observe | None:
        """The per-finalizer callback for the cleanup runner (``None``: no observer)."""
        return _observe.observe_cleanup(self, state)

    def notify_created(self, state: ScopeState, provider: object) -> None:
        """An instance was published (the creation protocol; only with an observer)."""
        _observe.notify_created(self, state, provider)
