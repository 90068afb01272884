"""The deadline heap: which idle sessions may expire next, in O(log n) per change.

Each live session has at most one entry. A session that ends (evicted, closed,
expired) leaves its entry behind and counts it as dead; when dead entries outnumber
live ones the heap is compacted, so its size stays O(live users).
"""

from __future__ import annotations

import heapq
import itertools
from typing import Final

from userscope.container._session import UserSession

__all__ = ["DeadlineHeap"]

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
