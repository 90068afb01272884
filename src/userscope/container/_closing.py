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
from userscope.container._leaks import check_leaks
from userscope.container._scope import ACTIVE, SESSIONS, Scope
from userscope.container._session import UserKey, table_slot
from userscope.errors import AsyncCleanupRequiredError, CleanupError, ShutdownTimeoutError

if TYPE_CHECKING:
    from userscope.container._session import UserSession
    from userscope.container._table import SessionTable

__all__ = ["aclose", "aclose_user", "close", "close_user"]

_USER: Final = Scope.USER
_POLL: Final = 0.005  # seconds between checks while shutdown waits for open scopes


def take_user(table: SessionTable, key: UserKey) -> UserSession | None:
    """Retire a user's session; return it when idle (to finish now), else ``None``."""
    with table.lock:
        session = table.users.get(table_slot(*key))
        if session is None:
            return None
        table.retire(session)
        if session.active:
            return None  # finished by the last scope that leaves
        return session


def close_user(table: SessionTable, user_id: str, tenant_id: str | None = None) -> None:
    """``UserSessions.close_user()``."""
    key = (tenant_id, user_id)
    with table.lock:
        session = table.users.get(table_slot(*key))
        if session is not None and session.active == 0:
            with session.lock:
                blocked = session.state.has_async_finalizers()
            if blocked:
                raise AsyncCleanupRequiredError([key], "aclose_user")
    session = take_user(table, key)
    if session is not None:
        failures = finish_user_sync(table, session, reason="closed")
        settle(None, failures, _USER, key)


async def aclose_user(table: SessionTable, user_id: str, tenant_id: str | None = None) -> None:
    """``UserSessions.aclose_user()``."""
    key = (tenant_id, user_id)
    session = take_user(table, key)
    if session is not None:
        failures, cancelled = await finish_user_async(table, session, reason="closed")
        if cancelled is not None:
            raise cancelled
        settle(None, failures, _USER, key)


def open_users(table: SessionTable) -> tuple[int, list[UserKey]]:
    """Open scopes and their users (table lock held)."""
    held = [s for s in (*table.users.values(), *table.retired) if s.active]
    return sum(s.active for s in held), [s.key for s in held]


def waits_for_itself(table: SessionTable) -> bool:
    """Whether this code runs inside a scope of this runtime (shutdown must not wait for it)."""
    frame = ACTIVE.get()
    return frame is not None and frame[SESSIONS] is table


def begin_close(table: SessionTable) -> list[UserSession]:
    """Refuse new scopes, retire every session; return the idle ones (to finish now)."""
    with table.lock:
        table.closed = True
        for session in list(table.users.values()):
            table.retire(session)
        idle = [s for s in table.retired if s.active == 0]
        for session in idle:
            table.retired.discard(session)
        table.expiry.clear()
        return idle


def shutdown_report(table: SessionTable, timeout: float, failures: list[BaseException]) -> None:
    """Raise what shutdown leaves: scopes still open, or the cleanups that failed."""
    with table.lock:
        open_scopes, users = open_users(table)
    check_leaks(table)
    if open_scopes:
        error = ShutdownTimeoutError(timeout, open_scopes, users)
        for failure in failures:
            error.add_note(f"userscope: a cleanup also failed during shutdown: {failure!r}")
        raise error
    settle_many(failures)


def close(table: SessionTable, timeout: Duration = 30.0) -> None:
    """``UserSessions.close()``."""
    seconds = to_seconds("timeout", timeout)
    with table.lock:
        holders = [
            s.key
            for s in (*table.users.values(), *table.retired)
            if s.active == 0 and s.state.has_async_finalizers()
        ]
        table.closed = table.closed or not holders
    if holders:
        raise AsyncCleanupRequiredError(sorted(holders, key=str), "aclose")
    deadline = time.monotonic() + seconds
    if not waits_for_itself(table):
        while time.monotonic() < deadline:
            with table.lock:
                if not open_users(table)[0]:
                    break
            time.sleep(_POLL)
    failures: list[BaseException] = []
    for session in begin_close(table):
        if session.state.has_async_finalizers():  # went idle while we waited
            failures += defer_async(table, session, "shutdown")
            continue
        failures += finish_user_sync(table, session, reason="shutdown")
    shutdown_report(table, seconds, failures)


async def aclose(table: SessionTable, timeout: Duration = 30.0) -> None:  # noqa: ASYNC109 - the issue's API
    """``UserSessions.aclose()``."""
    seconds = to_seconds("timeout", timeout)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    reaper, table.reaper = table.reaper, None
    if reaper is not None:
        reaper.cancel()
        try:
            await reaper
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
    with table.lock:
        table.closed = True
    if not waits_for_itself(table):
        while loop.time() < deadline:
            with table.lock:
                if not open_users(table)[0]:
                    break
            await asyncio.sleep(_POLL)
    failures: list[BaseException] = []
    cancelled: asyncio.CancelledError | None = None
    for session in begin_close(table):
        remaining = max(deadline - loop.time(), 0.001)
        more, stopped = await finish_user_async(table, session, reason="shutdown", within=remaining)
        failures += more
        cancelled = cancelled or stopped
    pending = [b for b in table.background if isinstance(b, asyncio.Task)]
    if pending:
        await asyncio.wait(pending, timeout=max(deadline - loop.time(), 0.001))
    if cancelled is not None:
        raise cancelled
    shutdown_report(table, seconds, failures)


def settle_many(failures: list[BaseException]) -> None:
    """Raise shutdown's cleanup failures: a non-``Exception`` first, else one ``CleanupError``."""
    plain = [f for f in failures if isinstance(f, Exception)]
    others = [f for f in failures if not isinstance(f, Exception)]
    if others:
        raise others[0]
    if plain:
        raise CleanupError(f"{len(plain)} cleanup(s) failed during shutdown", plain)
