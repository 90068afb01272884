"""Closing: ending one user (``close_user``) and shutting the runtime down (``close``).

``close_user``/``aclose_user`` take a user's session out of the table and finish it at
once when idle (else its last scope finishes it). ``close``/``aclose`` refuse new
scopes, wait (polling, no lock held while sleeping) for open ones up to a timeout,
retire every session and finish the idle ones; users still in use are finished by
their last scope, and shutdown reports them (:class:`~userscope.ShutdownTimeoutError`).
Each step takes the table lock on its own (with at most one session lock inside it,
the runtime's order) and releases it before any cleanup runs
(:mod:`userscope.container._finish`).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Final

from userscope._durations import Duration, to_seconds
from userscope.container._cleanup import settle
from userscope.container._finish import defer_async, finish_user_async, finish_user_sync
from userscope.container._scope import ACTIVE, SESSIONS, Scope
from userscope.container._session import UserKey, table_slot
from userscope.errors import AsyncCleanupRequiredError, CleanupError, ShutdownTimeoutError

if TYPE_CHECKING:
    from userscope.container._session import UserSession
    from userscope.container._sessions import UserSessions

__all__ = ["aclose", "aclose_user", "close", "close_user"]

_USER: Final = Scope.USER
_POLL: Final = 0.005  # seconds between checks while shutdown waits for open scopes


def take_user(sessions: UserSessions, key: UserKey) -> UserSession | None:
    """Retire a user's session; return it when idle (to finish now), else ``None``."""
    with sessions._lock:
        session = sessions._users.get(table_slot(*key))
        if session is None:
            return None
        sessions._retire(session)
        if session.active:
            return None  # finished by the last scope that leaves
        return session


def close_user(sessions: UserSessions, user_id: str, tenant_id: str | None = None) -> None:
    """``UserSessions.close_user()``."""
    key = (tenant_id, user_id)
    with sessions._lock:
        session = sessions._users.get(table_slot(*key))
        if session is not None and session.active == 0:
            with session.lock:
                blocked = session.state.has_async_finalizers()
            if blocked:
                raise AsyncCleanupRequiredError([key], "aclose_user")
    session = take_user(sessions, key)
    if session is not None:
        failures = finish_user_sync(sessions, session, reason="closed")
        settle(None, failures, _USER, key)


async def aclose_user(sessions: UserSessions, user_id: str, tenant_id: str | None = None) -> None:
    """``UserSessions.aclose_user()``."""
    key = (tenant_id, user_id)
    session = take_user(sessions, key)
    if session is not None:
        failures, cancelled = await finish_user_async(sessions, session, reason="closed")
        if cancelled is not None:
            raise cancelled
        settle(None, failures, _USER, key)


def open_users(sessions: UserSessions) -> tuple[int, list[UserKey]]:
    """Open scopes and their users (table lock held)."""
    held = [s for s in (*sessions._users.values(), *sessions._retired) if s.active]
    return sum(s.active for s in held), [s.key for s in held]


def waits_for_itself(sessions: UserSessions) -> bool:
    """Whether this code runs inside a scope of ``sessions`` (shutdown must not wait for it)."""
    frame = ACTIVE.get()
    return frame is not None and frame[SESSIONS] is sessions


def begin_close(sessions: UserSessions) -> list[UserSession]:
    """Refuse new scopes, retire every session; return the idle ones (to finish now)."""
    with sessions._lock:
        sessions._closed = True
        for session in list(sessions._users.values()):
            sessions._retire(session)
        idle = [s for s in sessions._retired if s.active == 0]
        for session in idle:
            sessions._retired.discard(session)
        sessions._expiry.clear()
        return idle


def shutdown_report(sessions: UserSessions, timeout: float, failures: list[BaseException]) -> None:
    """Raise what shutdown leaves: scopes still open, or the cleanups that failed."""
    with sessions._lock:
        open_scopes, users = open_users(sessions)
    sessions.check_leaks()
    if open_scopes:
        error = ShutdownTimeoutError(timeout, open_scopes, users)
        for failure in failures:
            error.add_note(f"userscope: a cleanup also failed during shutdown: {failure!r}")
        raise error
    settle_many(failures)


def close(sessions: UserSessions, timeout: Duration = 30.0) -> None:
    """``UserSessions.close()``."""
    seconds = to_seconds("timeout", timeout)
    with sessions._lock:
        holders = [
            s.key
            for s in (*sessions._users.values(), *sessions._retired)
            if s.active == 0 and s.state.has_async_finalizers()
        ]
        sessions._closed = sessions._closed or not holders
    if holders:
        raise AsyncCleanupRequiredError(sorted(holders, key=str), "aclose")
    deadline = time.monotonic() + seconds
    if not waits_for_itself(sessions):
        while time.monotonic() < deadline:
            with sessions._lock:
                if not open_users(sessions)[0]:
                    break
            time.sleep(_POLL)
    failures: list[BaseException] = []
    for session in begin_close(sessions):
        if session.state.has_async_finalizers():  # went idle while we waited
            failures += defer_async(sessions, session, "shutdown")
            continue
        failures += finish_user_sync(sessions, session, reason="shutdown")
    shutdown_report(sessions, seconds, failures)


async def aclose(sessions: UserSessions, timeout: Duration = 30.0) -> None:  # noqa: ASYNC109 - the issue's API
    """``UserSessions.aclose()``."""
    seconds = to_seconds("timeout", timeout)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    reaper, sessions._reaper = sessions._reaper, None
    if reaper is not None:
        reaper.cancel()
        try:
            await reaper
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
    with sessions._lock:
        sessions._closed = True
    if not waits_for_itself(sessions):
        while loop.time() < deadline:
            with sessions._lock:
                if not open_users(sessions)[0]:
                    break
            await asyncio.sleep(_POLL)
    failures: list[BaseException] = []
    cancelled: asyncio.CancelledError | None = None
    for session in begin_close(sessions):
        remaining = max(deadline - loop.time(), 0.001)
        more, stopped = await finish_user_async(
            sessions, session, reason="shutdown", within=remaining
        )
        failures += more
        cancelled = cancelled or stopped
    pending = [b for b in sessions._background if isinstance(b, asyncio.Task)]
    if pending:
        await asyncio.wait(pending, timeout=max(deadline - loop.time(), 0.001))
    if cancelled is not None:
        raise cancelled
    shutdown_report(sessions, seconds, failures)


def settle_many(failures: list[BaseException]) -> None:
    """Raise shutdown's cleanup failures: a non-``Exception`` first, else one ``CleanupError``."""
    plain = [f for f in failures if isinstance(f, Exception)]
    others = [f for f in failures if not isinstance(f, Exception)]
    if others:
        raise others[0]
    if plain:
        raise CleanupError(f"{len(plain)} cleanup(s) failed during shutdown", plain)
