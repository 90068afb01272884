"""`UserSessions`: the runtime that owns USER scopes and opens CONNECTION/REQUEST scopes."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import heapq
import itertools
import logging
import threading
import time
import weakref
from collections import Counter, OrderedDict
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel, ConfigDict

from userscope.container._observe import ScopeObserver
from userscope.container._scope import (
    ACTIVE,
    Scope,
    ScopeState,
    notify,
    provider_name,
    run_finalizers_async,
    run_finalizers_sync,
    run_observed_async,
    run_observed_sync,
    settle,
)
from userscope.context import UserExecutionContext
from userscope.errors import (
    CleanupError,
    IsolationError,
    ScopeClosedError,
    ScopeLimitError,
    UserscopeError,
)

if TYPE_CHECKING:
    from userscope.container._observe import UserKey

__all__ = ["LeakReport", "SessionStats", "UserSessions"]

logger = logging.getLogger("userscope")

_HOUR: Final = 3600.0


class LeakReport(BaseModel):
    """A scoped instance that was still alive after its scope closed.

    Attributes:
        type: qualified name of the instance's class.
        provider: name of the provider that created it.
        user_id: the user whose scope created it.
        scope: the level of that scope.
        referrers: a short summary of what still refers to it.

    Example:
        >>> import userscope as us
        >>> us.LeakReport(type="Agent", provider="C.agent", user_id="a", scope="REQUEST",
        ...               referrers=["list"]).provider
        'C.agent'
    """

    model_config = ConfigDict(frozen=True)

    type: str
    provider: str
    user_id: str
    scope: str
    referrers: list[str]


class SessionStats(BaseModel):
    """A snapshot of a :class:`UserSessions` runtime, as returned by ``stats()``.

    Example:
        >>> import userscope as us
        >>> us.UserSessions().stats().users
        0
    """

    model_config = ConfigDict(frozen=True)

    users: int
    connections: int
    requests: int
    instances: int
    instances_by_provider: dict[str, int]
    cleanups_run: int
    cleanups_failed: int
    evictions: int
    expired: int
    refusals: dict[str, int]
    leaks_detected: int
    closed: bool


class _UserSession:
    """One user's USER scope plus its counters (internal).

    Counters are changed under ``lock``; the session table and the deadline heap under
    the owner's lock. The hot path (a user that already has a session) takes only
    ``lock``. ``connections`` and ``requests`` are only counted when the owner enforces
    a per-user concurrency limit; :meth:`UserSessions.stats` counts open scopes instead.
    """

    __slots__ = (
        "__weakref__",
        "active",
        "announced",
        "cleanups_failed",
        "cleanups_run",
        "connections",
        "created_at",
        "expires_at",
        "instances",
        "lock",
        "max_expiry",
        "owner",
        "reason",
        "requests",
        "retired",
        "scheduled",
        "state",
        "tenant_id",
        "user_id",
    )

    def __init__(
        self, owner: UserSessions, user_id: str, now: float, tenant_id: str | None = None
    ) -> None:
        self.owner = owner
        self.user_id = user_id
        self.tenant_id = tenant_id
        self.announced = False  # the observer was told this USER scope opened
        self.reason = "closed"  # why it ended, for the observer: set when retired
        self.lock = threading.RLock()
        self.state = ScopeState()
        self.state.setup(Scope.USER, self, False)
        self.active = 0  # open scopes holding this session (user, connection, nested request)
        self.connections = 0
        self.requests = 0
        self.instances = 0
        self.created_at = now
        max_age = owner._max_age
        self.max_expiry = _NEVER if max_age is None else now + max_age
        self.expires_at = self.max_expiry  # meaningful while `active` is 0
        self.retired = False  # out of the table; finished when `active` drops to 0
        self.scheduled = False  # has an entry in the owner's deadline heap
        self.cleanups_run = 0  # finalizers of this user's CONNECTION/REQUEST scopes
        self.cleanups_failed = 0

    def admit(self, provider_name: str) -> None:
        """Refuse a new scoped instance when the per-user budget is spent (lock held)."""
        maximum = self.owner._max_instances_per_user
        if maximum is not None and self.instances >= maximum:
            self.owner._refuse("max_instances_per_user")
            raise ScopeLimitError("max_instances_per_user", self.user_id, self.instances, maximum)


_USER: Final = Scope.USER  # enum member lookups cost ~0.1 us each: bind them once
_CONNECTION: Final = Scope.CONNECTION
_REQUEST: Final = Scope.REQUEST
_NEVER: Final = float("inf")
# What releasing a hold on a session asks of the caller (see UserSessions._unhold).
_KEEP: Final = 0
_SCHEDULE: Final = 1
_FINISH: Final = 2
_name_of = provider_name
_get_active = ACTIVE.get
_set_active = ACTIVE.set
_reset_active = ACTIVE.reset


def _check_context(ctx: object) -> None:
    if type(ctx) is not UserExecutionContext and not isinstance(ctx, UserExecutionContext):
        raise TypeError(
            f"expected a UserExecutionContext, got {type(ctx).__name__}; build one from a "
            "verified identity: UserExecutionContext(user_id=..., thread_id=...)"
        )


def _set_outer(token: contextvars.Token[Any]) -> None:
    """Restore the frame ``token`` replaced when the scope is left in another context
    (``ContextVar.reset`` refuses that; e.g. a generator-based wrapper)."""
    _set_active(None if token.old_value is token.MISSING else token.old_value)


class _ScopeCM(ScopeState):
    """A CONNECTION/REQUEST scope: its own context manager and its own state (internal).

    Returned by :meth:`UserSessions.request` and :meth:`~UserSessions.connection`;
    usable once, with ``with`` or ``async with``. A request outside any connection of
    its user (plain HTTP) opens CONNECTION and REQUEST together: this one state serves
    both levels.
    """

    __slots__ = ("_ctx", "_kind", "_owner", "_token")

    def __init__(self, owner: UserSessions, ctx: UserExecutionContext, kind: Scope) -> None:
        if type(ctx) is not UserExecutionContext:
            _check_context(ctx)
        self._owner = owner
        self._ctx = ctx
        self._kind = kind
        self._token: contextvars.Token[Any] | None = None
        # the state half; `_open` sets `level`, `session` and `async_`
        self.cache = {}
        self.pending = None
        self.finalizers = []
        self.closed = False
        self.observed = None

    # -- entering -----------------------------------------------------------------
    def _open(self, async_: bool) -> list[_UserSession] | None:
        if self._token is not None or self.closed:
            raise UserscopeError(
                "this scope object is open or was already used: each `with` needs a new one; "
                f"call sessions.{self._kind.name.lower()}(ctx) again"
            )
        owner = self._owner
        ctx = self._ctx
        request = self._kind is _REQUEST
        evicted: list[_UserSession] | None = None
        conn: ScopeState | None = None  # the connection a request nests in, if any
        frame = _get_active()
        if frame is not None and frame[4] is owner:
            user_state = frame[3]
            if user_state.session.user_id != ctx.user_id:
                raise IsolationError(user_state.session.user_id, ctx.user_id)
            if request:
                conn = frame[2]
        if conn is not None:  # a request inside its user's connection
            if conn.closed:
                raise ScopeClosedError(_CONNECTION, ctx.user_id)
            session = conn.session
            owner._hold(session)
            self.level = _REQUEST
        else:  # a connection, or a request that is its own connection (plain HTTP)
            found = owner._users.get(ctx.user_id)
            if found is None or owner._max_users is not None or not owner._join(found, self):
                found, evicted = owner._acquire(ctx.user_id, self, async_, ctx.tenant_id)
            session = found
            conn = self
            self.level = _CONNECTION
        self.session = session
        self.async_ = async_
        owner._open_states.add(self)
        self._token = _set_active(
            (ctx, self if request else None, conn, session.state, owner, async_)
        )
        return evicted

    def _open_observed(self, async_: bool, observer: ScopeObserver) -> list[_UserSession] | None:
        """:meth:`_open`, then tell the observer (no lock held)."""
        try:
            evicted = self._open(async_)
        except ScopeLimitError as refusal:
            notify(observer, "limit_refused", refusal.limit, self._ctx.user_key)
            raise
        self._owner._announce(self.session, self._ctx, observer)
        self.observed = notify(observer, "scope_opened", self._kind, self._ctx)
        return evicted

    def __enter__(self) -> UserExecutionContext:
        observer = self._owner._observer
        evicted = self._open(False) if observer is None else self._open_observed(False, observer)
        if evicted:
            for session in evicted:
                self._owner._finish_user_sync(session, log_only=True)
        return self._ctx

    async def __aenter__(self) -> UserExecutionContext:
        observer = self._owner._observer
        evicted = self._open(True) if observer is None else self._open_observed(True, observer)
        if evicted:
            for session in evicted:
                await self._owner._finish_user_async(session, log_only=True)
        return self._ctx

    # -- leaving --------------------------------------------------------------------
    def _leave(self) -> tuple[list[tuple[int, Any, object]] | None, int]:
        """Restore the outer frame and detach this scope's state.

        Returns ``(finalizers, action)``. With finalizers to run, the session is still
        held (``action`` is ``_KEEP``): the caller runs them, then calls
        :meth:`UserSessions._release`. Without, the hold was dropped in the same locked
        section and ``action`` says what is left to do (see ``UserSessions._unhold``).
        """
        token, self._token = self._token, None
        if token is None:
            raise UserscopeError("this scope is not open; exit it only once")
        try:
            _reset_active(token)
        except ValueError:
            _set_outer(token)
        owner = self._owner
        session = self.session
        owner._open_states.discard(self)
        session.lock.acquire()
        try:
            if owner.leak_check and self.cache:
                owner._watch(self)
            finalizers = self.detach()
            if finalizers:
                return finalizers, _KEEP
            return None, owner._unhold(session, self)
        finally:
            session.lock.release()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        finalizers, action = self._leave()
        owner = self._owner
        observer = owner._observer
        if finalizers is None and action is _KEEP:
            if observer is not None:
                notify(observer, "scope_closed", self.observed, self._kind, None)
            return
        session = self.session
        failures: list[BaseException] = []
        if finalizers:
            ran = len(finalizers)
            try:
                if observer is None:
                    failures = run_finalizers_sync(finalizers, exc)
                else:
                    failures = run_observed_sync(finalizers, exc, observer, self)
            finally:
                action = owner._release(session, self, ran, len(failures))
        elif action is _SCHEDULE:
            owner._schedule(session)
        if observer is not None:
            error = failures[0] if failures else None
            notify(observer, "scope_closed", self.observed, self._kind, error)
        if action is _FINISH:
            failures += owner._finish_user_sync(session, log_only=False, exc=exc)
        if failures:
            settle(exc, failures, self.level, session.user_id)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        finalizers, action = self._leave()
        owner = self._owner
        observer = owner._observer
        if finalizers is None and action is _KEEP:
            if observer is not None:
                notify(observer, "scope_closed", self.observed, self._kind, None)
            return
        session = self.session
        failures: list[BaseException] = []
        if finalizers:
            ran = len(finalizers)
            try:
                if observer is None:
                    failures = await run_finalizers_async(finalizers, exc)
                else:
                    failures = await run_observed_async(finalizers, exc, observer, self)
            finally:
                action = owner._release(session, self, ran, len(failures))
        elif action is _SCHEDULE:
            owner._schedule(session)
        if observer is not None:
            error = failures[0] if failures else None
            notify(observer, "scope_closed", self.observed, self._kind, error)
        if action is _FINISH:
            failures += await owner._finish_user_async(session, log_only=False, exc=exc)
        if failures:
            settle(exc, failures, self.level, session.user_id)


class _UserScopeCM:
    """Enters only a user's USER scope (internal; see :meth:`UserSessions.user`)."""

    __slots__ = ("_ctx", "_owner", "_session", "_token")

    def __init__(self, owner: UserSessions, ctx: UserExecutionContext) -> None:
        _check_context(ctx)
        self._owner = owner
        self._ctx = ctx
        self._session: _UserSession | None = None
        self._token: contextvars.Token[Any] | None = None

    def _open(self, async_: bool) -> list[_UserSession] | None:
        if self._token is not None:
            raise UserscopeError("this scope object is already open; call sessions.user(ctx) again")
        owner = self._owner
        ctx = self._ctx
        frame = _get_active()
        if frame is not None and frame[4] is owner and frame[3].session.user_id != ctx.user_id:
            raise IsolationError(frame[3].session.user_id, ctx.user_id)
        evicted: list[_UserSession] | None = None
        session = owner._users.get(ctx.user_id)
        if session is None or owner._max_users is not None or not owner._join(session, None):
            session, evicted = owner._acquire(ctx.user_id, None, async_, ctx.tenant_id)
        self._session = session
        self._token = _set_active((ctx, None, None, session.state, owner, async_))
        return evicted

    def _open_observed(self, async_: bool, observer: ScopeObserver) -> list[_UserSession] | None:
        try:
            evicted = self._open(async_)
        except ScopeLimitError as refusal:
            notify(observer, "limit_refused", refusal.limit, self._ctx.user_key)
            raise
        assert self._session is not None
        self._owner._announce(self._session, self._ctx, observer)
        return evicted

    def __enter__(self) -> UserExecutionContext:
        observer = self._owner._observer
        evicted = self._open(False) if observer is None else self._open_observed(False, observer)
        for session in evicted or ():
            self._owner._finish_user_sync(session, log_only=True)
        return self._ctx

    async def __aenter__(self) -> UserExecutionContext:
        observer = self._owner._observer
        evicted = self._open(True) if observer is None else self._open_observed(True, observer)
        for session in evicted or ():
            await self._owner._finish_user_async(session, log_only=True)
        return self._ctx

    def _leave(self) -> _UserSession:
        token, self._token = self._token, None
        if token is None or self._session is None:
            raise UserscopeError("this scope is not open; exit it only once")
        try:
            _reset_active(token)
        except ValueError:
            _set_outer(token)
        return self._session

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self._leave()
        if self._owner._release(session, None, 0, 0) is _FINISH:
            failures = self._owner._finish_user_sync(session, log_only=False, exc=exc)
            settle(exc, failures, _USER, session.user_id)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self._leave()
        if self._owner._release(session, None, 0, 0) is _FINISH:
            failures = await self._owner._finish_user_async(session, log_only=False, exc=exc)
            settle(exc, failures, _USER, session.user_id)


class UserSessions:
    """The runtime that owns every USER scope and opens CONNECTION and REQUEST scopes.

    One per application (no module-level global): each instance is independent. A
    user's USER scope is created on first use, shared by that user's concurrent
    connections, kept between requests, and ended by :meth:`close_user`, by the limits
    below (through :meth:`sweep` / the reaper), or by :meth:`close` at shutdown.

    Args:
        max_users: most user sessions kept at once; at the limit the least recently
            used idle session is evicted, or the new user is refused. ``None``: no limit.
        max_age: seconds a user session may live (default 24 h); expired sessions are
            closed once idle.
        idle_timeout: seconds a session may sit unused before it is closed. ``None``: never.
        max_connections_per_user: concurrent connections per user. ``None``: no limit.
        max_requests_per_user: concurrent requests per user. ``None``: no limit.
        max_instances_per_user: live scoped instances per user (default 50).
        leak_check: record scoped instances still alive after their scope closed.
        clock: monotonic clock in seconds (injectable for tests).
        observer: a :class:`~userscope.ScopeObserver` told about scopes, instances,
            cleanups, refusals, ended users, sweeps and leaks (e.g. the OpenTelemetry
            one from ``userscope.otel.instrument``). ``None``: nothing is reported.

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
        max_age: float | None = 24 * _HOUR,
        idle_timeout: float | None = None,
        max_connections_per_user: int | None = None,
        max_requests_per_user: int | None = None,
        max_instances_per_user: int | None = 50,
        leak_check: bool = False,
        clock: Callable[[], float] = time.monotonic,
        observer: ScopeObserver | None = None,
    ) -> None:
        for name, value in (
            ("max_users", max_users),
            ("max_age", max_age),
            ("idle_timeout", idle_timeout),
            ("max_connections_per_user", max_connections_per_user),
            ("max_requests_per_user", max_requests_per_user),
            ("max_instances_per_user", max_instances_per_user),
        ):
            if value is not None and (isinstance(value, bool) or value <= 0):
                raise ValueError(f"{name} must be a positive number or None, got {value!r}")
        self._max_users = max_users
        self._max_age = max_age
        self._idle_timeout = idle_timeout
        self._max_connections_per_user = max_connections_per_user
        self._max_requests_per_user = max_requests_per_user
        self._max_instances_per_user = max_instances_per_user
        self.leak_check = leak_check
        self._clock = clock
        self._observer: ScopeObserver | None = None
        self.observer = observer
        self._lock = threading.Lock()
        self._users: OrderedDict[str, _UserSession] = OrderedDict()  # LRU order if max_users
        self._retired: set[_UserSession] = set()  # out of the table, scopes still open
        self._open_states: set[_ScopeCM] = set()  # open CONNECTION/REQUEST states
        self._deadlines: list[tuple[float, int, _UserSession]] = []  # one entry per session
        self._seq = itertools.count()
        self._closed = False
        self._timed = max_age is not None or idle_timeout is not None
        # per-user concurrency counters are only kept when a limit needs them
        self._limited = max_connections_per_user is not None or max_requests_per_user is not None
        self._cleanups_run = 0
        self._cleanups_failed = 0
        self._evictions = 0
        self._expired = 0
        self._refusals: Counter[str] = Counter()
        self._suspects: list[tuple[weakref.ref[Any], str, str, str, str]] = []
        self.leaks: list[LeakReport] = []
        self._reaper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

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
        """Concurrent connections per user (``None``: no limit; the default)."""
        return self._max_connections_per_user

    @property
    def max_requests_per_user(self) -> int | None:
        """Concurrent requests per user (``None``: no limit; the default)."""
        return self._max_requests_per_user

    @property
    def max_instances_per_user(self) -> int | None:
        """Live scoped instances per user (default 50; ``None``: no limit)."""
        return self._max_instances_per_user

    @property
    def observer(self) -> ScopeObserver | None:
        """The :class:`~userscope.ScopeObserver` told what the runtime does, or ``None``.

        Settable at any time; scopes opened before an observer was set are reported
        from their next event on (a user already in session is announced when it next
        opens a scope).
        """
        return self._observer

    @observer.setter
    def observer(self, observer: ScopeObserver | None) -> None:
        if observer is not None and not isinstance(observer, ScopeObserver):
            raise TypeError(
                f"observer must be a userscope.ScopeObserver (subclass it and override what "
                f"you need) or None, got {type(observer).__name__}"
            )
        self._observer = observer

    def _announce(
        self, session: _UserSession, ctx: UserExecutionContext, observer: ScopeObserver
    ) -> None:
        """Tell the observer a user's USER scope opened, once per session (no lock held)."""
        with session.lock:
            if session.announced:
                return
            session.announced = True
        session.state.observed = notify(observer, "scope_opened", _USER, ctx)

    # -- opening scopes ---------------------------------------------------------------
    def request(self, ctx: UserExecutionContext) -> _ScopeCM:
        """Open a REQUEST scope (``with`` or ``async with``).

        Nests in the active connection of the same user; otherwise joins the user's
        USER scope and opens CONNECTION and REQUEST together (the plain HTTP case).

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
        return _ScopeCM(self, ctx, _REQUEST)

    def connection(self, ctx: UserExecutionContext) -> _ScopeCM:
        """Open a CONNECTION scope (one WebSocket or HTTP connection) in the user's scope.

        Example:
            >>> import userscope as us
            >>> sessions = us.UserSessions()
            >>> with sessions.connection(us.UserExecutionContext(user_id="a", thread_id="t")):
            ...     us.current_scope()
            <Scope.CONNECTION: 2>
        """
        return _ScopeCM(self, ctx, _CONNECTION)

    def user(self, ctx: UserExecutionContext) -> _UserScopeCM:
        """Enter only the user's USER scope (background jobs that serve one user).

        Example:
            >>> import userscope as us
            >>> sessions = us.UserSessions()
            >>> with sessions.user(us.UserExecutionContext(user_id="a", thread_id="t")):
            ...     us.current_scope()
            <Scope.USER: 3>
        """
        return _UserScopeCM(self, ctx)

    # -- table management (internal) -----------------------------------------------
    def _refuse(self, limit: str) -> None:
        with self._lock:
            self._refusals[limit] += 1

    def _check_limits(self, session: _UserSession, connection: bool, request: bool) -> None:
        """Raise ScopeLimitError when a per-user concurrency limit is reached (lock held)."""
        maximum = self._max_connections_per_user
        if connection and maximum is not None and session.connections >= maximum:
            self._refuse("max_connections_per_user")
            raise ScopeLimitError(
                "max_connections_per_user", session.user_id, session.connections, maximum
            )
        maximum = self._max_requests_per_user
        if request and maximum is not None and session.requests >= maximum:
            self._refuse("max_requests_per_user")
            raise ScopeLimitError(
                "max_requests_per_user", session.user_id, session.requests, maximum
            )

    def _take_hold(self, session: _UserSession, connection: bool, request: bool) -> None:
        """Count one more open scope on ``session`` (lock held); refuse over a limit."""
        if self._limited:
            self._check_limits(session, connection, request)
            session.connections += connection
            session.requests += request
        session.active += 1

    def _join(self, session: _UserSession, scope: _ScopeCM | None) -> bool:
        """Fast path: hold a live session; False sends the caller to `_acquire`.

        ``scope`` is the CONNECTION scope being opened (``None`` for a USER-only scope).
        """
        lock = session.lock
        lock.acquire()
        try:
            if session.retired or (not session.active and self._clock() >= session.expires_at):
                return False
            if scope is not None and self._limited:
                self._take_hold(session, True, scope._kind is _REQUEST)
            else:
                session.active += 1
            return True
        finally:
            lock.release()

    def _acquire(
        self, user_id: str, scope: _ScopeCM | None, async_: bool, tenant_id: str | None = None
    ) -> tuple[_UserSession, list[_UserSession]]:
        """Slow path: create, replace or evict sessions under the table lock."""
        now = self._clock()
        evicted: list[_UserSession] = []
        with self._lock:
            if self._closed:
                raise ScopeClosedError(None, user_id)
            session = self._users.get(user_id)
            if session is not None and session.active == 0 and self._is_expired(session, now):
                self._retire(session, "expired")
                self._retired.discard(session)
                self._expired += 1
                evicted.append(session)
                session = None
            if session is None:
                if self._max_users is not None and len(self._users) >= self._max_users:
                    victim = self._pick_victim(async_)
                    if victim is None:
                        self._refusals["max_users"] += 1
                        raise ScopeLimitError(
                            "max_users", user_id, len(self._users), self._max_users
                        )
                    self._retire(victim, "evicted")
                    self._retired.discard(victim)
                    self._evictions += 1
                    evicted.append(victim)
                session = _UserSession(self, user_id, now, tenant_id)
                self._users[user_id] = session
            with session.lock:
                self._take_hold(
                    session, scope is not None, scope is not None and scope._kind is _REQUEST
                )
            if self._max_users is not None:
                self._users.move_to_end(user_id)
        return session, evicted

    def _hold(self, session: _UserSession) -> None:
        """Hold ``session`` for a request nested in one of its connections."""
        with session.lock:
            if self._closed:
                raise ScopeClosedError(None, session.user_id)
            self._take_hold(session, False, True)

    def _unhold(self, session: _UserSession, scope: _ScopeCM | None) -> int:
        """Drop one hold (lock held); return what the caller must do next.

        ``_FINISH``: the session was retired and this was its last scope, finish it;
        ``_SCHEDULE``: it went idle and needs a deadline-heap entry; ``_KEEP``: nothing.
        """
        if self._limited and scope is not None:
            session.connections -= scope.level is _CONNECTION
            session.requests -= scope._kind is _REQUEST
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

    def _schedule(self, session: _UserSession) -> None:
        with self._lock:
            self._push_deadline(session)

    def _release(self, session: _UserSession, scope: _ScopeCM | None, ran: int, failed: int) -> int:
        """Drop one hold after cleanups ran; returns ``_FINISH`` or ``_KEEP``."""
        session.lock.acquire()
        try:
            if ran:
                session.cleanups_run += ran
                session.cleanups_failed += failed
            action = self._unhold(session, scope)
        finally:
            session.lock.release()
        if action is _SCHEDULE:
            self._schedule(session)
            return _KEEP
        return action

    def _is_expired(self, session: _UserSession, now: float) -> bool:
        """Whether an idle session is past its deadline."""
        return now >= session.expires_at

    def _push_deadline(self, session: _UserSession) -> None:
        """Queue the session's next possible expiry (table lock held)."""
        heapq.heappush(self._deadlines, (session.expires_at, next(self._seq), session))

    def _pick_victim(self, async_: bool) -> _UserSession | None:
        for session in self._users.values():  # least recently used first
            if session.active == 0 and (async_ or not session.state.has_async_finalizers()):
                return session
        return None

    def _retire(self, session: _UserSession, reason: str) -> None:
        """Take a session out of the table (table lock held); ``reason`` is for the observer."""
        if self._users.get(session.user_id) is session:
            del self._users[session.user_id]
        with session.lock:
            if not session.retired:
                session.reason = reason
            session.retired = True
        self._retired.add(session)

    # -- cleanup plumbing (internal) ------------------------------------------------
    def _watch(self, state: ScopeState) -> None:
        for key, value in state.cache.items():
            try:
                ref = weakref.ref(value)
            except TypeError:
                continue
            level = getattr(type(key), "scope", state.level)  # the provider's own level
            self._suspects.append(
                (
                    ref,
                    type(value).__qualname__,
                    _name_of(key),
                    state.session.user_id,
                    level.name,
                )
            )

    def _count(self, ran: int, failures: list[BaseException]) -> None:
        with self._lock:
            self._cleanups_run += ran
            self._cleanups_failed += len(failures)

    def _run_sync(
        self, finalizers: list[tuple[int, Any, object]], exc: BaseException | None
    ) -> list[BaseException]:
        ran = len(finalizers)
        failures = run_finalizers_sync(finalizers, exc)
        self._count(ran, failures)
        return failures

    async def _run_async(
        self, finalizers: list[tuple[int, Any, object]], exc: BaseException | None
    ) -> list[BaseException]:
        ran = len(finalizers)
        failures = await run_finalizers_async(finalizers, exc)
        self._count(ran, failures)
        return failures

    def _detach_user(self, session: _UserSession) -> list[tuple[int, Any, object]]:
        """Close a finished session's USER state; fold its counters into the totals."""
        with session.lock:
            if self.leak_check and session.state.cache:
                self._watch(session.state)
            finalizers = session.state.detach()
            ran, failed = session.cleanups_run, session.cleanups_failed
            session.cleanups_run = session.cleanups_failed = 0
        with self._lock:
            self._cleanups_run += ran
            self._cleanups_failed += failed
        return finalizers

    def _run_state_sync(self, state: ScopeState, exc: BaseException | None) -> list[BaseException]:
        finalizers = self._detach_user(state.session)
        observer = self._observer
        if observer is None:
            return self._run_sync(finalizers, exc)
        ran = len(finalizers)
        failures = run_observed_sync(finalizers, exc, observer, state)
        self._count(ran, failures)
        self._ended(state, observer, failures)
        return failures

    async def _run_state_async(
        self, state: ScopeState, exc: BaseException | None
    ) -> list[BaseException]:
        finalizers = self._detach_user(state.session)
        observer = self._observer
        if observer is None:
            return await self._run_async(finalizers, exc)
        ran = len(finalizers)
        failures = await run_observed_async(finalizers, exc, observer, state)
        self._count(ran, failures)
        self._ended(state, observer, failures)
        return failures

    def _ended(
        self, state: ScopeState, observer: ScopeObserver, failures: list[BaseException]
    ) -> None:
        """Tell the observer a USER scope closed and why (no lock held)."""
        session = state.session
        notify(observer, "scope_closed", state.observed, _USER, failures[0] if failures else None)
        user: UserKey = (session.tenant_id, session.user_id)
        notify(observer, "user_ended", user, session.reason)

    def _finish_user_sync(
        self, session: _UserSession, *, log_only: bool, exc: BaseException | None = None
    ) -> list[BaseException]:
        with self._lock:
            self._retired.discard(session)
        if session.state.has_async_finalizers():
            return self._defer_async(session, log_only)
        failures = self._run_state_sync(session.state, exc)
        if log_only:
            return []
        return failures

    async def _finish_user_async(
        self, session: _UserSession, *, log_only: bool, exc: BaseException | None = None
    ) -> list[BaseException]:
        with self._lock:
            self._retired.discard(session)
        failures = await self._run_state_async(session.state, exc)
        return [] if log_only else failures

    def _defer_async(self, session: _UserSession, log_only: bool) -> list[BaseException]:
        """A sync exit retired a session whose cleanups are async: run them on the loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            error = UserscopeError(
                f"the USER scope of {session.user_id!r} holds async cleanups but was closed "
                "from synchronous code with no running event loop; close it with "
                "`await sessions.aclose_user(...)` or `await sessions.aclose()`"
            )
            with self._lock:
                self._retired.add(session)  # keep it so aclose() can still finish it
            if log_only:
                logger.error("%s", error)
                return []
            return [error]
        task = loop.create_task(self._finish_user_async(session, log_only=True))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return []

    # -- closing --------------------------------------------------------------------
    def _take_user(self, user_id: str) -> _UserSession | None:
        with self._lock:
            session = self._users.get(user_id)
            if session is None:
                return None
            self._retire(session, "closed")
            if session.active:
                return None  # finished by the last scope that leaves
            self._retired.discard(session)
            return session

    def close_user(self, user_id: str) -> None:
        """End a user's USER scope: at once when idle, else when its last scope exits.

        Raises:
            UserscopeError: the user's scope holds async cleanups; use :meth:`aclose_user`.
                Nothing is closed in that case.
            CleanupError: some cleanups failed (all of them ran).

        Example:
            >>> import userscope as us
            >>> sessions = us.UserSessions()
            >>> with sessions.request(us.UserExecutionContext(user_id="a", thread_id="t")):
            ...     pass
            >>> sessions.close_user("a"); sessions.stats().users
            0
        """
        with self._lock:
            session = self._users.get(user_id)
            if session is not None and session.active == 0 and session.state.has_async_finalizers():
                raise UserscopeError(
                    f"the USER scope of {user_id!r} holds async cleanups; nothing was closed. "
                    "Use `await sessions.aclose_user(user_id)`."
                )
        session = self._take_user(user_id)
        if session is not None:
            failures = self._run_state_sync(session.state, None)
            settle(None, failures, _USER, user_id)

    async def aclose_user(self, user_id: str) -> None:
        """Async twin of :meth:`close_user`; runs async cleanups too.

        Example:
            >>> import asyncio, userscope as us
            >>> asyncio.run(us.UserSessions().aclose_user("nobody"))
        """
        session = self._take_user(user_id)
        if session is not None:
            failures = await self._run_state_async(session.state, None)
            settle(None, failures, _USER, user_id)

    def _begin_close(self) -> list[_UserSession]:
        with self._lock:
            self._closed = True
            idle: list[_UserSession] = []
            for session in list(self._users.values()):
                self._retire(session, "shutdown")
            for session in list(self._retired):
                if session.active == 0:
                    self._retired.discard(session)
                    idle.append(session)
            self._deadlines.clear()
            return idle

    def close(self) -> None:
        """Shut down: refuse new scopes and run every user's cleanups.

        Users with open scopes are finished when their last scope exits.

        Raises:
            UserscopeError: some user scope holds async cleanups; use :meth:`aclose`.
                Nothing is closed in that case.
            CleanupError: some cleanups failed (all of them ran).

        Example:
            >>> import userscope as us
            >>> sessions = us.UserSessions(); sessions.close(); sessions.stats().closed
            True
        """
        with self._lock:
            holders = [
                s.user_id
                for s in (*self._users.values(), *self._retired)
                if s.active == 0 and s.state.has_async_finalizers()
            ]
        if holders:
            raise UserscopeError(
                f"user scopes {sorted(holders)} hold async cleanups; nothing was closed. "
                "Use `await sessions.aclose()`."
            )
        failures: list[BaseException] = []
        for session in self._begin_close():
            failures += self._run_state_sync(session.state, None)
        self.check_leaks()
        _settle_many(failures)

    async def aclose(self) -> None:
        """Async twin of :meth:`close`; also stops the reaper task.

        Example:
            >>> import asyncio, userscope as us
            >>> asyncio.run(us.UserSessions().aclose())
        """
        reaper, self._reaper = self._reaper, None
        if reaper is not None:
            reaper.cancel()
            try:
                await reaper
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        failures: list[BaseException] = []
        for session in self._begin_close():
            failures += await self._run_state_async(session.state, None)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        self.check_leaks()
        _settle_many(failures)

    # -- expiry -----------------------------------------------------------------------
    def _pop_expired(self, async_: bool) -> list[_UserSession]:
        now = self._clock()
        due: list[_UserSession] = []
        requeued: list[_UserSession] = []
        with self._lock:
            heap = self._deadlines
            while heap and heap[0][0] <= now:
                _, _, session = heapq.heappop(heap)
                with session.lock:
                    session.scheduled = False
                    if session.retired or session.active:
                        continue  # gone, or in use: rescheduled when it next goes idle
                    expired = self._is_expired(session, now)
                    if not expired or (not async_ and session.state.has_async_finalizers()):
                        session.scheduled = True  # used since, or needs the async sweep
                        requeue = True
                    else:
                        requeue = False
                if requeue:
                    requeued.append(session)
                    continue
                self._retire(session, "expired")
                self._retired.discard(session)
                self._expired += 1
                due.append(session)
            for session in requeued:  # after the loop: an entry due now must not be popped again
                self._push_deadline(session)
        return due

    def sweep(self) -> int:
        """Close every idle session past its ``idle_timeout`` or ``max_age``.

        Costs time proportional to the expired sessions (a deadline heap), not to all.
        A session in use is never reaped. Returns how many sessions were closed.

        Example:
            >>> import userscope as us
            >>> us.UserSessions(idle_timeout=60).sweep()
            0
        """
        start = time.perf_counter()
        due = self._pop_expired(async_=False)
        for session in due:
            self._finish_expired_sync(session)
        self._swept(len(due), start)
        self.check_leaks()
        return len(due)

    async def asweep(self) -> int:
        """Async twin of :meth:`sweep`; also closes sessions with async cleanups.

        Example:
            >>> import asyncio, userscope as us
            >>> asyncio.run(us.UserSessions(idle_timeout=60).asweep())
            0
        """
        start = time.perf_counter()
        due = self._pop_expired(async_=True)
        for session in due:
            failures = await self._run_state_async(session.state, None)
            for failure in failures:
                logger.error("expiry cleanup of %r failed: %r", session.user_id, failure)
        self._swept(len(due), start)
        self.check_leaks()
        return len(due)

    def _swept(self, closed: int, start: float) -> None:
        observer = self._observer
        if observer is not None:
            notify(observer, "swept", closed, time.perf_counter() - start)

    def _finish_expired_sync(self, session: _UserSession) -> None:
        failures = self._run_state_sync(session.state, None)
        for failure in failures:
            logger.error("expiry cleanup of %r failed: %r", session.user_id, failure)

    def start_reaper(self, interval: float | None = None) -> asyncio.Task[None] | None:
        """Start a background task on the running loop that calls :meth:`asweep` periodically.

        Args:
            interval: seconds between sweeps; by default a quarter of the shortest of
                ``idle_timeout`` and ``max_age``, between 1 s and 60 s.

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
        limits = [v for v in (self.idle_timeout, self.max_age) if v is not None]
        if not limits:
            return None
        if self._reaper is not None and not self._reaper.done():
            return self._reaper
        period = interval if interval is not None else min(60.0, max(1.0, min(limits) / 4))
        if period <= 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        self._reaper = asyncio.get_running_loop().create_task(self._reap(period))
        return self._reaper

    async def _reap(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                await self.asweep()
            except Exception:  # the reaper must outlive one bad sweep
                logger.exception("userscope reaper sweep failed")

    # -- observation ------------------------------------------------------------------
    def check_leaks(self) -> list[LeakReport]:
        """Report scoped instances still alive after their scope closed (``leak_check``).

        Runs a garbage collection only when a watched instance is still alive. New
        reports are appended to :attr:`leaks`, logged, and returned.

        Example:
            >>> import userscope as us
            >>> us.UserSessions(leak_check=True).check_leaks()
            []
        """
        with self._lock:
            suspects, self._suspects = self._suspects, []
        alive = [s for s in suspects if s[0]() is not None]
        if not alive:
            return []
        gc.collect()
        found: list[LeakReport] = []
        for ref, type_name, provider, user_id, level in alive:
            obj = ref()
            if obj is None:
                continue
            report = LeakReport(
                type=type_name,
                provider=provider,
                user_id=user_id,
                scope=level,
                referrers=_referrers(obj),
            )
            del obj
            logger.warning(
                "scoped instance %s from %s (user %r, %s scope) outlived its scope; held by %s",
                report.type,
                report.provider,
                report.user_id,
                report.scope,
                ", ".join(report.referrers) or "nothing visible",
            )
            found.append(report)
        with self._lock:
            self.leaks.extend(found)
        observer = self._observer
        if observer is not None:
            for report in found:
                notify(observer, "leak_detected", report.provider, Scope[report.scope], report.type)
        return found

    def stats(self) -> SessionStats:
        """Return a snapshot of users, open scopes, live instances and counters.

        Example:
            >>> import userscope as us
            >>> us.UserSessions().stats().connections
            0
        """
        with self._lock:
            sessions = [*self._users.values(), *self._retired]
            open_states = [*self._open_states.copy()]
            states = [*open_states, *(session.state for session in sessions)]
            live: Counter[str] = Counter()
            for state in states:
                for provider in list(state.cache):
                    live[_name_of(provider)] += 1
            return SessionStats(
                users=len(self._users),
                connections=sum(1 for state in open_states if state.level is _CONNECTION),
                requests=sum(1 for state in open_states if state._kind is _REQUEST),
                instances=sum(live.values()),
                instances_by_provider=dict(live),
                cleanups_run=self._cleanups_run + sum(s.cleanups_run for s in sessions),
                cleanups_failed=self._cleanups_failed + sum(s.cleanups_failed for s in sessions),
                evictions=self._evictions,
                expired=self._expired,
                refusals=dict(self._refusals),
                leaks_detected=len(self.leaks),
                closed=self._closed,
            )

    def __repr__(self) -> str:
        return f"<UserSessions users={len(self._users)} closed={self._closed}>"


def _settle_many(failures: list[BaseException]) -> None:
    plain = [f for f in failures if isinstance(f, Exception)]
    others = [f for f in failures if not isinstance(f, Exception)]
    if others:
        raise others[0]
    if plain:
        raise CleanupError(f"{len(plain)} cleanup(s) failed during shutdown", plain)


def _referrers(obj: object) -> list[str]:
    out: list[str] = []
    skip = {_referrers.__code__, UserSessions.check_leaks.__code__}
    for ref in gc.get_referrers(obj):
        if isinstance(ref, FrameType) and ref.f_code in skip:
            continue
        if isinstance(ref, FrameType):
            out.append(f"frame {ref.f_code.co_name} ({ref.f_code.co_filename}:{ref.f_lineno})")
        elif isinstance(ref, dict):
            owner = next(
                (o for o in gc.get_referrers(ref) if getattr(o, "__dict__", None) is ref), None
            )
            out.append(f"attribute of {type(owner).__qualname__}" if owner is not None else "dict")
        else:
            out.append(type(ref).__qualname__)
        if len(out) >= 5:
            break
    return out
