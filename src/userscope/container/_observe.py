"""`ScopeObserver`: the one hook through which the runtime reports what it does.

The OpenTelemetry integration (``userscope.otel``) and any custom monitoring implement
it. The runtime calls it only when an observer is set (``UserSessions(observer=...)``
or ``sessions.observer = ...``): with none, each call site costs one ``is None`` test.

Contract for implementers: every method must be fast and must not raise (an exception
from an observer is logged once per method and otherwise ignored); none is called
while a runtime lock is held; methods may be called from any thread or event loop.
No user id is ever meant to become a metric attribute: ids are passed so that traces
and logs can carry them, metrics must not.

The functions at the end are the runtime's side: how a runtime's
:class:`~userscope.container._table.SessionTable` tells its observer (the table's
``notify_*`` methods delegate to them). They take no lock and
are never called with one held; only :func:`notify` mutates runtime state (the set of
observer methods that failed, to log each failure once).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from userscope._log import fields
from userscope.container._state import provider_name

if TYPE_CHECKING:
    from userscope.container._cleanup import Observe
    from userscope.container._scope import Scope
    from userscope.container._scopes import ScopeCM
    from userscope.container._state import ScopeState
    from userscope.container._table import SessionTable
    from userscope.context import UserExecutionContext

__all__ = [
    "ScopeObserver",
    "UserKey",
    "notify",
    "notify_closed",
    "notify_created",
    "notify_opened",
    "observe_cleanup",
]

logger = logging.getLogger("userscope")

UserKey = tuple[str | None, str]
"""A user: ``(tenant_id, user_id)``."""


class ScopeObserver:
    """Base class of runtime observers; every method is a no-op to override.

    Example:
        >>> import userscope as us
        >>> class Counting(us.ScopeObserver):
        ...     def __init__(self): self.opened = 0
        ...     def scope_opened(self, level, ctx):
        ...         self.opened += 1
        >>> counting = Counting()
        >>> sessions = us.UserSessions(observer=counting)
        >>> with sessions.request(us.UserExecutionContext(user_id="a", thread_id="t")):
        ...     pass
        >>> counting.opened >= 1
        True
    """

    def scope_opened(self, level: Scope, ctx: UserExecutionContext) -> object:
        """A scope of ``level`` opened for ``ctx`` (USER: when the user's session starts).

        Returns:
            A token (e.g. a span) handed back to the calls about this scope, or ``None``.
        """
        return None

    def scope_closed(self, token: object, level: Scope, error: BaseException | None) -> None:
        """The scope ``token`` belongs to closed; ``error`` is its cleanup failure, if any."""

    def instance_created(self, token: object, provider: str, level: Scope) -> None:
        """A scoped instance of ``provider`` was created in the scope of ``token``."""

    def cleanup_finished(
        self,
        token: object,
        provider: str,
        level: Scope,
        seconds: float,
        error: BaseException | None,
    ) -> None:
        """One finalizer ran (``error``: its failure, a timeout included)."""

    def limit_refused(self, limit: str, user: UserKey | None) -> None:
        """A limit (``"max_users"``, ``"max_connections_per_user"``, ...) refused a scope
        or an instance."""

    def user_ended(self, user: UserKey, reason: str) -> None:
        """A user's USER scope ended: ``reason`` is ``"evicted"``, ``"expired"``,
        ``"closed"`` (``close_user``) or ``"shutdown"``."""

    def swept(self, closed: int, seconds: float) -> None:
        """A sweep closed ``closed`` expired sessions in ``seconds``."""

    def leak_detected(self, provider: str, level: Scope, type_name: str) -> None:
        """A scoped instance outlived its scope (leak check)."""


# -- telling a runtime's observer (never called under a lock) -------------------------
def notify(table: SessionTable, method: str, *args: Any) -> Any:
    """Call ``observer.<method>(*args)``; log its first failure, ignore the others."""
    observer = table.observer
    if observer is None:
        return None
    try:
        return getattr(observer, method)(*args)
    except Exception:
        if method not in table.observer_failed:
            table.observer_failed.add(method)
            logger.exception(
                "userscope observer %s.%s failed; ignored from now on",
                type(observer).__qualname__,
                method,
                extra=fields("observer_failed"),
            )
        return None


def notify_opened(table: SessionTable, level: Scope, ctx: UserExecutionContext) -> object:
    """A scope opened: the observer's token for it (or ``None``)."""
    return notify(table, "scope_opened", level, ctx)


def notify_closed(table: SessionTable, state: ScopeCM, failures: list[BaseException]) -> None:
    """A CONNECTION/REQUEST scope closed; its first cleanup failure, if any."""
    error = failures[0] if failures else None
    notify(table, "scope_closed", getattr(state, "token", None), state.kind, error)


def observe_cleanup(table: SessionTable, state: ScopeState) -> Observe | None:
    """The per-finalizer callback for the cleanup runner (``None``: no observer)."""
    if table.observer is None:
        return None
    token, level = getattr(state, "token", None), state.level

    def observe(provider: object, seconds: float, error: BaseException | None) -> None:
        own = getattr(type(provider), "scope", level)  # a plain request holds two levels
        notify(table, "cleanup_finished", token, provider_name(provider), own, seconds, error)

    return observe


def notify_created(table: SessionTable, state: ScopeState, provider: object) -> None:
    """Called by the creation protocol after publishing (only with an observer)."""
    level = getattr(type(provider), "scope", state.level)  # the provider's own level
    notify(table, "instance_created", getattr(state, "token", None), provider_name(provider), level)
