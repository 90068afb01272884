"""`SessionStats`: the snapshot ``UserSessions.stats()`` returns."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["SessionStats"]


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
