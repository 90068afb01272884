"""The state of one open scope: its cache, its pending creations and its finalizers."""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Any, Final

from userscope.container._scope import Scope

if TYPE_CHECKING:
    from userscope.container._session import UserSession

__all__ = ["AGEN", "CLOSE", "GEN", "Finalizer", "ScopeState", "provider_name"]

# Finalizer kinds: what running the finalizer means.
GEN: Final = 0  # a generator factory: resume it past its `yield`
AGEN: Final = 1  # an async generator factory: resume it past its `yield`
CLOSE: Final = 2  # an object declared `.closing()`: call close() or await aclose()

Finalizer = tuple[int, Any, object]
"""``(kind, object, provider)``, kept in creation order."""


class ScopeState:
    """Cache, pending creations and finalizers of one open scope (internal).

    Mutated only under ``session.lock`` (one lock per user session, shared by all of
    that user's scopes); user code never runs under it. The context manager that opens
    a CONNECTION/REQUEST scope is itself its state (a subclass in ``_scopes``), so
    opening a scope allocates one object.

    Attributes:
        level: the scope level this state serves.
        session: the user session it belongs to.
        async_: whether it was entered with ``async with``.
        cache: provider -> instance.
        pending: provider -> the creation in flight (``None`` until the first one): the
            creating thread's ident or task, or a ``PendingCreation`` once someone waits.
        finalizers: what to run at exit, in creation order.
        closed: set (under the lock) when the scope starts closing: no new instance.
        token: what the observer's ``scope_opened`` returned, if an observer is set.
        loop: the event loop of the last async finalizer (USER cleanups run there when
            the last scope exits in a thread without a loop).
    """

    __slots__ = (
        "async_",
        "cache",
        "closed",
        "finalizers",
        "level",
        "loop",
        "pending",
        "session",
        "token",
    )

    level: Scope
    session: UserSession
    async_: bool
    cache: dict[object, Any]
    pending: dict[object, Any] | None  # thread ident, task, or PendingCreation
    finalizers: list[Finalizer]
    closed: bool
    token: object
    loop: asyncio.AbstractEventLoop | None

    def setup(self, level: Scope, session: UserSession, async_: bool) -> None:
        """(Re)initialise as an empty open scope."""
        self.level = level
        self.session = session
        self.async_ = async_
        self.cache = {}
        self.pending = None
        self.finalizers = []
        self.closed = False
        self.token = None
        self.loop = None

    def has_async_finalizers(self) -> bool:
        """Whether closing needs an event loop."""
        return any(
            kind == AGEN or (kind == CLOSE and is_async_close(obj))
            for kind, obj, _ in self.finalizers
        )

    def detach(self) -> list[Finalizer]:
        """Mark closed, drop every cached reference, hand back the finalizers (lock held).

        Read ``pending`` before: the creations still in flight are the caller's to fail.
        """
        self.closed = True
        self.session.instances -= len(self.cache)
        finalizers = self.finalizers
        self.finalizers = []
        self.cache.clear()
        self.pending = None
        return finalizers


def provider_name(provider: object) -> str:
    """Name of a provider for messages (``Container.attr`` when known)."""
    name = getattr(provider, "name", None)
    return name if isinstance(name, str) else repr(provider)


def is_async_close(obj: Any) -> bool:
    """Whether ``obj.aclose`` is a coroutine function (closing it needs ``await``)."""
    aclose = getattr(obj, "aclose", None)
    return aclose is not None and inspect.iscoroutinefunction(aclose)
