"""`ScopeObserver`: the one hook through which the runtime reports what it does.

The OpenTelemetry integration (``userscope.otel``) and any custom monitoring implement
it. The runtime calls it only when an observer is set (``UserSessions(observer=...)``
or ``sessions.observer = ...``): with none, each call site costs one ``is None`` test.

Contract for implementers: every method must be fast and must not raise (an exception
from an observer is logged once per method and otherwise ignored); none is called
while a runtime lock is held; methods may be called from any thread or event loop.
No user id is ever meant to become a metric attribute: ids are passed so that traces
and logs can carry them, metrics must not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from userscope.container._scope import Scope
    from userscope.context import UserExecutionContext

__all__ = ["ScopeObserver", "UserKey"]

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
