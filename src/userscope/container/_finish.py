"""Finishing a user: running the USER cleanups of a session that left the table.

A session leaves the table (:meth:`~userscope.container._table.SessionTable.retire`)
when it is closed, evicted, expired or shut down; whoever took it out, or the last
scope leaving it, finishes it here: its USER state is detached (:func:`detach_user`:
the session lock, then the table lock, one after the other, never nested), its
cleanups run with no lock held (in this thread, in this task, or deferred to an event
loop when a sync caller meets async cleanups: :func:`defer_async`), the outcome is
counted (:func:`._stats.count`, the table lock) and the observer is told.
:func:`fail_pending` settles the creations still in flight in a closing scope (its
caller holds that scope's session lock). Each function takes the runtime's
:class:`~userscope.container._table.SessionTable`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final

from userscope._log import fields
from userscope.container import _leaks
from userscope.container._cleanup import run_cleanups_async, run_cleanups_sync
from userscope.container._leaks import suspects as _suspects
from userscope.container._observe import notify, observe_cleanup
from userscope.container._pending import PendingCreation
from userscope.container._scope import Scope
from userscope.container._state import provider_name
from userscope.container._stats import count
from userscope.errors import ScopeClosedError

if TYPE_CHECKING:
    from userscope.container._session import UserSession
    from userscope.container._state import Finalizer
    from userscope.container._table import SessionTable

__all__ = [
    "defer_async",
    "detach_user",
    "fail_pending",
    "finish_evicted_async",
    "finish_evicted_sync",
    "finish_user_async",
    "finish_user_sync",
    "log_failures",
]

logger = logging.getLogger("userscope")

_USER: Final = Scope.USER


def detach_user(table: SessionTable, session: UserSession) -> list[Finalizer]:
    """Close a finished session's USER state; fold its counters into the totals."""
    watched: list[_leaks.Suspect] | None = None
    with session.lock:
        state = session.state
        if table.leak_check and state.cache:
            watched = _suspects(state)
        pending = state.pending
        finalizers = state.detach()
        ran, failed = session.cleanups_run, session.cleanups_failed
        session.cleanups_run = session.cleanups_failed = 0
        woken = fail_pending(pending, _USER, session) if pending else []
    for creation in woken:
        creation.wake()
    with table.lock:
        table.retired.discard(session)
        table.cleanups_run += ran
        table.cleanups_failed += failed
        if watched:
            table.leak_watch.add(watched)
    return finalizers


def user_ended(
    table: SessionTable, session: UserSession, reason: str, failures: list[BaseException]
) -> None:
    """Tell the observer that the USER scope closed and why the user ended."""
    if table.observer is not None:
        error = failures[0] if failures else None
        notify(table, "scope_closed", session.state.token, _USER, error)
        notify(table, "user_ended", session.key, reason)


def finish_user_sync(
    table: SessionTable,
    session: UserSession,
    *,
    exc: BaseException | None = None,
    reason: str = "closed",
) -> list[BaseException]:
    """Run a retired session's USER cleanups in this thread (async ones: elsewhere)."""
    if session.state.has_async_finalizers():
        return defer_async(table, session, reason)
    finalizers = detach_user(table, session)
    ran = len(finalizers)
    failures = run_cleanups_sync(finalizers, exc, observe_cleanup(table, session.state))
    count(table, ran, failures)
    user_ended(table, session, reason, failures)
    return failures


async def finish_user_async(
    table: SessionTable,
    session: UserSession,
    *,
    exc: BaseException | None = None,
    reason: str = "closed",
    within: float | None = None,
) -> tuple[list[BaseException], asyncio.CancelledError | None]:
    """Async twin of :func:`finish_user_sync`: ``(failures, cancellation)``."""
    finalizers = detach_user(table, session)
    ran = len(finalizers)
    bound = table.cleanup_timeout
    if within is not None:
        bound = within if bound is None else min(bound, within)
    failures, cancelled = await run_cleanups_async(
        finalizers, exc, bound, observe_cleanup(table, session.state)
    )
    count(table, ran, failures)
    user_ended(table, session, reason, failures)
    return failures, cancelled


async def finish_quietly(table: SessionTable, session: UserSession, reason: str) -> None:
    """:func:`finish_user_async` in a background task: failures are logged, not raised."""
    failures, _ = await finish_user_async(table, session, reason=reason)
    log_failures(session, reason, failures)


def defer_async(table: SessionTable, session: UserSession, reason: str) -> list[BaseException]:
    """A sync exit finished a session whose cleanups are async: run them on a loop.

    On this thread's running loop when there is one; else on the loop that created
    the async cleanups when it still runs; else on a new loop in this thread.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:
        task = loop.create_task(finish_quietly(table, session, reason))
        table.background.add(task)
        task.add_done_callback(table.background.discard)
        return []
    home = session.state.loop
    if home is not None and home.is_running() and not home.is_closed():
        future = asyncio.run_coroutine_threadsafe(finish_quietly(table, session, reason), home)
        table.background.add(future)
        future.add_done_callback(table.background.discard)
        return []
    failures, _ = asyncio.run(finish_user_async(table, session, reason=reason))
    return failures


def ended_reason(table: SessionTable, session: UserSession) -> str:
    """Why a scope's opening (``SessionTable.hold_user``) took an idle session out: past
    its deadline, or least recently used."""
    return "expired" if table.clock() >= session.expires_at else "evicted"


def finish_evicted_sync(table: SessionTable, evicted: list[UserSession]) -> None:
    """Run the cleanups of the users a new scope's opening ended (failures are logged)."""
    for session in evicted:
        reason = ended_reason(table, session)
        failures = finish_user_sync(table, session, reason=reason)
        log_failures(session, reason, failures)


async def finish_evicted_async(
    table: SessionTable, evicted: list[UserSession]
) -> asyncio.CancelledError | None:
    """Run evicted users' cleanups to completion; the cancellation that arrived, if any."""
    cancelled: asyncio.CancelledError | None = None
    for session in evicted:
        reason = ended_reason(table, session)
        failures, stopped = await finish_user_async(table, session, reason=reason)
        cancelled = cancelled or stopped
        log_failures(session, reason, failures)
    return cancelled


def fail_pending(
    pending: dict[object, Any], level: Scope, session: UserSession
) -> list[PendingCreation]:
    """Settle the creations in flight of a closing scope (lock held); those to wake.

    Only entries someone waits on are :class:`PendingCreation` objects; the others
    (a thread ident or a task) have no waiter, and their creator sees the closed scope.
    """
    woken: list[PendingCreation] = []
    for provider, creation in pending.items():
        if type(creation) is not PendingCreation:
            continue
        closed = ScopeClosedError(
            level, session.user_id, provider_name(provider), session.tenant_id
        )
        if creation.settle(None, closed):
            woken.append(creation)
    return woken


def log_failures(session: UserSession, reason: str, failures: list[BaseException]) -> None:
    """Log the cleanup failures of a user nobody waits for (evicted, expired, deferred)."""
    for failure in failures:
        logger.error(
            "%s cleanup of %r failed: %r",
            reason,
            session.user_id,
            failure,
            extra=fields(
                f"{reason}_cleanup_failed",
                user_id=session.user_id,
                tenant_id=session.tenant_id,
                scope=_USER,
            ),
        )
