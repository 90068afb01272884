"""`SessionStats`: the snapshot ``UserSessions.stats()`` returns, and the counters behind it.

:func:`snapshot` builds it and :func:`count`/:func:`remember` fold cleanup outcomes
into a runtime's totals; each takes the table lock (and no other lock) once.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Final

from pydantic import BaseModel, ConfigDict

from userscope.container._scope import Scope
from userscope.container._state import provider_name

if TYPE_CHECKING:
    from userscope.container._table import SessionTable

__all__ = ["SessionStats", "count", "describe", "remember", "snapshot"]

_CONNECTION: Final = Scope.CONNECTION
_REQUEST: Final = Scope.REQUEST


class SessionStats(BaseModel):
    """A snapshot of a :class:`UserSessions` runtime, as returned by ``stats()``.

    Attributes:
        users: users with a session, each ``(tenant_id, user_id)`` counted once.
        connections: open CONNECTION scopes (a plain request opens one too).
        requests: open REQUEST scopes.
        open_scopes: every open scope holding a user session (USER-only scopes included).
        instances: live scoped instances; ``instances_by_provider`` by provider name.
        cleanups_run / cleanups_failed: finalizers run so far / of which failed.
        cleanup_failures: the most recent failures (at most 20), e.g.
            ``"cleanup of C.bridge failed: OSError(...)"``.
        evictions / expired: sessions ended by ``max_users`` / by their deadlines.
        refusals: limit name -> scopes or instances refused.
        leaks_detected: leak reports so far (``leak_check``).
        closed: whether ``close()``/``aclose()`` ran.

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
    open_scopes: int = 0
    cleanup_failures: list[str] = []


def snapshot(table: SessionTable) -> SessionStats:
    """``UserSessions.stats()``: one consistent snapshot, taken under the table lock."""
    with table.lock:
        known = [*table.users.values(), *table.retired]
        open_states = [*table.open_states.copy()]
        states = [*open_states, *(session.state for session in known)]
        live: Counter[str] = Counter()
        for state in states:
            for provider in list(state.cache):
                live[provider_name(provider)] += 1
        return SessionStats(
            users=len(table.users),
            connections=sum(1 for state in open_states if state.level is _CONNECTION),
            requests=sum(1 for state in open_states if state.kind is _REQUEST),
            open_scopes=sum(session.active for session in known),
            instances=sum(live.values()),
            instances_by_provider=dict(live),
            cleanups_run=table.cleanups_run + sum(s.cleanups_run for s in known),
            cleanups_failed=table.cleanups_failed + sum(s.cleanups_failed for s in known),
            cleanup_failures=list(table.recent_failures),
            evictions=table.evictions,
            expired=table.expired,
            refusals=dict(table.refusals),
            leaks_detected=len(table.leaks),
            closed=table.closed,
        )


def describe(failure: BaseException) -> str:
    """``"cleanup of C.bridge failed: OSError(...)"`` for ``stats().cleanup_failures``."""
    prefix = "userscope: raised by the cleanup of "
    notes = getattr(failure, "__notes__", None) or []
    name = next((n.removeprefix(prefix) for n in notes if n.startswith(prefix)), "?")
    return f"cleanup of {name} failed: {failure!r}"


def remember(table: SessionTable, failures: list[BaseException]) -> None:
    """Record cleanup failures for ``stats().cleanup_failures`` (takes the table lock)."""
    with table.lock:
        for failure in failures:
            table.recent_failures.append(describe(failure))


def count(table: SessionTable, ran: int, failures: list[BaseException]) -> None:
    """Fold a finished USER scope's cleanups into the totals (takes the table lock)."""
    with table.lock:
        table.cleanups_run += ran
        table.cleanups_failed += len(failures)
        for failure in failures:
            table.recent_failures.append(describe(failure))
