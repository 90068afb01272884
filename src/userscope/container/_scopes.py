"""The scope context managers: a CONNECTION/REQUEST scope, and a USER-only scope.

They hold their runtime's :class:`~userscope.container._table.SessionTable` (the
"owner", also the active frame's ``SESSIONS`` field) and talk to it through its
public protocol only: ``hold_user``/``hold_nested`` to enter, ``leave`` then
``release`` or ``schedule`` to exit, ``finish_user_*``/``finish_evicted_*`` to run an
ended user's cleanups, ``notify_*`` when an observer is set. The session table,
limits and counters are the table's to change.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from userscope._speedups import DONE, ready, var_get, var_reset, var_set
from userscope.container._cleanup import (
    Suspended,
    finish_cleanups,
    run_cleanups_sync,
    settle,
    start_cleanups,
)
from userscope.container._scope import (
    ACTIVE,
    CONNECTION_STATE,
    SESSIONS,
    USER_STATE,
    Scope,
)
from userscope.container._session import Release, UserSession
from userscope.container._state import ScopeState
from userscope.context import UserExecutionContext
from userscope.errors import CleanupError, IsolationError, ScopeClosedError, ScopeReuseError

if TYPE_CHECKING:
    from userscope.container._state import Finalizer
    from userscope.container._table import SessionTable

__all__ = ["ScopeCM", "UserScopeCM", "check_context", "new_scope"]

_USER: Final = Scope.USER  # enum member lookups cost ~0.1 us each: bind them once
_CONNECTION: Final = Scope.CONNECTION
_REQUEST: Final = Scope.REQUEST
_KEEP: Final = Release.KEEP
_SCHEDULE: Final = Release.SCHEDULE
_FINISH: Final = Release.FINISH


def check_context(ctx: object) -> None:
    """Refuse anything but a :class:`UserExecutionContext`."""
    if type(ctx) is not UserExecutionContext and not isinstance(ctx, UserExecutionContext):
        raise TypeError(
            f"expected a UserExecutionContext, got {type(ctx).__name__}; build one from a "
            "verified identity: UserExecutionContext(user_id=..., thread_id=...)"
        )


def _restore(token: contextvars.Token[Any]) -> None:
    """Restore the frame ``token`` replaced; also when the scope is left in another
    context (``ContextVar.reset`` refuses that; e.g. a generator-based wrapper)."""
    try:
        var_reset(ACTIVE, token)
    except ValueError:
        var_set(ACTIVE, None if token.old_value is token.MISSING else token.old_value)


def _refuse_other_user(frame: Any, ctx: UserExecutionContext) -> None:
    outer = frame[USER_STATE].session
    raise IsolationError(outer.user_id, ctx.user_id, outer.tenant_id, ctx.tenant_id)


class ScopeCM(ScopeState):
    """A CONNECTION/REQUEST scope: its own context manager and its own state (internal).

    Returned by :meth:`UserSessions.request` and :meth:`~UserSessions.connection`;
    usable once, with ``with`` or ``async with``. A request outside any connection of
    its user (plain HTTP) opens CONNECTION and REQUEST together: this one state serves
    both levels (``level`` is CONNECTION, ``kind`` REQUEST).
    """

    __slots__ = ("_ctx", "_owner", "_token", "kind")

    _ctx: UserExecutionContext
    _owner: SessionTable
    _token: contextvars.Token[Any] | None
    kind: Scope

    def __init__(self, owner: SessionTable, ctx: UserExecutionContext, kind: Scope) -> None:
        # `new_scope` builds the same state without this call (keep the two in step;
        # tests/test_scopes.py compares them)
        if type(ctx) is not UserExecutionContext:
            check_context(ctx)
        self._owner = owner
        self._ctx = ctx
        self.kind = kind
        self._token = None
        # the state half; `_open` sets `level`, `session`, `async_`
        self.cache = {}
        self.pending = None
        self.finalizers = []
        self.closed = False
        # `token` is set only when an observer is (read with getattr); `loop` only matters
        # for USER states: both left unset here, this is the hot path

    # -- entering -----------------------------------------------------------------
    def _open(self, async_: bool) -> list[UserSession] | None:
        if self._token is not None or self.closed:
            raise ScopeReuseError(
                self.kind.name.lower(), "open" if self._token is not None else "used"
            )
        owner = self._owner
        ctx = self._ctx
        request = self.kind is _REQUEST
        evicted: list[UserSession] | None = None
        conn: ScopeState | None = None  # the connection a request nests in, if any
        frame = var_get(ACTIVE)
        if frame is not None and frame[SESSIONS] is owner:
            session = frame[USER_STATE].session
            user_id, tenant_id = ctx.user_id, ctx.tenant_id
            if (session.user_id is not user_id and session.user_id != user_id) or (
                session.tenant_id is not tenant_id and session.tenant_id != tenant_id
            ):  # identity first: a message's context shares its connection's strings
                _refuse_other_user(frame, ctx)
            if request:
                conn = frame[CONNECTION_STATE]
        if conn is not None:  # a request inside its user's connection
            if conn.closed:
                raise ScopeClosedError(_CONNECTION, ctx.user_id, None, ctx.tenant_id)
            session = conn.session
            owner.hold_nested(session)
            self.level = _REQUEST
        else:  # a connection, or a request that is its own connection (plain HTTP)
            session, evicted = owner.hold_user(ctx, self.kind, async_)
            conn = self
            self.level = _CONNECTION
        self.session = session
        self.async_ = async_
        owner.open_states.add(self)
        self._token = var_set(
            ACTIVE, (ctx, self if request else None, conn, session.state, owner, async_)
        )
        if owner.observer is not None:
            self.token = owner.notify_opened(self.kind, ctx)
        return evicted

    def __enter__(self) -> UserExecutionContext:
        evicted = self._open(False)
        if evicted:
            self._owner.finish_evicted_sync(evicted)
        return self._ctx

    def __aenter__(self) -> Awaitable[UserExecutionContext]:
        # a plain method: with no evicted user to clean up nothing suspends, and the
        # context comes back as a ready awaitable (compiled; a coroutine pure)
        evicted = self._open(True)
        if evicted:
            return self._enter_evicted(evicted)
        return ready(self._ctx)

    async def _enter_evicted(self, evicted: list[UserSession]) -> UserExecutionContext:
        """Finish the users evicted to make room, then hand back the context."""
        try:
            cancelled = await self._owner.finish_evicted_async(evicted)
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        if cancelled is not None:  # every evicted cleanup finished; now it propagates
            await self.__aexit__(None, None, None)
            raise cancelled
        return self._ctx

    # -- leaving --------------------------------------------------------------------
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # restore the outer frame (inlined: the hot path), then detach this scope's state:
        # with finalizers to run the session is still held and `release` drops it after
        token, self._token = self._token, None
        if token is None:
            raise ScopeReuseError(self.kind.name.lower(), "not_open")
        try:
            var_reset(ACTIVE, token)
        except ValueError:
            _restore(token)
        owner = self._owner
        left = owner.leave(self)  # the finalizers to run, or what to do next
        if left is _KEEP and owner.observer is None:
            return
        session = self.session
        failures: list[BaseException] = []
        if isinstance(left, list):
            finalizers: list[Finalizer] = left
            ran = len(finalizers)
            try:
                observe = None if owner.observer is None else owner.observe_cleanup(self)
                failures = run_cleanups_sync(finalizers, exc, observe)
            finally:
                action = owner.release(session, self, ran, failures)
        else:
            action = left
            if action is _SCHEDULE:
                owner.schedule(session)
        if action is _FINISH:
            failures += owner.finish_user_sync(session, exc=exc)
        if owner.observer is not None:
            owner.notify_closed(self, failures)
        if failures:
            settle(exc, failures, self.level, session.key)

    def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Awaitable[None]:
        # A plain method: the exit runs here, synchronously, as long as nothing suspends
        # (the common case: no finalizer, or finalizers that finish inline, no observer,
        # the user not finishing) and hands back a ready awaitable; from the first
        # cleanup that suspends on, the rest runs in a coroutine (`_exit_async`).
        # Restore the outer frame (inlined: the hot path), then detach this scope's
        # state: with finalizers to run the session is still held and `_release` drops
        # it after.
        token, self._token = self._token, None
        if token is None:
            raise ScopeReuseError(self.kind.name.lower(), "not_open")
        try:
            var_reset(ACTIVE, token)
        except ValueError:
            _restore(token)
        owner = self._owner
        left = owner.leave(self)  # the finalizers to run, or what to do next
        if not isinstance(left, list):
            if owner.observer is None:
                if left is _KEEP:
                    return DONE
                if left is _SCHEDULE:
                    owner.schedule(self.session)
                    return DONE
            return self._exit_async(exc, None, 0, left, [], None)
        finalizers: list[Finalizer] = left
        action = _KEEP
        ran = len(finalizers)
        if owner.observer is not None:  # timed cleanups and notifications: the full path
            return self._exit_async(exc, finalizers, ran, action, [], None)
        failures: list[BaseException] = []
        try:
            suspended = start_cleanups(finalizers, exc, failures)
        except BaseException:
            owner.release(self.session, self, ran, failures)
            raise
        if suspended is not None:
            return self._exit_async(exc, finalizers, ran, action, failures, suspended)
        session = self.session
        if owner.release(session, self, ran, failures) is _FINISH:
            return self._exit_async(exc, None, 0, _FINISH, failures, None)
        if failures:
            try:
                settle(exc, failures, self.level, session.key)
            except CleanupError as error:
                return self._cleanups_failed(error)
        return DONE

    def _cleanups_failed(self, error: CleanupError) -> Awaitable[None]:
        """What an async exit does when only its cleanups failed: raise their
        :class:`CleanupError` (contract 3). A subclass may report it instead and hand
        back an awaitable (the FastAPI adapter's WebSocket message scope does)."""
        raise error

    async def _exit_async(
        self,
        exc: BaseException | None,
        finalizers: list[Finalizer] | None,
        ran: int,
        action: Release,
        failures: list[BaseException],
        suspended: Suspended | None,
    ) -> None:
        """The part of an async exit that may suspend.

        ``ran``: how many finalizers this exit runs (0: none, or they already ran and the
        hold was released); ``finalizers``: those not started yet; ``suspended``: the
        cleanup :func:`start_cleanups` left suspended, or ``None`` to start them here.
        """
        owner = self._owner
        session = self.session
        cancelled: asyncio.CancelledError | None = None
        if ran:
            assert finalizers is not None
            try:
                observe = None if owner.observer is None else owner.observe_cleanup(self)
                if suspended is None:
                    suspended = start_cleanups(finalizers, exc, failures, observe)
                if suspended is not None:
                    cancelled = await finish_cleanups(
                        finalizers, exc, owner.cleanup_timeout, failures, suspended, observe
                    )
            finally:
                action = owner.release(session, self, ran, failures)
        elif action is _SCHEDULE:
            owner.schedule(session)
        if action is _FINISH:
            more, user_cancelled = await owner.finish_user_async(session, exc=exc)
            failures += more
            cancelled = cancelled or user_cancelled
        if owner.observer is not None:
            owner.notify_closed(self, failures)
        if cancelled is not None and not isinstance(exc, asyncio.CancelledError):
            raise _cancelled(cancelled, failures, self.level, session)
        if failures:
            try:
                settle(exc, failures, self.level, session.key)
            except CleanupError as error:
                await self._cleanups_failed(error)


def new_scope(owner: SessionTable, ctx: UserExecutionContext, kind: Scope) -> ScopeCM:
    """``ScopeCM(owner, ctx, kind)`` without the type call, for ``request()`` and
    ``connection()`` when compiled: a C allocation of the extension type and C stores
    into its fields, no argument parsing of ``__init__`` (whose state it builds: keep
    the two in step; tests/test_scopes.py compares them). Pure, the type call is cheaper.
    """
    if type(ctx) is not UserExecutionContext:
        check_context(ctx)
    scope = ScopeCM.__new__(ScopeCM)
    scope._owner = owner
    scope._ctx = ctx
    scope.kind = kind
    scope._token = None
    scope.cache = {}
    scope.pending = None
    scope.finalizers = []
    scope.closed = False
    return scope


def _cancelled(
    error: asyncio.CancelledError,
    failures: list[BaseException],
    level: Scope,
    session: UserSession,
) -> asyncio.CancelledError:
    """The cancellation that arrived during cleanups, to re-raise once they all ran (the
    original object: e.g. anyio recognises its cancel scope's own by its message)."""
    for failure in failures:
        error.add_note(
            f"userscope: cleanup in the {level.name} scope of {session.user_id!r} "
            f"also failed: {failure!r}"
        )
    return error


class UserScopeCM:
    """Enters only a user's USER scope (internal; see :meth:`UserSessions.user`)."""

    __slots__ = ("_ctx", "_owner", "_session", "_token")

    def __init__(self, owner: SessionTable, ctx: UserExecutionContext) -> None:
        check_context(ctx)
        self._owner = owner
        self._ctx = ctx
        self._session: UserSession | None = None
        self._token: contextvars.Token[Any] | None = None

    def _open(self, async_: bool) -> list[UserSession] | None:
        if self._token is not None:
            raise ScopeReuseError("user", "open")
        owner = self._owner
        ctx = self._ctx
        frame = var_get(ACTIVE)
        if frame is not None and frame[SESSIONS] is owner:
            outer = frame[USER_STATE].session
            if outer.user_id != ctx.user_id or outer.tenant_id != ctx.tenant_id:
                _refuse_other_user(frame, ctx)
        session, evicted = owner.hold_user(ctx, _USER, async_)
        self._session = session
        self._token = var_set(ACTIVE, (ctx, None, None, session.state, owner, async_))
        return evicted

    def __enter__(self) -> UserExecutionContext:
        evicted = self._open(False)
        if evicted:
            self._owner.finish_evicted_sync(evicted)
        return self._ctx

    async def __aenter__(self) -> UserExecutionContext:
        evicted = self._open(True)
        if evicted:
            try:
                cancelled = await self._owner.finish_evicted_async(evicted)
            except BaseException as exc:
                await self.__aexit__(type(exc), exc, exc.__traceback__)
                raise
            if cancelled is not None:
                await self.__aexit__(None, None, None)
                raise cancelled
        return self._ctx

    def _leave(self) -> UserSession:
        token, self._token = self._token, None
        if token is None or self._session is None:
            raise ScopeReuseError("user", "not_open")
        _restore(token)
        return self._session

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self._leave()
        if self._owner.release(session, None, 0, []) is _FINISH:
            failures = self._owner.finish_user_sync(session, exc=exc)
            settle(exc, failures, _USER, session.key)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self._leave()
        if self._owner.release(session, None, 0, []) is _FINISH:
            failures, cancelled = await self._owner.finish_user_async(session, exc=exc)
            if cancelled is not None and not isinstance(exc, asyncio.CancelledError):
                raise _cancelled(cancelled, failures, _USER, session)
            settle(exc, failures, _USER, session.key)
