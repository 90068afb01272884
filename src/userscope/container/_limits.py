"""Per-user limits: checking the configured ones, building and counting a refusal.

A refusal (:class:`~userscope.ScopeLimitError`) is built under the locks by
:func:`limit_error` (its caller holds the user's session lock) and raised after they
are released; :func:`refused` counts it (taking the table lock unless the caller
already counted it under that lock) and tells the observer, with no lock held.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from userscope.container._observe import notify
from userscope.container._scope import Scope
from userscope.errors import ScopeLimitError

if TYPE_CHECKING:
    from userscope.container._session import UserSession
    from userscope.container._table import SessionTable

__all__ = ["check_counts", "limit_error", "refused"]

_CONNECTION: Final = Scope.CONNECTION
_REQUEST: Final = Scope.REQUEST


def check_counts(**limits: int | None) -> None:
    """Refuse a count limit that is not a positive int or ``None`` (the constructor's check).

    Example:
        >>> from userscope.container._limits import check_counts
        >>> check_counts(max_users=0)
        Traceback (most recent call last):
        ValueError: max_users must be a positive int or None, got 0
    """
    for name, value in limits.items():
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")
        if value <= 0:
            raise ValueError(f"{name} must be a positive int or None, got {value!r}")


def limit_error(table: SessionTable, session: UserSession, kind: Scope) -> ScopeLimitError | None:
    """The refusal a new scope of ``kind`` would meet (session lock held), or None."""
    if kind is _CONNECTION:
        maximum = table.max_connections_per_user
        if maximum is not None and session.connections >= maximum:
            return ScopeLimitError(
                "max_connections_per_user",
                session.user_id,
                session.connections,
                maximum,
                session.tenant_id,
            )
    elif kind is _REQUEST:
        maximum = table.max_requests_per_user
        if maximum is not None and session.requests >= maximum:
            return ScopeLimitError(
                "max_requests_per_user",
                session.user_id,
                session.requests,
                maximum,
                session.tenant_id,
            )
    return None


def refused(table: SessionTable, error: ScopeLimitError, counted: bool = False) -> ScopeLimitError:
    """Count a refusal (no lock held on entry) and tell the observer; return it."""
    if not counted:
        with table.lock:
            table.refusals[error.limit] += 1
    if table.observer is not None:
        user = None if error.user_id is None else (error.tenant_id, error.user_id)
        notify(table, "limit_refused", error.limit, user)
    return error
