"""One user's session: the USER scope's state plus the counters its holds need."""

from __future__ import annotations

from enum import Enum
from typing import Any, Final

from userscope._speedups import Lock as _Lock
from userscope.container import _locks
from userscope.container._scope import Scope
from userscope.container._state import ScopeState

__all__ = ["NEVER", "Release", "UserKey", "UserSession", "table_slot"]

UserKey = tuple[str | None, str]
"""A user: ``(tenant_id, user_id)``."""

NEVER: Final = float("inf")


def table_slot(tenant_id: str | None, user_id: str) -> str | UserKey:
    """A user's key in the session table: the user id alone when there is no tenant.

    A str key is found faster than a tuple (no tuple to build, hash and compare), and a
    str never equals a tuple, so the two forms cannot collide.
    """
    return user_id if tenant_id is None else (tenant_id, user_id)


class Release(Enum):
    """What dropping a hold on a session leaves for the caller to do (after the lock)."""

    KEEP = "keep"  # other scopes still hold it, or nothing to do
    SCHEDULE = "schedule"  # it went idle: queue its next possible expiry
    FINISH = "finish"  # it was retired and this was its last scope: run its USER cleanups


class UserSession:
    """One user's USER scope plus its counters (internal).

    Everything here is read and changed under ``lock`` (a session lock: taken after the
    table lock, never before it). ``active`` counts open scopes holding the session
    (USER-only, connection, request); ``connections`` and ``requests`` are only counted
    when a per-user concurrency limit needs them; ``instances`` counts live scoped
    instances of all this user's scopes *plus the creations in flight* (reserved before
    a factory runs), so ``max_instances_per_user`` is an upper bound.
    """

    __slots__ = (
        "__weakref__",
        "active",
        "cleanups_failed",
        "cleanups_run",
        "connections",
        "created_at",
        "expires_at",
        "instances",
        "key",
        "lock",
        "max_expiry",
        "max_instances",
        "requests",
        "retired",
        "scheduled",
        "slot",
        "state",
        "tenant_id",
        "user_id",
    )

    def __init__(
        self, key: UserKey, now: float, max_age: float | None, max_instances: int | None
    ) -> None:
        self.key = key
        self.slot = table_slot(*key)  # its key in the owner's session table
        self.max_instances = max_instances  # the owner's max_instances_per_user
        self.tenant_id, self.user_id = key
        self.lock: Any = _locks.new_lock(_locks.SESSION) if _locks._enabled else _Lock()
        self.state = ScopeState()
        self.state.setup(Scope.USER, self, False)
        self.active = 0
        self.connections = 0
        self.requests = 0
        self.instances = 0
        self.created_at = now
        self.max_expiry = NEVER if max_age is None else now + max_age
        self.expires_at = self.max_expiry  # meaningful while `active` is 0
        self.retired = False  # out of the table; finished when `active` drops to 0
        self.scheduled = False  # has an entry in the owner's deadline heap
        self.cleanups_run = 0  # finalizers of this user's CONNECTION/REQUEST scopes
        self.cleanups_failed = 0
