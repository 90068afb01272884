"""The cleanup runner: one sync/async pair, and how a scope exit's outcome is settled.

Finalizers run in reverse creation order, every one of them even when some fail. The
async runner never lets a cancellation of the awaiting task reach a cleanup in
progress: a cleanup that suspends continues in its own task, awaited shielded and
bounded by a timeout (a timed-out cleanup is cancelled and recorded as a
:class:`~userscope.CleanupTimeoutError`); the runner reports the cancellation to its
caller, which re-raises it once every cleanup ran. A cleanup that finishes without
suspending (the common case) runs inline: no task, no extra loop iteration.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Final

from userscope._log import fields
from userscope._speedups import agen_step
from userscope.container import _locks
from userscope.container._scope import Scope
from userscope.container._state import AGEN, CLOSE, GEN, Finalizer, is_async_close, provider_name
from userscope.errors import (
    AsyncScopeRequiredError,
    CleanupError,
    CleanupTimeoutError,
    FactoryProtocolError,
)

__all__ = [
    "Observe",
    "Suspended",
    "finish_cleanups",
    "run_cleanups_async",
    "run_cleanups_sync",
    "settle",
    "start_cleanups",
]

if TYPE_CHECKING:  # the declarations, as typed no-ops
    from userscope import _nocython as cython
else:
    try:  # Cython's pure-Python mode: `cython.compiled` picks the C helpers (see _nocython)
        import cython
    except ImportError:  # pragma: no cover - a pure install: no Cython, no-op declarations
        from userscope import _nocython as cython

logger = logging.getLogger("userscope")

MISSING: Any = object()

Observe = Callable[[object, float, BaseException | None], None]
"""Called after each finalizer: ``(provider, seconds, error)`` (only with an observer)."""

_checking = False
"""Whether the lock-order checker is on (followed through :func:`_locks.on_switch`: a
module global is one dict lookup compiled, the checker module's attribute a getattr)."""


def _follow_lock_check(on: bool) -> None:
    global _checking
    _checking = on


_locks.on_switch(_follow_lock_check)


def run_cleanups_sync(
    finalizers: list[Finalizer],
    exc: BaseException | None,
    observe: Observe | None = None,
) -> list[BaseException]:
    """Run finalizers in reverse creation order; return every failure.

    ``finalizers`` is left as it is: the caller runs them once and drops the list.
    """
    if _checking:
        _locks.assert_unlocked("a cleanup")
    failures: list[BaseException] = []
    # walked from the end by index and left as it is (the caller drops it): compiled,
    # pop() of a short list shrinks it, a realloc per finalizer
    index = len(finalizers)
    while index:
        index -= 1
        kind, obj, provider = finalizers[index]
        if observe is not None:
            started = time.perf_counter()
            error: BaseException | None = None
        try:
            if kind == GEN:
                if exc is None:  # the common case, inlined
                    try:
                        next(obj)
                    except StopIteration:
                        pass
                    else:
                        obj.close()
                        raise FactoryProtocolError(provider_name(provider), "yielded_twice")
                else:
                    _finish_generator(obj, exc, provider)
            elif kind == CLOSE:
                obj.close()
            else:  # guarded by has_async_finalizers(): a sync exit never sees one
                raise AsyncScopeRequiredError(provider_name(provider), Scope.USER)
        except BaseException as failure:
            error = _failed(failure, exc, provider, failures)
        if observe is not None:
            observe(provider, time.perf_counter() - started, error)
    return failures


async def run_cleanups_async(
    finalizers: list[Finalizer],
    exc: BaseException | None,
    bound: float | None = None,
    observe: Observe | None = None,
) -> tuple[list[BaseException], asyncio.CancelledError | None]:
    """Async twin of :func:`run_cleanups_sync`, shielded from cancellation.

    Returns ``(failures, cancelled)``: ``cancelled`` is the cancellation of the awaiting
    task that arrived meanwhile, if any (the original exception object, so its message
    still identifies who cancelled, e.g. an anyio cancel scope); the caller re-raises it
    after its own bookkeeping.
    ``bound`` (seconds) bounds each cleanup that suspends.

    The two halves, for a caller that must not make a coroutine when nothing suspends
    (the async scope exit): :func:`start_cleanups` runs the finalizers inline until one
    suspends, :func:`finish_cleanups` awaits that one and runs the rest.
    """
    failures: list[BaseException] = []
    suspended = start_cleanups(finalizers, exc, failures, observe)
    if suspended is None:
        return failures, None
    return failures, await finish_cleanups(finalizers, exc, bound, failures, suspended, observe)


# How a suspended cleanup continues (the first field of a `Suspended`).
_RESUME_AGEN: Final = 0  # an async generator's step: then it must have finished
_RESUME_CLOSE: Final = 1  # an `aclose()` coroutine
_CLOSE_AGAIN: Final = 2  # an async generator that yielded twice: await its aclose(), refuse

Suspended = tuple[int, Any, Any, object, Any, float]
"""A cleanup that suspended: ``(how, step, yielded, provider, agen, started)``."""


def start_cleanups(
    finalizers: list[Finalizer],
    exc: BaseException | None,
    failures: list[BaseException],
    observe: Observe | None = None,
) -> Suspended | None:
    """Run finalizers in reverse creation order, inline, until one suspends.

    Appends every failure to ``failures``. Returns ``None`` when every finalizer ran
    (the common case: no coroutine, no task, no loop iteration; ``finalizers`` is left
    as it is, the caller drops it), else the cleanup that suspended, for
    :func:`finish_cleanups` (``finalizers`` then keeps only the ones not started).
    """
    if _checking:
        _locks.assert_unlocked("a cleanup")
    started = 0.0
    # walked from the end by index; the list is cut only where one suspends, to the
    # ones not started (compiled, deleting the last item of a short list shrinks it, a
    # realloc per finalizer)
    index = len(finalizers)
    while index:
        index -= 1
        kind, obj, provider = finalizers[index]
        if observe is not None:
            started = time.perf_counter()
        error: BaseException | None = None
        try:
            if kind == AGEN:
                # inline until it first suspends (the common case never does)
                if cython.compiled:  # through the C slots: None, it finished
                    stepped = agen_step(obj, exc)
                    if stepped is not None:
                        del finalizers[index:]  # keep the ones not started
                        suspended, step, yielded = stepped
                        if suspended:
                            return (_RESUME_AGEN, step, yielded, provider, obj, started)
                        # it yielded again: refused once it is closed
                        return (_CLOSE_AGAIN, obj, None, provider, obj, started)
                else:  # the same in Python (agen_step's twin would add a frame)
                    step = obj.__anext__() if exc is None else obj.athrow(exc)
                    try:
                        yielded = step.send(None)
                    except StopAsyncIteration:
                        pass
                    except StopIteration:  # it yielded again: refused once it is closed
                        del finalizers[index:]  # keep the ones not started
                        return (_CLOSE_AGAIN, obj, None, provider, obj, started)
                    else:
                        del finalizers[index:]  # keep the ones not started
                        return (_RESUME_AGEN, step, yielded, provider, obj, started)
            elif kind == GEN:
                _finish_generator(obj, exc, provider)
            elif is_async_close(obj):
                step = obj.aclose()
                try:
                    yielded = step.send(None)
                except StopIteration:
                    pass
                else:
                    del finalizers[index:]  # keep the ones not started
                    return (_RESUME_CLOSE, step, yielded, provider, None, started)
            else:
                obj.close()
        except BaseException as failure:
            error = _failed(failure, exc, provider, failures)
        if observe is not None:
            observe(provider, time.perf_counter() - started, error)
    return None


async def finish_cleanups(
    finalizers: list[Finalizer],
    exc: BaseException | None,
    bound: float | None,
    failures: list[BaseException],
    suspended: Suspended | None,
    observe: Observe | None = None,
) -> asyncio.CancelledError | None:
    """Continue :func:`start_cleanups`: await the cleanup that suspended (shielded, and
    bounded by ``bound``), then run the rest the same way.

    Appends every failure to ``failures``; returns the cancellation of the awaiting task
    that arrived meanwhile, if any (the caller re-raises it after its bookkeeping).
    """
    cancelled: list[asyncio.CancelledError] = []
    while suspended is not None:
        how, step, yielded, provider, agen, started = suspended
        error: BaseException | None = None
        try:
            if how == _CLOSE_AGAIN:
                await agen.aclose()
                raise FactoryProtocolError(provider_name(provider), "yielded_twice")
            try:
                await _shielded(step, bound, provider, cancelled, yielded)
            except StopAsyncIteration:
                if how != _RESUME_AGEN:
                    raise
            else:
                if how == _RESUME_AGEN:  # it yielded again
                    await agen.aclose()
                    raise FactoryProtocolError(provider_name(provider), "yielded_twice")
        except BaseException as failure:
            error = _failed(failure, exc, provider, failures)
        if observe is not None:
            observe(provider, time.perf_counter() - started, error)
        suspended = start_cleanups(finalizers, exc, failures, observe)
    return cancelled[0] if cancelled else None


async def _shielded(
    step: Any,
    bound: float | None,
    provider: object,
    cancelled: list[asyncio.CancelledError],
    yielded: Any = MISSING,
) -> Any:
    """Run one cleanup awaitable to its end whatever happens to the awaiting task.

    ``yielded``: what ``step`` yielded when the caller already started it.
    Appends to ``cancelled`` when the awaiting task was cancelled meanwhile; returns
    what the cleanup returned, raises what it raised (``StopAsyncIteration`` included),
    or :class:`CleanupTimeoutError`.
    """
    if yielded is MISSING:  # not started yet: run inline until it first suspends
        try:
            yielded = step.send(None)
        except StopIteration as stop:
            return stop.value
    task = asyncio.get_running_loop().create_task(_drive(_Resume(step, yielded)))
    loop = asyncio.get_running_loop()
    deadline = None if bound is None else loop.time() + bound
    while not task.done():
        remaining = None if deadline is None else deadline - loop.time()
        if remaining is not None and remaining <= 0:
            task.cancel()
            task.add_done_callback(_consume)
            assert bound is not None
            raise CleanupTimeoutError(provider_name(provider), bound)
        try:
            await asyncio.wait((task,), timeout=remaining)
        except asyncio.CancelledError as cancellation:
            cancelled.append(cancellation)
    return task.result()  # or the cleanup's own failure


class _Resume:
    """Continue a coroutine that already yielded ``first``, as an awaitable for a task."""

    __slots__ = ("first", "step")

    def __init__(self, step: Any, first: Any) -> None:
        self.step = step
        self.first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        step, yielded = self.step, self.first
        while True:
            try:
                sent = yield yielded
            except BaseException as exc:  # a cancellation of the cleanup's own task
                try:
                    yielded = step.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    yielded = step.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _drive(resume: _Resume) -> Any:
    return await resume


def _consume(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a timed-out cleanup's late failure is not re-logged


def _failed(
    failure: BaseException,
    exc: BaseException | None,
    provider: object,
    failures: list[BaseException],
) -> BaseException | None:
    """A cleanup raised ``failure``: record it and return it (for the observer), unless it
    is the body's own exception ``exc`` coming back out of a generator (``None``)."""
    if failure is exc:
        return None
    record(failure, provider_name(provider))
    failures.append(failure)
    return failure


def record(failure: BaseException, name: str) -> None:
    """Log a cleanup failure, note where it came from, and release the frames it holds.

    The traceback keeps its lines but drops the locals of finished frames, so the
    instance the cleanup was closing is not kept alive by the error (no false leak).
    """
    failure.add_note(f"userscope: raised by the cleanup of {name}")
    logger.error(
        "cleanup of %s failed",
        name,
        exc_info=failure,
        extra=fields("cleanup_failed", provider=name),
    )
    traceback.clear_frames(failure.__traceback__)


def _finish_generator(gen: Any, exc: BaseException | None, provider: object) -> None:
    try:
        if exc is None:
            next(gen)
        else:
            gen.throw(exc)
    except StopIteration:
        return
    gen.close()
    raise FactoryProtocolError(provider_name(provider), "yielded_twice")


def _note(exc: BaseException, name: str, failure: BaseException) -> None:
    exc.add_note(f"userscope: cleanup of {name} also failed: {failure!r}")


def settle(
    exc: BaseException | None,
    failures: list[BaseException],
    level: Scope,
    user: tuple[str | None, str],
) -> None:
    """Apply contract 3 to the outcome of a scope exit.

    If the body raised, its exception propagates unchanged with the failures attached as
    notes; otherwise the failures are raised together as one :class:`CleanupError`
    (a non-``Exception`` failure such as a cancellation is re-raised as it is).
    """
    if not failures:
        return
    tenant_id, user_id = user
    whose = f"the {level.name} scope of {user_id!r}"
    if exc is not None:
        for failure in failures:
            _note(exc, whose, failure)
        return
    plain = [f for f in failures if isinstance(f, Exception)]
    special = [f for f in failures if not isinstance(f, Exception)]
    if special:
        for failure in plain:
            _note(special[0], whose, failure)
        raise special[0]
    raise CleanupError(
        f"{len(plain)} cleanup(s) of {whose} failed",
        plain,
        scope=level,
        user_id=user_id,
        tenant_id=tenant_id,
    )
