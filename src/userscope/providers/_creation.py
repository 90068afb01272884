"""The creation protocol: how a scoped instance is built after a cache miss.

1. **Reserve**, under the session lock: the scope is open, the instance is neither
   cached nor being created, the user's instance budget has room (creations in flight
   and nested dependencies count), so the budget is taken and the creation is
   registered in ``state.pending``: as the creating thread's ident (sync) or task
   (async); the first waiter replaces that with a
   :class:`~userscope.container._pending.PendingCreation` it can wait on, so an
   uncontended creation allocates nothing.
2. **Build**, with no lock held: :func:`will_create` runs, then the factory.
3. **Publish**, under the lock again: cache the instance and its finalizer, or give
   the budget back on failure; then hand the one outcome to every waiter. An instance
   finished after its scope closed is cleaned up at once and the creator gets
   :class:`~userscope.ScopeClosedError`, like its waiters.

A resolver that finds the instance being created waits for that creation (a thread
blocks on an event, a task awaits a future of its own loop). Waiting for oneself is a
:class:`~userscope.DependencyCycleError`; a synchronous wait that would block an event
loop on a creation owned by a task of that same loop is a
:class:`~userscope.BlockingWaitError`. Neither ever deadlocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Coroutine, Generator
from types import AsyncGeneratorType, GeneratorType
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # the declarations, as typed no-ops
    from userscope import _nocython as cython
else:
    try:  # Cython's pure-Python mode: C types for the compiled build (see _nocython)
        import cython
    except ImportError:  # pragma: no cover - a pure install: no Cython, no-op declarations
        from userscope import _nocython as cython

from userscope._speedups import Lock, call, ready, running_loop, running_task, thread_ident
from userscope.container import _flags, _guard, _locks
from userscope.container._cleanup import run_cleanups_async, run_cleanups_sync
from userscope.container._guard import check as guard_check
from userscope.container._pending import RETRY, PendingCreation
from userscope.container._scope import ASYNC, SESSIONS, ActiveFrame, Scope
from userscope.container._session import UserSession
from userscope.container._state import AGEN, CLOSE, GEN, Finalizer, ScopeState, is_async_close
from userscope.errors import (
    AsyncScopeRequiredError,
    BlockingWaitError,
    DependencyCycleError,
    FactoryProtocolError,
    LockOrderError,
    ScopeClosedError,
    ScopeLimitError,
)
from userscope.providers._plan import (
    CALL,
    CONTEXT,
    MISSING,
    PLAIN_TYPES,
    SCOPED,
    VALUE,
    compile_builder,
    is_awaitable,
    needs_await,
)

if TYPE_CHECKING:
    from userscope.providers._scoped import ScopedProvider

__all__ = ["ProviderCore", "acreate", "begin_acreate", "create", "will_create"]

_anext = anext  # a global: compiled, a builtin Cython does not know is looked up per use
_NO_ARGS: Final[tuple[Any, ...]] = ()
_USER: Final = Scope.USER
_ASYNC: Final = ASYNC  # the frame index, a C integer compiled (see the .pxd)
# the injection kinds again, as C ints compiled (see the .pxd): the plan loops compare them
_VALUE: Final = VALUE
_CONTEXT: Final = CONTEXT
_SCOPED: Final = SCOPED
_PLAIN: Final = PLAIN_TYPES  # the same set, typed as a set compiled (a C membership test)


async def _raise(error: BaseException) -> Any:
    """An awaitable that raises ``error`` (a creation that failed in the call)."""
    raise error


class ProviderCore:
    """What the creation protocol reads of one provider, as C fields when compiled.

    Each :class:`~userscope.providers._scoped.ScopedProvider` and
    :class:`~userscope.CurrentContext` owns one (``provider._core``). The provider stays a
    Python class subclassing dependency-injector's ``Provider`` (nothing here depends on
    its binary layout); its private attributes ``_is_async``, ``_plan``, ``_provides``,
    ``_closing`` and ``_us_guard`` are views of these fields, so the call and creation
    paths read a struct member where they read an attribute of a Python object.

    Attributes:
        provider: the provider; the key of its instances in a scope's cache.
        scope: the frame index of its level (``int(provider.scope)``).
        plan: one ``(keyword or None, kind, dependency, its core or None)`` per
            injection, in order (see :func:`~userscope.providers._plan.plan_entry`).
        provides: the factory.
        factory: a dependency-injector ``Factory`` of it, for calls with arguments.
        is_async: whether it is built asynchronously (an async factory, or a factory
            seen to return an awaitable).
        closing: whether ``close()``/``aclose()`` is called at scope exit.
        overridden: whether the provider has an overriding provider; kept by its
            ``override``/``reset_last_overriding``/``reset_override`` and by copies.
        guard: the validation generation it last passed (:mod:`~userscope.container._guard`).
        awaits: whether the plan has an injection that may need awaiting (a provider to
            call or a scoped dependency).
        keywords: whether the plan has keyword injections.
        scoped: the cores of the plan's scoped dependencies (the ones read from a scope's
            cache), innermost level first.
        suspends: whether building it may suspend by itself: an async factory, or one
            whose call (or a provider it calls) was seen to return an awaitable. While
            false, :func:`begin_acreate` builds it in the call when its scoped
            dependencies are cached.
    """

    __slots__ = (
        "awaits",
        "closing",
        "factory",
        "guard",
        "is_async",
        "keywords",
        "overridden",
        "plan",
        "provider",
        "provides",
        "scope",
        "scoped",
        "suspends",
    )

    provider: Any
    scope: int
    plan: tuple[tuple[str | None, int, Any, ProviderCore | None], ...]
    provides: Any
    factory: Any
    is_async: bool
    closing: bool
    overridden: bool
    guard: object
    awaits: bool
    keywords: bool
    scoped: tuple[ProviderCore, ...]
    suspends: bool

    def __init__(self, provider: Any, scope: int) -> None:
        self.provider = provider
        self.scope = scope
        self.plan = ()
        self.provides = None
        self.factory = None
        self.is_async = False
        self.closing = False
        self.overridden = False
        self.guard = None
        self.awaits = False
        self.keywords = False
        self.scoped = ()
        self.suspends = False

    def set_plan(self, plan: tuple[tuple[str | None, int, Any, ProviderCore | None], ...]) -> None:
        """Install an injection plan (and what the runners precompute about it)."""
        self.plan = plan
        self.awaits = False
        self.keywords = False
        scoped: list[ProviderCore] = []
        for key, how, _, core in plan:
            if how in (CALL, SCOPED):
                self.awaits = True
            if how == SCOPED and core is not None:
                scoped.append(core)
            if key is not None:
                self.keywords = True
        # innermost level first: a request-level dependency is the one most often still to
        # create, so `begin_acreate`'s check stops at the first look
        self.scoped = tuple(sorted(scoped, key=_level))


def _level(core: ProviderCore) -> int:
    return core.scope


def will_create(provider: ScopedProvider[Any], state: ScopeState, frame: ActiveFrame) -> None:
    """Called right before a new instance of ``provider`` is built, sync or async.

    No lock is held. The one place to check anything about a creation before any
    object exists (e.g. validating the provider's container on its first resolve).
    The creation paths call it only while :data:`before_create` is true (it is
    when the lock-order checker is on), so the hot path pays one global test.
    """
    if _locks._enabled:
        _locks.assert_unlocked("a factory")


before_create: bool = False
"""Call :func:`will_create` before each build; set it (``_creation.before_create = True``)
to add a check there. Switched on with the lock-order checker."""


def _follow_lock_check(on: bool) -> None:
    global before_create
    if on:
        before_create = True


_locks.on_switch(_follow_lock_check)

# The two switches every creation reads, as globals of this module (compiled: C globals
# of the extension, see the .pxd), kept by the modules that own them through a listener:
# reading `_guard.GENERATION.token` or `_flags.observing` is a generic lookup on a Python
# object per read (~160 instructions each, four per creation of the sync cycle).
_generation: object = None
"""The current validation generation's token (``_guard.GENERATION.token``)."""
_observing: bool = False
"""``_flags.observing``: whether any runtime got an observer."""


def _follow_generation(token: object) -> None:
    global _generation
    _generation = token


def _follow_flag(name: str, value: bool) -> None:
    global _observing
    if name == "observing":
        _observing = value


_guard.on_generation(_follow_generation)
_flags.on_change(_follow_flag)


def _refuse(frame: ActiveFrame, state: ScopeState, provider: ScopedProvider[Any]) -> Exception:
    """The instance-budget refusal (no lock held)."""
    session = state.session
    limit = session.max_instances
    assert limit is not None
    error = ScopeLimitError(
        "max_instances_per_user", session.user_id, session.instances, limit, session.tenant_id
    )
    return frame[SESSIONS].refused(error)


def _closed(state: ScopeState, provider: ScopedProvider[Any]) -> ScopeClosedError:
    session = state.session
    return ScopeClosedError(state.level, session.user_id, provider.name, session.tenant_id)


def _waitable(state: ScopeState, provider: object, entry: Any) -> PendingCreation:
    """The pending creation to wait on (lock held): made on the first waiter's demand."""
    if type(entry) is PendingCreation:
        return entry
    creation = PendingCreation(entry, None) if type(entry) is int else PendingCreation(None, entry)
    state.pending[provider] = creation  # type: ignore[index]
    return creation


def _wait_error(
    provider: ScopedProvider[Any], state: ScopeState, pending: PendingCreation
) -> Exception | None:
    """Why this thread must not block on ``pending`` (None: it may)."""
    if pending.task is None:
        if pending.thread == thread_ident():
            return DependencyCycleError(provider.name, provider.scope)
        return None
    if pending.task.get_loop() is not running_loop():
        return None  # owned by a task of another loop (another thread): it can finish
    if pending.task is running_task():
        return DependencyCycleError(provider.name, provider.scope)
    return BlockingWaitError(provider.name, provider.scope)


def _settle_entry(entry: Any, value: Any, error: BaseException | None) -> None:
    """Hand the outcome to the waiters of a popped entry, if anyone waited (no lock)."""
    if type(entry) is PendingCreation and entry.settle(value, error):
        entry.wake()


def create(
    core: ProviderCore,
    state: ScopeState,
    frame: ActiveFrame,
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    in_loop: bool = False,
) -> Any:
    """Create the instance of ``core.provider`` in ``state`` after a cache miss
    (synchronous resolve).

    Returns the instance, or an awaitable of it when the provider is async (or
    ``in_loop`` and the instance is being created by another task).
    """
    provider = core.provider
    if core.is_async and not args and not kwargs:
        if not frame[_ASYNC]:
            raise AsyncScopeRequiredError(provider.name, state.level)
        if core.suspends:  # tested here too: pure, a call into begin_acreate costs ~600
            return acreate(core, state, frame)
        return begin_acreate(core, state, frame)
    session = state.session
    lock = session.lock
    while True:
        lock.acquire()
        if state.closed:  # checked under the lock: a closing scope takes no new instance
            lock.release()
            raise _closed(state, provider)
        value = state.cache.get(provider, MISSING)
        if value is not MISSING:
            lock.release()
            return ready(value) if core.is_async else value
        pending = state.pending
        entry = pending.get(provider) if pending else None
        if entry is None:
            limit = session.max_instances
            if limit is not None and session.instances >= limit:
                lock.release()
                raise _refuse(frame, state, provider)
            session.instances += 1
            if pending is None:
                state.pending = {provider: thread_ident()}
            else:
                pending[provider] = thread_ident()
            lock.release()
            break
        creation = _waitable(state, provider, entry)
        if in_loop:  # the async builder: wait without blocking the loop
            future = creation.async_waiter(asyncio.get_running_loop())
            lock.release()
            return _await_retry(core, state, frame, future)
        error = _wait_error(provider, state, creation)
        if error is not None:
            lock.release()
            raise error
        event = creation.sync_waiter()
        lock.release()
        event.wait()
        value = creation.outcome()
        if value is not RETRY:
            return ready(value) if core.is_async else value
    # build, with no lock held
    finalizer: Finalizer | None = None
    try:
        if core.guard is not _generation:  # first creation in this generation
            guard_check(provider)  # validates its container(s): CaptiveDependencyError
        if before_create:
            will_create(provider, state, frame)
        if not args and not kwargs:
            if INTERPRET_PLANS:
                result = run_plan(core, frame)
            else:
                builder = provider._builder
                if builder is None:
                    builder = provider._builder = compile_builder(provider, asynchronous=False)
                result = builder(frame)
        else:
            result = core.factory(*args, **(kwargs or {}))
        kind = type(result)
        if kind is GeneratorType:
            try:
                value = next(result)
            except StopIteration:
                raise FactoryProtocolError(provider.name, "no_yield") from None
            finalizer = (GEN, result, provider)
        elif kind not in _PLAIN and needs_await(result):
            if not frame[_ASYNC]:
                _discard(result)
                raise AsyncScopeRequiredError(provider.name, state.level)
            core.is_async = True  # from now on `acreate` builds it in one coroutine
            provider.enable_async_mode()
            return Handover(core, state, frame, result)
        else:
            value = result
            if core.closing:
                finalizer = provider._closer(result)
    except BaseException as error:
        _abandon(state, provider, error)
        raise
    # publish (inline, not `_publish`: the sync hot path, and pure a call costs ~600)
    lock.acquire()
    if state.closed:  # closed while it was built: its waiters already got ScopeClosedError
        session.instances -= 1
        lock.release()
        if finalizer is not None:
            run_cleanups_sync([finalizer], None)
        raise _closed(state, provider)
    state.cache[provider] = value
    if finalizer is not None:
        state.finalizers.append(finalizer)
    pending = state.pending
    entry = pending.pop(provider)  # type: ignore[union-attr]
    lock.release()
    if type(entry) is PendingCreation:
        _settle_entry(entry, value, None)
    if _observing and frame[SESSIONS].observer is not None:
        frame[SESSIONS].notify_created(state, provider)
    return ready(value) if core.is_async else value


def _publish(
    state: ScopeState,
    frame: ActiveFrame,
    provider: object,
    value: Any,
    finalizer: Finalizer | None,
) -> bool:
    """Publish an instance an async creation built (:func:`acreate`,
    :func:`begin_acreate`; :func:`create` does the same inline, without the loop): cache
    it (and its finalizer) and hand it to the creation's waiters. False, with the budget
    given back, when its scope closed while it was built (its waiters already got
    ScopeClosedError): the creator then cleans the instance up and raises. A USER
    instance with an async cleanup records the loop that cleanup can run on."""
    session = state.session
    lock = session.lock
    lock.acquire()
    if state.closed:
        session.instances -= 1
        lock.release()
        return False
    state.cache[provider] = value
    if finalizer is not None:
        state.finalizers.append(finalizer)
        if state.level is _USER and (
            finalizer[0] == AGEN or (finalizer[0] == CLOSE and is_async_close(finalizer[1]))
        ):  # where this user's async cleanups can run if the last scope exits off-loop
            state.loop = running_loop()
    pending = state.pending
    entry = pending.pop(provider)  # type: ignore[union-attr]
    lock.release()
    if type(entry) is PendingCreation:
        _settle_entry(entry, value, None)
    if _observing and frame[SESSIONS].observer is not None:
        frame[SESSIONS].notify_created(state, provider)
    return True


async def _built_too_late(
    state: ScopeState, frame: ActiveFrame, provider: Any, finalizer: Finalizer | None
) -> Any:
    """An instance built after its scope closed: clean it up at once, then refuse it."""
    if finalizer is not None:
        await run_cleanups_async([finalizer], None, frame[SESSIONS].cleanup_timeout)
    raise _closed(state, provider)


def begin_acreate(core: ProviderCore, state: ScopeState, frame: ActiveFrame) -> Awaitable[Any]:
    """Create the instance of an async provider (``core.is_async``) in ``state`` after a
    cache miss: an awaitable of it, started in the call.

    A provider that is async only through its dependencies (``core.suspends`` false) is
    built right here when every scoped dependency is already cached, as then nothing it
    needs can suspend: the instance comes back as a ready awaitable (no coroutine to run,
    the common case of a request or message scope over its connection's async
    resources). Everything else is :func:`acreate`'s coroutine, as before: a factory that
    suspends, a scoped dependency still to create, a creation under way, a full budget
    or a closed scope (it raises on ``await``). An overridden dependency is called, as
    in any creation. A factory, or a provider or override it calls, found here to
    return an awaitable marks the provider ``suspends`` and hands its reserved creation
    to :func:`acreate`. A failure comes back as an awaitable that raises it.
    """
    if core.suspends:
        return acreate(core, state, frame)
    for dependency_core in core.scoped:  # read-only checks: nothing is resolved yet
        dependency_state: ScopeState | None = frame[dependency_core.scope]  # type: ignore[assignment]
        if (
            dependency_state is not None
            and not dependency_core.overridden
            and dependency_core.provider not in dependency_state.cache
        ):  # to be created first: that may suspend
            return acreate(core, state, frame)
    provider = core.provider
    session = state.session
    lock = session.lock
    lock.acquire()
    pending = state.pending
    limit = session.max_instances
    if (
        state.closed
        or (pending and provider in pending)
        or (limit is not None and session.instances >= limit)
        or provider in state.cache
    ):  # refused, under way, or cached by another thread meanwhile: acreate's business
        lock.release()
        return acreate(core, state, frame)
    session.instances += 1
    task = running_task()  # None off-loop (a thread of `asyncio.to_thread`): the thread owns it
    owner: Any = thread_ident() if task is None else task
    if pending is None:
        state.pending = {provider: owner}
    else:
        pending[provider] = owner
    lock.release()
    finalizer: Finalizer | None = None
    try:
        if core.guard is not _generation:  # first creation in this generation
            guard_check(provider)  # validates its container(s): CaptiveDependencyError
        if before_create:
            will_create(provider, state, frame)
        if INTERPRET_PLANS:
            result = run_plan(core, frame)
        else:
            builder = provider._builder
            if builder is None:
                builder = provider._builder = compile_builder(provider, asynchronous=False)
            result = builder(frame)
        kind = type(result)
        if kind is GeneratorType:
            try:
                value = next(result)
            except StopIteration:
                raise FactoryProtocolError(provider.name, "no_yield") from None
            finalizer = (GEN, result, provider)
        elif kind not in _PLAIN and (kind is AsyncGeneratorType or is_awaitable(result)):
            core.suspends = True  # from now on `acreate` builds it in one coroutine
            return Handover(core, state, frame, result)
        else:
            value = result
            if core.closing:
                finalizer = provider._closer(result)
    except BaseException as error:
        _abandon(state, provider, error)
        return _raise(error)
    if not _publish(state, frame, provider, value, finalizer):
        # its scope closed while it was built: cleaned up here, in the call, so that a
        # caller that drops the awaitable leaks nothing (only an `aclose()` waits for it)
        if finalizer is not None and (finalizer[0] == GEN or not is_async_close(finalizer[1])):
            run_cleanups_sync([finalizer], None)
            finalizer = None
        if finalizer is None:
            return _raise(_closed(state, provider))
        return _built_too_late(state, frame, provider, finalizer)
    return ready(value)


async def _await_retry(
    core: ProviderCore, state: ScopeState, frame: ActiveFrame, future: Any
) -> Any:
    value = await future
    if value is RETRY:
        value = create(core, state, frame, _NO_ARGS, None, True)
        if is_awaitable(value):
            value = await value
    return value


def _abandon(
    state: ScopeState, provider: ScopedProvider[Any], error: BaseException, locked: bool = False
) -> None:
    """A creation failed: give its budget back and hand the failure to its waiters
    (``locked``: the caller took the session lock; it is released here)."""
    lock = state.session.lock
    if not locked:
        lock.acquire()
    state.session.instances -= 1
    entry = None
    if not state.closed:  # else the scope closed first and told the waiters
        entry = state.pending.pop(provider, None)  # type: ignore[union-attr]
    lock.release()
    if isinstance(error, asyncio.CancelledError):
        _settle_entry(entry, RETRY, None)  # the creator's cancellation: a waiter retries
    else:
        _settle_entry(entry, None, error)


class Handover(Coroutine[Any, Any, Any]):
    """The rest of a creation whose factory was found to return an awaitable after it
    was called (:func:`create`, :func:`begin_acreate`), handed to the caller with the
    reservation it holds; a coroutine to asyncio (internal).

    Run (``await``, or a task's first step), it is :func:`acreate`'s coroutine. Dropped
    before it ran (a task cancelled before its first step, ``close()``, never awaited
    and collected) it gives the reservation and the budget back, closes the factory's
    awaitable, and lets a waiting creation retry: otherwise every later resolve of the
    provider in that scope would wait for a creation that never ends.
    """

    __slots__ = ("_handed", "_running")

    def __init__(self, core: ProviderCore, state: ScopeState, frame: ActiveFrame, started: Any):
        self._handed: tuple[ProviderCore, ScopeState, ActiveFrame, Any] | None = (
            core,
            state,
            frame,
            started,
        )
        self._running: Coroutine[Any, Any, Any] | None = None

    def _run(self) -> Coroutine[Any, Any, Any]:
        running = self._running
        if running is None:
            if self._handed is None:
                raise RuntimeError("cannot reuse a creation that was dropped or awaited")
            core, state, frame, started = self._handed
            self._handed = None
            running = self._running = acreate(core, state, frame, True, started)
        return running

    def __await__(self) -> Generator[Any, None, Any]:
        return self._run().__await__()

    def send(self, value: Any) -> Any:
        return self._run().send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        # one exception, built here, passed on alone (the three-argument form of a
        # coroutine's throw() is deprecated from Python 3.12 on)
        error = typ if val is None else val
        if isinstance(error, type):
            error = error()
        if tb is not None:
            error = error.with_traceback(tb)
        if self._running is not None:
            return self._running.throw(error)
        self._drop(False)  # thrown into before it ran: the exception comes straight back
        raise error

    def close(self) -> None:
        if self._running is not None:
            self._running.close()
        else:
            self._drop(False)

    def __del__(self) -> None:
        if self._handed is not None:
            self._drop(True)

    def _drop(self, finalizing: bool) -> None:
        """Give the reservation back (no-op once run or dropped). ``finalizing``: from
        ``__del__``, which the cyclic GC may run inside one of our critical sections: the
        session lock is then only tried, and a helper thread waits for it otherwise."""
        handed, self._handed = self._handed, None
        if handed is None:
            return
        core, state, _, started = handed
        _discard(started)
        error = asyncio.CancelledError()  # the creator gave up: a waiter retries
        if not finalizing:
            _abandon(state, core.provider, error)
            return
        try:
            locked = state.session.lock.acquire(False)
        except LockOrderError:  # the checker: this thread holds a lock ranked after it
            locked = False
        if locked:
            _abandon(state, core.provider, error, True)
            return
        with contextlib.suppress(RuntimeError):  # interpreter shutdown: nobody waits now
            threading.Thread(
                target=_abandon_later,
                args=(state, core.provider, error),
                name="userscope-dropped-creation",
                daemon=True,
            ).start()


def _abandon_later(state: ScopeState, provider: ScopedProvider[Any], error: BaseException) -> None:
    """:func:`_abandon` on a helper thread, for a finalizer that could not take the lock
    (a Python function: compiled, ``_abandon`` is a C function)."""
    _abandon(state, provider, error)


@cython.locals(
    state=ScopeState,
    session=UserSession,
    lock=Lock,
    pending=dict,
    finalizer=tuple,
    core=ProviderCore,
    dependency_core=ProviderCore,
    step=tuple,
    positional=list,
    named=dict,
    how=cython.int,
)
async def acreate(
    core: ProviderCore,
    state: ScopeState,
    frame: ActiveFrame,
    reserved: bool = False,
    started: Any = MISSING,
) -> Any:
    """Create the instance of ``core.provider`` in ``state`` asynchronously, in this one
    coroutine (the plan's injections are awaited here too, compiled).

    ``reserved`` and ``started`` come from a :class:`Handover` (:func:`create` or
    :func:`begin_acreate` found the factory async: the budget is reserved and the
    factory called); without them this reserves (or waits for the task already
    creating the instance) and builds.
    """
    provider = core.provider
    session = state.session
    lock = session.lock
    task = running_task()
    owner: Any = thread_ident() if task is None else task
    while not reserved:
        lock.acquire()
        if state.closed:
            lock.release()
            raise _closed(state, provider)
        value = state.cache.get(provider, MISSING)
        if value is not MISSING:
            lock.release()
            return value
        pending = state.pending
        entry = pending.get(provider) if pending else None
        if entry is not None:
            if entry is owner or (type(entry) is PendingCreation and entry.task is owner):
                lock.release()
                raise DependencyCycleError(provider.name, provider.scope)
            future = _waitable(state, provider, entry).async_waiter(asyncio.get_running_loop())
            lock.release()
            value = await future
            if value is not RETRY:
                return value
            continue
        limit = session.max_instances
        if limit is not None and session.instances >= limit:
            lock.release()
            raise _refuse(frame, state, provider)
        session.instances += 1
        if pending is None:
            state.pending = {provider: owner}
        else:
            pending[provider] = owner
        lock.release()
        break
    else:  # handed over (`Handover`): the entry names this task from now on (cycles)
        with lock:
            entry = state.pending.get(provider) if state.pending else None
            if type(entry) is PendingCreation:
                entry.task = task
            elif entry is not None:
                state.pending[provider] = owner  # type: ignore[index]
    finalizer: Finalizer | None = None
    try:
        value = started
        if value is MISSING:
            if core.guard is not _generation:  # first creation in this generation
                guard_check(provider)  # validates its container(s): CaptiveDependencyError
            if before_create:
                will_create(provider, state, frame)
            if not INTERPRET_PLANS:
                builder = provider._abuilder
                if builder is None:
                    builder = provider._abuilder = compile_builder(provider, asynchronous=True)
                value = builder(frame)
            elif core.awaits:
                # the plan runner's loop, in this coroutine: an async injection is awaited
                # in place, in plan order; nothing that does not suspend adds a coroutine
                positional: list[Any] = []
                named: dict[str, Any] | None = {} if core.keywords else None
                for step in core.plan:
                    how = step[1]
                    if how == _VALUE:
                        value = step[2]
                    else:
                        value = _injected(how, step[2], step[3], frame, True)
                        if type(value) not in _PLAIN and is_awaitable(value):
                            value = await value
                    if step[0] is None:
                        positional.append(value)
                    else:
                        named[step[0]] = value  # type: ignore[index]
                if named is None:
                    value = core.provides(*positional)
                else:
                    value = call(core.provides, tuple(positional), named)
            else:
                value = run_plan(core, frame)
        kind = type(value)
        if kind is not AsyncGeneratorType and kind not in _PLAIN and is_awaitable(value):
            value = await value
            kind = type(value)
        if kind is AsyncGeneratorType:
            agen = value
            try:
                value = await _anext(agen)
            except StopAsyncIteration:
                raise FactoryProtocolError(provider.name, "no_yield") from None
            finalizer = (AGEN, agen, provider)
        elif kind is GeneratorType:
            gen = value
            try:
                value = next(gen)
            except StopIteration:
                raise FactoryProtocolError(provider.name, "no_yield") from None
            finalizer = (GEN, gen, provider)
        elif core.closing:
            finalizer = provider._closer(value)
    except BaseException as error:
        _abandon(state, provider, error)
        raise
    if not _publish(state, frame, provider, value, finalizer):
        await _built_too_late(state, frame, provider, finalizer)
    return value


INTERPRET_PLANS: Final = cython.compiled
"""Whether creations run a provider's plan with :func:`run_plan` and the same loop inside
:func:`acreate` (the compiled runtime: a C loop over the plan costs less than a call into
a generated Python function, and an async creation then needs no coroutine of its own for
its plan) or with the function :func:`~userscope.providers._plan.compile_builder`
generates (the pure runtime: there the generated function is the faster one). Both
resolve the same injections in the same order; the tests run both."""


def _injected(
    how: int,
    dependency: Any,
    dependency_core: ProviderCore | None,
    frame: ActiveFrame,
    in_loop: bool,
) -> Any:
    """The value of one injection of a plan that is not a plain value (the context, a
    scoped dependency, or a provider to call), for :func:`run_plan` and :func:`acreate`;
    it may be an awaitable. ``in_loop`` as for :func:`create`."""
    state: ScopeState | None
    if how == _CONTEXT:
        assert dependency_core is not None
        return frame[0] if not dependency_core.overridden else dependency()
    if how == _SCOPED:
        assert dependency_core is not None
        state = frame[dependency_core.scope]  # type: ignore[assignment]
        if state is None or dependency_core.overridden:
            return dependency()
        value = state.cache.get(dependency, MISSING)
        if value is MISSING:
            value = create(dependency_core, state, frame, _NO_ARGS, None, in_loop)
        return value
    return dependency()


def run_plan(core: ProviderCore, frame: ActiveFrame) -> Any:
    """Resolve ``core``'s injections and call its factory: the synchronous builder
    of :func:`~userscope.providers._plan.compile_builder`, as a loop over the plan.

    Returns what the factory returned, or an awaitable when an injection was async.
    """
    positional: list[Any] = []
    named: dict[str, Any] | None = {} if core.keywords else None
    plain = True
    for step in core.plan:
        how = step[1]
        if how == _VALUE:
            value = step[2]
        else:
            value = _injected(how, step[2], step[3], frame, False)
            if plain and type(value) not in _PLAIN:
                plain = False
        if step[0] is None:
            positional.append(value)
        else:
            named[step[0]] = value  # type: ignore[index]
    if not plain:
        return core.provider._call_factory(positional, {} if named is None else named)
    if named is None:
        return core.provides(*positional)
    return call(core.provides, tuple(positional), named)


def _discard(result: Any) -> None:
    close = getattr(result, "close", None)
    if callable(close) and not isinstance(result, type):
        close()  # a coroutine that will never be awaited
    elif isinstance(result, asyncio.Future):
        result.cancel()
