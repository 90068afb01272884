"""`UserSessions`: the runtime that owns USER scopes and opens CONNECTION/REQUEST scopes."""

from __future__ import annotations

import asyncio
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
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from userscope.container._scope import (
    ACTIVE,
    Frame,
    Scope,
    ScopeState,
    run_finalizers_async,
    run_finalizers_sync,
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
    """One user's USER scope plus its counters (internal)."""

    __slots__ = (
        "__weakref__",
        "active",
        "connections",
        "created_at",
        "deadline_version",
        "instances",
        "last_used",
        "lock",
        "owner",
        "requests",
        "retired",
        "state",
        "user_id",
    )

    def __init__(self, owner: UserSessions, ctx: UserExecutionContext, now: float) -> None:
        self.owner = owner
        self.user_id = ctx.user_id
        self.lock = threading.RLock()
        self.state = ScopeState(Scope.USER, ctx, self, self.lock, False)
        self.active = 0  # open scopes holding this session (user, connection, nested request)
        self.connections = 0
        self.requests = 0
        self.instances = 0
        self.created_at = now
        self.last_used = now
        self.retired = False  # removed from the table; closes when `active` drops to 0
        self.deadline_version = 0

    def admit(self, provider_name: str) -> None:
        """Refuse a new scoped instance when the per-user budget is spent."""
        maximum = self.owner.max_instances_per_user
        if maximum is not None and self.instances >= maximum:
            self.owner._refuse("max_instances_per_user")
            raise ScopeLimitError("max_instances_per_user", self.user_id, self.instances, maximum)

    def on_created(self, provider: object, value: Any, state: ScopeState) -> None:
        owner = self.owner
        with owner._lock:
            self.instances += 1
            owner._live[_name_of(provider)] += 1


def _name_of(provider: object) -> str:
    name = getattr(provider, "name", None)
    return name if isinstance(name, str) else repr(provider)


class _ScopeCM:
    """Context manager returned by :meth:`UserSessions.request` and friends (internal)."""

    __slots__ = ("_ctx", "_kind", "_opened", "_owner", "_session", "_token")

    def __init__(self, owner: UserSessions, ctx: UserExecutionContext, kind: Scope) -> None:
        if not isinstance(ctx, UserExecutionContext):
            raise TypeError(
                f"expected a UserExecutionContext, got {type(ctx).__name__}; build one from a "
                "verified identity: UserExecutionContext(user_id=..., thread_id=...)"
            )
        self._owner = owner
        self._ctx = ctx
        self._kind = kind
        self._opened: ScopeState | None = None
        self._session: _UserSession | None = None
        self._token: Any = None

    # -- entering -----------------------------------------------------------------
    def _enter(self, async_: bool) -> list[_UserSession]:
        if self._token is not None:
            raise UserscopeError(
                "this scope object is already open; call sessions.request(ctx) again"
            )
        owner = self._owner
        ctx = self._ctx
        frame = ACTIVE.get()
        same = frame is not None and frame[4] is owner
        if same:
            assert frame is not None
            outer = frame[3].session.user_id
            if outer != ctx.user_id:
                raise IsolationError(outer, ctx.user_id)
        kind = self._kind
        evicted: list[_UserSession] = []
        if kind is Scope.REQUEST and same and frame is not None and frame[2] is not None:
            conn = frame[2]
            if conn.closed:
                raise ScopeClosedError(Scope.CONNECTION, ctx.user_id)
            session = frame[3].session
            owner._hold(session, request=True, connection=False)
            req = ScopeState(Scope.REQUEST, ctx, session, session.lock, async_)
            new: Frame = (ctx, req, conn, frame[3], owner, async_)
            self._opened = req
        else:
            session, evicted = owner._acquire(
                ctx, connection=kind is not Scope.USER, request=kind is Scope.REQUEST, async_=async_
            )
            if kind is Scope.USER:
                new = (ctx, None, None, session.state, owner, async_)
            else:
                state = ScopeState(Scope.CONNECTION, ctx, session, session.lock, async_)
                req_state = state if kind is Scope.REQUEST else None
                new = (ctx, req_state, state, session.state, owner, async_)
                self._opened = state
        self._session = session
        self._token = ACTIVE.set(new)
        return evicted

    def __enter__(self) -> UserExecutionContext:
        evicted = self._enter(False)
        for session in evicted:
            self._owner._finish_user_sync(session, log_only=True)
        return self._ctx

    async def __aenter__(self) -> UserExecutionContext:
        evicted = self._enter(True)
        for session in evicted:
            await self._owner._finish_user_async(session, log_only=True)
        return self._ctx

    # -- leaving --------------------------------------------------------------------
    def _leave(self) -> tuple[ScopeState | None, _UserSession]:
        token, self._token = self._token, None
        try:
            ACTIVE.reset(token)
        except ValueError:  # exited in another context (e.g. a generator-based wrapper)
            ACTIVE.set(token.old_value if token.old_value is not token.MISSING else None)
        session = self._session
        assert session is not None
        opened, self._opened = self._opened, None
        return opened, session

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        opened, session = self._leave()
        owner = self._owner
        failures: list[BaseException] = []
        try:
            if opened is not None:
                failures = owner._run_state_sync(opened, exc)
        finally:
            retired = owner._release(session, self._kind, nested=self._is_nested(opened))
            if retired:
                failures += owner._finish_user_sync(session, log_only=False, exc=exc)
        settle(exc, failures, opened.level if opened else Scope.USER, session.user_id)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        opened, session = self._leave()
        owner = self._owner
        failures: list[BaseException] = []
        try:
            if opened is not None:
                failures = await owner._run_state_async(opened, exc)
        finally:
            retired = owner._release(session, self._kind, nested=self._is_nested(opened))
            if retired:
                failures += await owner._finish_user_async(session, log_only=False, exc=exc)
        settle(exc, failures, opened.level if opened else Scope.USER, session.user_id)

    def _is_nested(self, opened: ScopeState | None) -> bool:
        return opened is not None and opened.level is Scope.REQUEST


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
        self.max_users = max_users
        self.max_age = max_age
        self.idle_timeout = idle_timeout
        self.max_connections_per_user = max_connections_per_user
        self.max_requests_per_user = max_requests_per_user
        self.max_instances_per_user = max_instances_per_user
        self.leak_check = leak_check
        self._clock = clock
        self._lock = threading.Lock()
        self._users: OrderedDict[str, _UserSession] = OrderedDict()  # LRU order
        self._retired: set[_UserSession] = set()
        self._deadlines: list[tuple[float, int, int, _UserSession]] = []
        self._seq = itertools.count()
        self._closed = False
        self._connections = 0
        self._requests = 0
        self._live: Counter[str] = Counter()
        self._cleanups_run = 0
        self._cleanups_failed = 0
        self._evictions = 0
        self._expired = 0
        self._refusals: Counter[str] = Counter()
        self._suspects: list[tuple[weakref.ref[Any], str, str, str, str]] = []
        self.leaks: list[LeakReport] = []
        self._reaper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

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
        return _ScopeCM(self, ctx, Scope.REQUEST)

    def connection(self, ctx: UserExecutionContext) -> _ScopeCM:
        """Open a CONNECTION scope (one WebSocket or HTTP connection) in the user's scope.

        Example:
            >>> import userscope as us
            >>> sessions = us.UserSessions()
            >>> with sessions.connection(us.UserExecutionContext(user_id="a", thread_id="t")):
            ...     us.current_scope()
            <Scope.CONNECTION: 2>
        """
        return _ScopeCM(self, ctx, Scope.CONNECTION)

    def user(self, ctx: UserExecutionContext) -> _ScopeCM:
        """Enter only the user's USER scope (background jobs that serve one user).

        Example:
            >>> import userscope as us
            >>> sessions = us.UserSessions()
            >>> with sessions.user(us.UserExecutionContext(user_id="a", thread_id="t")):
            ...     us.current_scope()
            <Scope.USER: 3>
        """
        return _ScopeCM(self, ctx, Scope.USER)

    # -- table management (internal) -----------------------------------------------
    def _refuse(self, limit: str) -> None:
        self._refusals[limit] += 1

    def _acquire(
        self, ctx: UserExecutionContext, *, connection: bool, request: bool, async_: bool
    ) -> tuple[_UserSession, list[_UserSession]]:
        now = self._clock()
        evicted: list[_UserSession] = []
        with self._lock:
            if self._closed:
                raise ScopeClosedError(None, ctx.user_id)
            session = self._users.get(ctx.user_id)
            if session is not None and session.active == 0 and self._is_expired(session, now):
                self._retire(session)
                self._expired += 1
                evicted.append(session)
                session = None
            if session is None:
                if self.max_users is not None and len(self._users) >= self.max_users:
                    victim = self._pick_victim(async_)
                    if victim is None:
                        self._refuse("max_users")
                        raise ScopeLimitError(
                            "max_users", ctx.user_id, len(self._users), self.max_users
                        )
                    self._retire(victim)
                    self._evictions += 1
                    evicted.append(victim)
                session = _UserSession(self, ctx, now)
                self._users[ctx.user_id] = session
            self._check_and_hold(session, connection=connection, request=request)
            self._users.move_to_end(ctx.user_id)
            session.last_used = now
        return session, evicted

    def _check_and_hold(self, session: _UserSession, *, connection: bool, request: bool) -> None:
        if (
            connection
            and self.max_connections_per_user is not None
            and (session.connections >= self.max_connections_per_user)
        ):
            self._refuse("max_connections_per_user")
            raise ScopeLimitError(
                "max_connections_per_user",
                session.user_id,
                session.connections,
                self.max_connections_per_user,
            )
        if (
            request
            and self.max_requests_per_user is not None
            and (session.requests >= self.max_requests_per_user)
        ):
            self._refuse("max_requests_per_user")
            raise ScopeLimitError(
                "max_requests_per_user",
                session.user_id,
                session.requests,
                self.max_requests_per_user,
            )
        session.active += 1
        if connection:
            session.connections += 1
            self._connections += 1
        if request:
            session.requests += 1
            self._requests += 1

    def _hold(self, session: _UserSession, *, request: bool, connection: bool) -> None:
        with self._lock:
            if self._closed:
                raise ScopeClosedError(None, session.user_id)
            self._check_and_hold(session, connection=connection, request=request)
            session.last_used = self._clock()

    def _release(self, session: _UserSession, kind: Scope, *, nested: bool) -> bool:
        """Drop one hold; return True when a retired session must now be finished."""
        with self._lock:
            session.active -= 1
            if kind is Scope.REQUEST:
                session.requests -= 1
                self._requests -= 1
            if kind is not Scope.USER and not nested:
                session.connections -= 1
                self._connections -= 1
            now = self._clock()
            session.last_used = now
            if session.active == 0:
                if session.retired:
                    return True
                self._schedule(session, now)
        return False

    def _is_expired(self, session: _UserSession, now: float) -> bool:
        if self.max_age is not None and now - session.created_at >= self.max_age:
            return True
        return self.idle_timeout is not None and now - session.last_used >= self.idle_timeout

    def _deadline(self, session: _UserSession) -> float | None:
        candidates = []
        if self.max_age is not None:
            candidates.append(session.created_at + self.max_age)
        if self.idle_timeout is not None:
            candidates.append(session.last_used + self.idle_timeout)
        return min(candidates) if candidates else None

    def _schedule(self, session: _UserSession, now: float) -> None:
        deadline = self._deadline(session)
        if deadline is None:
            return
        session.deadline_version += 1
        heapq.heappush(
            self._deadlines, (deadline, next(self._seq), session.deadline_version, session)
        )

    def _pick_victim(self, async_: bool) -> _UserSession | None:
        for session in self._users.values():  # least recently used first
            if session.active == 0 and (async_ or not session.state.has_async_finalizers()):
                return session
        return None

    def _retire(self, session: _UserSession) -> None:
        if self._users.get(session.user_id) is session:
            del self._users[session.user_id]
        session.retired = True
        self._retired.add(session)

    # -- cleanup plumbing (internal) ------------------------------------------------
    def _detach(self, state: ScopeState) -> list[tuple[int, Any, str, object]]:
        session = state.session
        with state.lock:
            count = len(state.cache)
            if count:
                live = self._live
                for key in state.cache:
                    name = _name_of(key)
                    live[name] -= 1
                    if live[name] <= 0:
                        del live[name]
                session.instances -= count
                if self.leak_check:
                    self._watch(state)
            return state.detach()

    def _watch(self, state: ScopeState) -> None:
        for key, value in state.cache.items():
            try:
                ref = weakref.ref(value)
            except TypeError:
                continue
            self._suspects.append(
                (
                    ref,
                    type(value).__qualname__,
                    _name_of(key),
                    state.session.user_id,
                    state.level.name,
                )
            )

    def _count(self, ran: int, failures: list[BaseException]) -> None:
        with self._lock:
            self._cleanups_run += ran
            self._cleanups_failed += len(failures)

    def _run_state_sync(self, state: ScopeState, exc: BaseException | None) -> list[BaseException]:
        finalizers = self._detach(state)
        ran = len(finalizers)
        failures = run_finalizers_sync(finalizers, exc)
        self._count(ran, failures)
        return failures

    async def _run_state_async(
        self, state: ScopeState, exc: BaseException | None
    ) -> list[BaseException]:
        finalizers = self._detach(state)
        ran = len(finalizers)
        failures = await run_finalizers_async(finalizers, exc)
        self._count(ran, failures)
        return failures

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
            self._retire(session)
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
            settle(None, failures, Scope.USER, user_id)

    async def aclose_user(self, user_id: str) -> None:
        """Async twin of :meth:`close_user`; runs async cleanups too.

        Example:
            >>> import asyncio, userscope as us
            >>> asyncio.run(us.UserSessions().aclose_user("nobody"))
        """
        session = self._take_user(user_id)
        if session is not None:
            failures = await self._run_state_async(session.state, None)
            settle(None, failures, Scope.USER, user_id)

    def _begin_close(self) -> list[_UserSession]:
        with self._lock:
            self._closed = True
            idle: list[_UserSession] = []
            for session in list(self._users.values()):
                self._retire(session)
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
        with self._lock:
            heap = self._deadlines
            while heap and heap[0][0] <= now:
                _, _, version, session = heapq.heappop(heap)
                if (
                    session.retired
                    or version != session.deadline_version
                    or session.active
                    or self._users.get(session.user_id) is not session
                ):
                    continue  # stale entry: reused, retired or in use since
                if not self._is_expired(session, now):
                    self._schedule(session, now)
                    continue
                if not async_ and session.state.has_async_finalizers():
                    self._schedule(session, now)
                    continue
                self._retire(session)
                self._retired.discard(session)
                self._expired += 1
                due.append(session)
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
        due = self._pop_expired(async_=False)
        for session in due:
            self._finish_expired_sync(session)
        self.check_leaks()
        return len(due)

    async def asweep(self) -> int:
        """Async twin of :meth:`sweep`; also closes sessions with async cleanups.

        Example:
            >>> import asyncio, userscope as us
            >>> asyncio.run(us.UserSessions(idle_timeout=60).asweep())
            0
        """
        due = self._pop_expired(async_=True)
        for session in due:
            failures = await self._run_state_async(session.state, None)
            for failure in failures:
                logger.error("expiry cleanup of %r failed: %r", session.user_id, failure)
        self.check_leaks()
        return len(due)

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
        return found

    def stats(self) -> SessionStats:
        """Return a snapshot of users, open scopes, live instances and counters.

        Example:
            >>> import userscope as us
            >>> us.UserSessions().stats().connections
            0
        """
        with self._lock:
            return SessionStats(
                users=len(self._users),
                connections=self._connections,
                requests=self._requests,
                instances=sum(self._live.values()),
                instances_by_provider=dict(self._live),
                cleanups_run=self._cleanups_run,
                cleanups_failed=self._cleanups_failed,
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
