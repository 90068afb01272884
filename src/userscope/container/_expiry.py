"""Expiry: the deadline heap, ``sweep``/``asweep`` and the reaper task.

The deadline heap says which idle sessions may expire next, in O(log n) per change.
Each live session has at most one entry. A session that ends (evicted, closed,
expired) leaves its entry behind and counts it as dead; when dead entries outnumber
live ones the heap is compacted, so its size stays O(live users). The heap is
mutated under the table lock only.

A sweep pops the due sessions under the table lock (taking each one's session lock
inside it, the runtime's order), then finishes them with no lock held
(:mod:`userscope.container._finish`). The reaper is a task calling :func:`asweep`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from typing import TYPE_CHECKING, Final

from userscope._durations import Duration, to_seconds_or_none
from userscope._log import fields
from userscope.container._finish import finish_user_async, finish_user_sync, log_failures
from userscope.container._leaks import check_leaks
from userscope.container._observe import notify
from userscope.container._session import UserSession

if TYPE_CHECKING:
    from userscope.container._table import SessionTable

__all__ = ["DeadlineHeap", "asweep", "start_reaper", "sweep"]

logger = logging.getLogger("userscope")

_COMPACT_ABOVE: Final = 64  # never compact a small heap


class DeadlineHeap:
    """Entries ``(deadline, seq, session)``; mutated under the table lock (internal).

    Example:
        >>> from userscope.container._expiry import DeadlineHeap
        >>> len(DeadlineHeap())
        0
    """

    __slots__ = ("_dead", "_entries", "_seq")

    def __init__(self) -> None:
        self._entries: list[tuple[float, int, UserSession]] = []
        self._seq = itertools.count()
        self._dead = 0

    def __len__(self) -> int:
        return len(self._entries)

    def push(self, session: UserSession) -> None:
        """Queue the session's next possible expiry (``session.scheduled`` is set)."""
        heapq.heappush(self._entries, (session.expires_at, next(self._seq), session))

    def ended(self, session: UserSession) -> None:
        """A session left the table: its entry (if any) is dead; compact when many are."""
        if not session.scheduled:
            return
        self._dead += 1
        if self._dead > _COMPACT_ABOVE and self._dead * 2 > len(self._entries):
            self.compact()

    def compact(self) -> None:
        """Drop the entries of ended sessions."""
        kept = []
        for entry in self._entries:
            if entry[2].retired:
                entry[2].scheduled = False
            else:
                kept.append(entry)
        heapq.heapify(kept)
        self._entries = kept
        self._dead = 0

    def pop_due(self, now: float) -> UserSession | None:
        """Pop the next entry due at ``now``, or ``None``. Entries of ended sessions are
        skipped; for a live one the caller clears ``scheduled`` under its session lock."""
        entries = self._entries
        while entries and entries[0][0] <= now:
            session = heapq.heappop(entries)[2]
            if session.retired:
                if session.scheduled:
                    self._dead -= 1
                session.scheduled = False
                continue
            return session
        return None

    def clear(self) -> None:
        """Forget every entry (shutdown)."""
        for entry in self._entries:
            entry[2].scheduled = False
        self._entries = []
        self._dead = 0


def pop_expired(table: SessionTable, async_: bool) -> list[UserSession]:
    """Retire the idle sessions past their deadline (table lock, then each session lock)."""
    now = table.clock()
    due: list[UserSession] = []
    requeued: list[UserSession] = []
    with table.lock:
        while (session := table.expiry.pop_due(now)) is not None:
            with session.lock:
                session.scheduled = False
                if session.active:
                    continue  # in use: rescheduled when it next goes idle
                if now < session.expires_at or (
                    not async_ and session.state.has_async_finalizers()
                ):
                    session.scheduled = True  # used since, or needs the async sweep
                    requeued.append(session)
                    continue
            table.retire(session)
            table.retired.discard(session)
            table.expired += 1
            due.append(session)
        for session in requeued:  # after the loop: an entry due now must not be popped again
            table.expiry.push(session)
    return due


def sweep(table: SessionTable) -> int:
    """``UserSessions.sweep()``."""
    started = time.perf_counter()
    due = pop_expired(table, async_=False)
    for session in due:
        log_failures(session, "expired", finish_user_sync(table, session, reason="expired"))
    check_leaks(table)
    if table.observer is not None:
        notify(table, "swept", len(due), time.perf_counter() - started)
    return len(due)


async def asweep(table: SessionTable) -> int:
    """``UserSessions.asweep()``."""
    started = time.perf_counter()
    due = pop_expired(table, async_=True)
    cancelled: asyncio.CancelledError | None = None
    for session in due:
        failures, stopped = await finish_user_async(table, session, reason="expired")
        cancelled = cancelled or stopped
        log_failures(session, "expired", failures)
    check_leaks(table)
    if table.observer is not None:
        notify(table, "swept", len(due), time.perf_counter() - started)
    if cancelled is not None:
        raise cancelled
    return len(due)


def start_reaper(
    table: SessionTable, interval: Duration | None = None
) -> asyncio.Task[None] | None:
    """``UserSessions.start_reaper()``."""
    period = to_seconds_or_none("interval", interval)
    limits = [v for v in (table.idle_timeout, table.max_age) if v is not None]
    if not limits:
        return None
    if table.reaper is not None and not table.reaper.done():
        return table.reaper
    if period is None:
        period = min(60.0, max(1.0, min(limits) / 4))
    table.reaper = asyncio.get_running_loop().create_task(reap(table, period))
    return table.reaper


async def reap(table: SessionTable, period: float) -> None:
    """The reaper task: :func:`asweep` every ``period`` seconds until cancelled."""
    while True:
        await asyncio.sleep(period)
        try:
            await asweep(table)
        except Exception:  # the reaper must outlive one bad sweep
            logger.exception("userscope reaper sweep failed", extra=fields("reaper_failed"))
