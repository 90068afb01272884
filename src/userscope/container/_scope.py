"""Scope levels, per-scope state, the active-scope ContextVar and the cleanup runner.

The active scope chain lives in one :class:`~contextvars.ContextVar` holding a
*frame*: a tuple ``(ctx, request_state, connection_state, user_state, sessions)``
indexed by :class:`Scope` value, so a provider finds its scope with one
``ContextVar.get`` and one tuple index.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import threading
import time
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Final

from userscope._log import fields
from userscope.context import UserExecutionContext
from userscope.errors import CleanupError, UserscopeError

if TYPE_CHECKING:
    from userscope.container._observe import ScopeObserver
    from userscope.container._sessions import UserSessions, _UserSession

__all__ = ["Scope", "current_context", "current_scope"]

logger = logging.getLogger("userscope")


class Scope(IntEnum):
    """Scope levels, widest first: ``USER > CONNECTION > REQUEST``.

    ``USER`` spans everything one user does in this process, ``CONNECTION`` one
    HTTP request or one WebSocket connection, ``REQUEST`` one unit of work (an
    HTTP request, one WebSocket message, one agent run).

    Example:
        >>> import userscope as us
        >>> us.Scope.USER > us.Scope.CONNECTION > us.Scope.REQUEST
        True
    """

    REQUEST = 1
    CONNECTION = 2
    USER = 3


# Frame layout: index 0 is the context, 1..3 the states by Scope value, 4 the sessions,
# 5 whether the innermost scope was entered with `async with`.
Frame = tuple[
    UserExecutionContext,
    "ScopeState | None",
    "ScopeState | None",
    "ScopeState",
    "UserSessions",
    bool,
]

ACTIVE: Final[contextvars.ContextVar[Frame | None]] = contextvars.ContextVar(
    "userscope_active", default=None
)

# Finalizer kinds.
GEN: Final = 0
AGEN: Final = 1
CLOSE: Final = 2


class ScopeState:
    """Cache and finalizers of one open scope (internal).

    Mutated only under ``session.lock`` (one re-entrant lock per user session, shared by
    all of that user's scopes), so concurrent first resolves build one instance. The
    context manager that opens a CONNECTION/REQUEST scope is itself its state (a
    subclass in ``_sessions``), so opening a scope allocates one object.
    """

    __slots__ = (
        "async_",
        "cache",
        "closed",
        "finalizers",
        "level",
        "observed",
        "pending",
        "session",
    )

    level: Scope
    session: _UserSession
    async_: bool
    cache: dict[object, Any]
    pending: dict[object, Any] | None
    # Entries: (kind, object, provider) in creation order.
    finalizers: list[tuple[int, Any, object]]
    closed: bool
    # the token the observer's scope_opened returned for this scope (None without observer)
    observed: object

    def setup(self, level: Scope, session: _UserSession, async_: bool) -> None:
        """(Re)initialise as an empty open scope."""
        self.level = level
        self.session = session
        self.async_ = async_
        self.cache = {}
        self.pending = None
        self.finalizers = []
        self.closed = False
        self.observed = None

    def has_async_finalizers(self) -> bool:
        """Whether closing needs an event loop."""
        return any(
            kind == AGEN or (kind == CLOSE and _is_async_close(obj))
            for kind, obj, _ in self.finalizers
        )

    def detach(self) -> list[tuple[int, Any, object]]:
        """Mark closed, drop every cached reference and hand back the finalizers (lock held)."""
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


def _is_async_close(obj: Any) -> bool:
    aclose = getattr(obj, "aclose", None)
    return aclose is not None and inspect.iscoroutinefunction(aclose)


def _note(exc: BaseException, name: str, failure: BaseException) -> None:
    exc.add_note(f"userscope: cleanup of {name} also failed: {failure!r}")


def run_finalizers_sync(
    finalizers: list[tuple[int, Any, object]], exc: BaseException | None
) -> list[BaseException]:
    """Run finalizers in reverse creation order; return every failure."""
    failures: list[BaseException] = []
    while finalizers:
        kind, obj, provider = finalizers.pop()
        try:
            if kind == GEN:
                if exc is None:  # the common case, inlined
                    try:
                        next(obj)
                    except StopIteration:
                        continue
                    obj.close()
                    raise RuntimeError(
                        f"the generator of {provider_name(provider)} yielded more than once; "
                        "yield exactly once"
                    )
                _finish_generator(obj, exc, provider_name(provider))
            elif kind == CLOSE:
                obj.close()
            else:  # pragma: no cover - guarded by has_async_finalizers()
                raise UserscopeError(
                    f"{provider_name(provider)} needs an async cleanup; close its scope with "
                    "`async with`"
                )
        except BaseException as failure:
            if failure is not exc:
                _record(failure, provider_name(provider))
                failures.append(failure)
    return failures


async def run_finalizers_async(
    finalizers: list[tuple[int, Any, object]], exc: BaseException | None
) -> list[BaseException]:
    """Async twin of :func:`run_finalizers_sync`; awaits async generators and ``aclose``."""
    failures: list[BaseException] = []
    while finalizers:
        kind, obj, provider = finalizers.pop()
        try:
            if kind == GEN:
                _finish_generator(obj, exc, provider_name(provider))
            elif kind == AGEN:
                if exc is None:  # the common case, inlined
                    try:
                        await obj.__anext__()
                    except StopAsyncIteration:
                        continue
                    await obj.aclose()
                    raise RuntimeError(
                        f"the async generator of {provider_name(provider)} yielded more than "
                        "once; yield exactly once"
                    )
                await _finish_async_generator(obj, exc, provider_name(provider))
            elif _is_async_close(obj):
                await obj.aclose()
            else:
                obj.close()
        except BaseException as failure:
            if failure is not exc:
                _record(failure, provider_name(provider))
                failures.append(failure)
    return failures


# -- observer calls (see _observe.py) ------------------------------------------------
_observer_failed: set[tuple[int, str]] = set()
_observer_failed_lock = threading.Lock()


def notify(observer: ScopeObserver, method: str, *args: Any) -> object:
    """Call ``observer.<method>(*args)``; an exception is logged once per observer and
    method, then ignored (an observer must never break the runtime). Never called with a
    runtime lock held."""
    try:
        return getattr(observer, method)(*args)
    except Exception as failure:
        key = (id(observer), method)
        with _observer_failed_lock:
            first = key not in _observer_failed
            _observer_failed.add(key)
        if first:
            logger.error(
                "observer %r raised in %s; later failures of this method are not logged",
                observer,
                method,
                exc_info=failure,
                extra=fields("observer_failed"),
            )
        return None


def _own_level(provider: object, level: Scope) -> Scope:
    found = getattr(type(provider), "scope", level)
    return found if isinstance(found, Scope) else level


def run_observed_sync(
    finalizers: list[tuple[int, Any, object]],
    exc: BaseException | None,
    observer: ScopeObserver,
    state: ScopeState,
) -> list[BaseException]:
    """:func:`run_finalizers_sync` reporting each finalizer's duration and outcome."""
    failures: list[BaseException] = []
    while finalizers:
        item = finalizers.pop()
        start = time.perf_counter()
        failed = run_finalizers_sync([item], exc)
        seconds = time.perf_counter() - start
        notify(
            observer,
            "cleanup_finished",
            state.observed,
            provider_name(item[2]),
            _own_level(item[2], state.level),
            seconds,
            failed[0] if failed else None,
        )
        failures += failed
    return failures


async def run_observed_async(
    finalizers: list[tuple[int, Any, object]],
    exc: BaseException | None,
    observer: ScopeObserver,
    state: ScopeState,
) -> list[BaseException]:
    """Async twin of :func:`run_observed_sync`."""
    failures: list[BaseException] = []
    while finalizers:
        item = finalizers.pop()
        start = time.perf_counter()
        failed = await run_finalizers_async([item], exc)
        seconds = time.perf_counter() - start
        notify(
            observer,
            "cleanup_finished",
            state.observed,
            provider_name(item[2]),
            _own_level(item[2], state.level),
            seconds,
            failed[0] if failed else None,
        )
        failures += failed
    return failures


def _record(failure: BaseException, name: str) -> None:
    failure.add_note(f"userscope: raised by the cleanup of {name}")
    logger.error("cleanup of %s failed", name, exc_info=failure)


def _finish_generator(gen: Any, exc: BaseException | None, name: str) -> None:
    try:
        if exc is None:
            next(gen)
        else:
            gen.throw(exc)
    except StopIteration:
        return
    gen.close()
    raise RuntimeError(f"the generator of {name} yielded more than once; yield exactly once")


async def _finish_async_generator(agen: Any, exc: BaseException | None, name: str) -> None:
    try:
        if exc is None:
            await agen.__anext__()
        else:
            await agen.athrow(exc)
    except StopAsyncIteration:
        return
    await agen.aclose()
    raise RuntimeError(f"the async generator of {name} yielded more than once; yield exactly once")


def settle(
    exc: BaseException | None,
    failures: list[BaseException],
    level: Scope,
    user_id: str,
) -> None:
    """Apply contract 3 to the outcome of a scope exit.

    If the body raised, its exception propagates unchanged with the failures attached as
    notes; otherwise the failures are raised together as one :class:`CleanupError`
    (a non-``Exception`` failure such as a cancellation is re-raised as it is).
    """
    if not failures:
        return
    if exc is not None:
        for failure in failures:
            _note(exc, f"the {level.name} scope of {user_id!r}", failure)
        return
    plain = [f for f in failures if isinstance(f, Exception)]
    special = [f for f in failures if not isinstance(f, Exception)]
    if special:
        for failure in plain:
            _note(special[0], f"the {level.name} scope of {user_id!r}", failure)
        raise special[0]
    raise CleanupError(
        f"{len(plain)} cleanup(s) of the {level.name} scope of user {user_id!r} failed",
        plain,
        scope=level,
        user_id=user_id,
    )


def current_context() -> UserExecutionContext | None:
    """Return the active :class:`~userscope.UserExecutionContext`, or ``None``.

    Example:
        >>> import userscope as us
        >>> us.current_context() is None
        True
    """
    frame = ACTIVE.get()
    return None if frame is None else frame[0]


def current_scope() -> Scope | None:
    """Return the innermost active scope level, or ``None`` when no scope is active.

    Example:
        >>> import userscope as us
        >>> us.current_scope() is None
        True
    """
    return innermost(ACTIVE.get())


def innermost(frame: Frame | None) -> Scope | None:
    """Innermost open level of a frame."""
    if frame is None:
        return None
    if frame[1] is not None:
        return Scope.REQUEST
    if frame[2] is not None:
        return Scope.CONNECTION
    return Scope.USER
