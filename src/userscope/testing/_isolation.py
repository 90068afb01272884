"""The isolation harness: `assert_isolated` opens many users' scopes at once and checks them."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import itertools
import threading
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import FrameType, FunctionType, MethodType, ModuleType
from typing import Any, Literal

from dependency_injector import containers, providers
from pydantic import BaseModel, ConfigDict

from userscope.container import UserSessions
from userscope.container._scope import ACTIVE
from userscope.container._state import AGEN, GEN
from userscope.context import UserExecutionContext
from userscope.errors import CleanupError, UserscopeError
from userscope.providers import ScopedProvider

__all__ = [
    "AsyncHarnessRequiredError",
    "IsolationReport",
    "IsolationViolation",
    "Violation",
    "aassert_isolated",
    "assert_isolated",
]

ViolationKind = Literal[
    "shared_instance", "cross_user_reference", "outlived_scope", "cleanup_not_run", "cleanup_failed"
]

_HINTS: dict[str, str] = {
    "shared_instance": "make the provider scoped (or stop caching its instances across users)",
    "cross_user_reference": (
        "a longer-lived object keeps per-user objects: scope it per user, or key nothing by user"
    ),
    "outlived_scope": "drop the reference that keeps it (a module-level cache, a singleton)",
    "cleanup_not_run": "the scope did not finish its finalizers: report it with this output",
    "cleanup_failed": "fix the failing cleanup (the code after `yield`, or close()/aclose())",
}
_SHOWN = 12
_BARRIER_TIMEOUT = 120.0  # a safety net against a hung worker, never an assertion
_MAX_CHILDREN = 200
_MAX_REACHED = 5000


class Violation(BaseModel):
    """One isolation finding of :func:`assert_isolated`.

    Attributes:
        kind: ``"shared_instance"`` (one object given to two users),
            ``"cross_user_reference"`` (one user's object reachable from another's),
            ``"outlived_scope"`` (alive after its scope closed), ``"cleanup_not_run"``
            or ``"cleanup_failed"``.
        provider: the provider that created the object (``""`` when unknown).
        type: the object's class.
        users: the users involved (owner first).
        detail: a one-line explanation (the path that reaches it, what holds it...).

    Example:
        >>> from userscope.testing import Violation
        >>> Violation(kind="shared_instance", provider="C.agent", type="Agent",
        ...           users=("a", "b"), detail="same object").users
        ('a', 'b')
    """

    model_config = ConfigDict(frozen=True)

    kind: ViolationKind
    provider: str
    type: str
    users: tuple[str, ...]
    detail: str

    def describe(self) -> str:
        """One line for reports: kind, provider, type, users and detail."""
        users = ", ".join(repr(u) for u in self.users[:3])
        if len(self.users) > 3:
            users += f" and {len(self.users) - 3} more"
        return (
            f"[{self.kind}] {self.type} from {self.provider or '?'} (users {users}): {self.detail}"
        )


class IsolationReport(BaseModel):
    """What a passing :func:`assert_isolated` checked.

    Example:
        >>> from userscope.testing import IsolationReport
        >>> IsolationReport(users=4, instances=8, reachable=12, finalizers=2).users
        4
    """

    model_config = ConfigDict(frozen=True)

    users: int
    """Users whose scopes were opened (on tasks and on threads together)."""
    instances: int
    """Scoped instances compared across users."""
    reachable: int
    """Objects reached by walking the instances' attributes."""
    finalizers: int
    """Cleanups registered by the checked scopes, all confirmed run."""


class IsolationViolation(UserscopeError, AssertionError):
    """:func:`assert_isolated` found objects shared across users, leaks or skipped cleanups.

    Attributes:
        violations: every finding, as :class:`Violation` records.
        users: how many users were checked.

    Example:
        >>> from userscope.testing import IsolationViolation, Violation
        >>> v = Violation(kind="outlived_scope", provider="C.agent", type="Agent",
        ...               users=("a",), detail="held by dict")
        >>> IsolationViolation([v], users=2).kinds
        {'outlived_scope': 1}
    """

    def __init__(self, violations: Sequence[Violation], *, users: int) -> None:
        self.violations: tuple[Violation, ...] = tuple(violations)
        self.users = users
        kinds = self.kinds
        summary = ", ".join(f"{n} {k}" for k, n in kinds.items())
        lines = [v.describe() for v in self.violations[:_SHOWN]]
        if len(self.violations) > _SHOWN:
            lines.append(f"... and {len(self.violations) - _SHOWN} more")
        hints = [f"  {k}: {_HINTS[k]}" for k in kinds]
        super().__init__(
            f"isolation violated across {users} users: {summary}\n"
            + "\n".join(f"  - {line}" for line in lines)
            + "\nwhat to do:\n"
            + "\n".join(hints)
        )

    @property
    def kinds(self) -> dict[str, int]:
        """How many violations of each kind, in order of first appearance."""
        counts: dict[str, int] = {}
        for v in self.violations:
            counts[v.kind] = counts.get(v.kind, 0) + 1
        return counts


class AsyncHarnessRequiredError(UserscopeError, RuntimeError):
    """A synchronous test helper was called with an event loop running in this thread.

    It would have to run its own loop inside the running one (``asyncio.run`` refuses
    that); the async twin runs on the test's own loop instead. Nothing was checked.

    Attributes:
        function: the helper that was called, e.g. ``"assert_isolated"``.
        instead: its async twin to ``await``, e.g. ``"aassert_isolated"``.

    Example:
        >>> from userscope.testing import AsyncHarnessRequiredError
        >>> AsyncHarnessRequiredError("assert_isolated", "aassert_isolated").instead
        'aassert_isolated'
    """

    def __init__(self, function: str, instead: str) -> None:
        self.function = function
        self.instead = instead
        super().__init__(
            f"{function}() was called with an event loop running in this thread; "
            f"use `await userscope.testing.{instead}(...)` in async code"
        )


# -- capture -------------------------------------------------------------------------------
@dataclass
class _Owned:
    user: str
    provider: str
    level: str
    obj: Any


@dataclass
class _UserRecord:
    user: str
    owned: list[_Owned] = field(default_factory=list)
    roots: list[tuple[str, Any]] = field(default_factory=list)
    finalizers: list[tuple[str, int, weakref.ref[Any] | None]] = field(default_factory=list)


def _name(provider: object) -> str:
    name = getattr(provider, "name", None)
    return name if isinstance(name, str) else repr(provider)


def _capture(user: str, providers_: Sequence[Any], values: Sequence[Any]) -> _UserRecord:
    """Record what the user's open scopes hold (their caches and finalizers)."""
    record = _UserRecord(user)
    frame = ACTIVE.get()
    assert frame is not None, "assert_isolated captures inside the user's scope"
    seen_states: set[int] = set()
    states: list[Any] = [frame[1], frame[2], frame[3]]
    for state in states:
        if state is None or id(state) in seen_states:
            continue
        seen_states.add(id(state))
        with state.session.lock:
            cache = list(state.cache.items())
            finalizers = list(state.finalizers)
        for provider, obj in cache:
            level = getattr(provider, "scope", state.level).name
            record.owned.append(_Owned(user, _name(provider), level, obj))
        # Finalizer entries start with (kind, object) and end with the provider.
        for entry in finalizers:
            kind, obj, provider = entry[0], entry[1], entry[-1]
            ref: weakref.ref[Any] | None = None
            if kind in (GEN, AGEN):
                ref = weakref.ref(obj)
            record.finalizers.append((_name(provider), kind, ref))
        del cache, finalizers
    cached = {id(o.obj) for o in record.owned}
    for provider, value in zip(providers_, values, strict=True):
        record.roots.append((_name(provider), value))
        if id(value) not in cached:
            cached.add(id(value))
            level = getattr(getattr(provider, "scope", None), "name", "?")
            record.owned.append(_Owned(user, _name(provider), level, value))
    return record


# -- walking -------------------------------------------------------------------------------
_ATOMIC = (str, bytes, bytearray, int, float, complex, bool, type(None), range)
_OPAQUE = (
    type,
    ModuleType,
    FunctionType,
    MethodType,
    FrameType,
    providers.Provider,
    containers.Container,
    UserSessions,
    threading.Thread,
    asyncio.AbstractEventLoop,
)
_COLLECTIONS = (list, tuple, set, frozenset, deque)
_CONTAINERS = (dict, *_COLLECTIONS)


def _items(obj: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(obj, dict):
        for key, value in itertools.islice(obj.items(), _MAX_CHILDREN):
            yield f"[{key!r}]", value
            if not isinstance(key, _ATOMIC):
                yield "<key>", key
    elif isinstance(obj, _COLLECTIONS):
        for i, value in enumerate(itertools.islice(obj, _MAX_CHILDREN)):
            yield f"[{i}]", value


def _children(obj: Any) -> Iterable[tuple[str, Any]]:
    """Attribute values of ``obj``; the contents of collections come along for free."""
    direct: list[tuple[str, Any]] = []
    if isinstance(obj, _CONTAINERS):
        direct.extend(_items(obj))
    else:
        attrs = getattr(obj, "__dict__", None)
        if isinstance(attrs, dict):
            direct.extend((f".{k}", v) for k, v in itertools.islice(attrs.items(), _MAX_CHILDREN))
        for cls in type(obj).__mro__:
            for slot in getattr(cls, "__slots__", ()):
                if isinstance(slot, str) and not slot.startswith("__"):
                    with contextlib.suppress(AttributeError):
                        direct.append((f".{slot}", getattr(obj, slot)))
    for path, value in direct:
        yield path, value
        if isinstance(value, _CONTAINERS):
            for sub, item in _items(value):
                yield path + sub, item


def _walk(
    roots: Sequence[tuple[str, Any]], depth: int, opaque: tuple[Any, ...], allowed: set[int]
) -> dict[int, tuple[Any, str]]:
    reached: dict[int, tuple[Any, str]] = {}
    frontier = [(obj, path) for path, obj in roots]
    for _ in range(depth):
        nxt: list[tuple[Any, str]] = []
        for obj, path in frontier:
            if isinstance(obj, _OPAQUE + opaque) or id(obj) in allowed:
                continue
            for sub, child in _children(obj):
                if isinstance(child, _ATOMIC) or id(child) in reached:
                    continue
                if len(reached) >= _MAX_REACHED:
                    return reached
                reached[id(child)] = (child, path + sub)
                nxt.append((child, path + sub))
        frontier = nxt
    return reached


def _owner_of_dict(d: dict[Any, Any]) -> object | None:
    return next((o for o in gc.get_referrers(d) if getattr(o, "__dict__", None) is d), None)


def _describe_dict(d: dict[Any, Any], key: Any = None) -> str:
    """``Class.attr`` / ``global name of module m`` / ``dict`` for a dict holding something."""
    owner = _owner_of_dict(d)
    if owner is not None:
        name = f".{key}" if isinstance(key, str) else ""
        if isinstance(owner, ModuleType):
            return f"global {key or '?'} of module {owner.__name__}"
        return f"attribute {type(owner).__qualname__}{name}"
    for outer in gc.get_referrers(d):  # a dict stored in an attribute or a global
        if isinstance(outer, dict) and outer is not d:
            names = [k for k, v in outer.items() if v is d]
            if names and _owner_of_dict(outer) is not None:
                return f"dict in {_describe_dict(outer, names[0])}"
        elif (attribute := _attribute_holding(outer, d)) is not None:
            return f"dict in attribute {type(outer).__qualname__}.{attribute}"
    return "dict"


def _attribute_holding(owner: object, value: object) -> str | None:
    """The name of ``owner``'s instance attribute that is ``value``, if any. Python 3.13
    keeps a plain instance's attributes inline: the instance itself, not a ``__dict__``,
    is then what refers to them."""
    if isinstance(owner, (type, ModuleType, FrameType)):
        return None
    attributes = getattr(owner, "__dict__", None)
    if not isinstance(attributes, dict):
        return None
    for name, held in attributes.items():
        if held is value and isinstance(name, str):
            return name
    return None


def _referrers(obj: object, ignore: set[int]) -> list[str]:
    out: list[str] = []
    for ref in gc.get_referrers(obj):
        if id(ref) in ignore or isinstance(ref, FrameType):
            continue
        if isinstance(ref, dict):
            key = None
            for k, v in ref.items():  # a loop, not a comprehension: that would add a cell
                if v is obj:
                    key = k
                    break
            out.append(_describe_dict(ref, key))
        elif (name := _attribute_holding(ref, obj)) is not None:
            out.append(f"attribute {type(ref).__qualname__}.{name}")
        else:
            out.append(type(ref).__qualname__)
        if len(out) >= 4:
            break
    return out


# -- the run -------------------------------------------------------------------------------
async def _resolve_async(provider: Any) -> Any:
    result = provider()
    if inspect.isawaitable(result):
        result = await result
    return result


class _Run:
    def __init__(
        self,
        sessions: UserSessions,
        providers_: Sequence[Any],
        needs_async: bool,
    ) -> None:
        self.sessions = sessions
        self.providers = providers_
        self.needs_async = needs_async
        self.records: list[_UserRecord] = []
        self.errors: list[BaseException] = []
        self.cleanup_failures: list[tuple[str, str, str, str]] = []
        self.lock = threading.Lock()

    def _keep(self, record: _UserRecord) -> None:
        with self.lock:
            self.records.append(record)

    def _failed(self, user: str, exc: BaseException) -> None:
        with self.lock:
            if isinstance(exc, CleanupError):
                # Keep data only: a traceback would keep the generator frames (and the
                # instances in them) alive and show up as a leak.
                for failure in exc.exceptions:
                    notes = [n for n in getattr(failure, "__notes__", []) if "cleanup of" in n]
                    provider = notes[0].rsplit("cleanup of ", 1)[-1] if notes else ""
                    kind = type(failure).__qualname__
                    self.cleanup_failures.append((user, provider, kind, repr(failure)))
            elif not isinstance(exc, threading.BrokenBarrierError | asyncio.BrokenBarrierError):
                exc.add_note(f"userscope.testing: raised while checking user {user!r}")
                self.errors.append(exc)

    async def probe(self) -> None:
        ctx = UserExecutionContext(
            user_id="isolation-probe", thread_id="isolation-thread", request_id="isolation-probe-r"
        )
        try:
            async with self.sessions.request(ctx):
                for provider in self.providers:
                    result = provider()
                    if inspect.isawaitable(result):
                        self.needs_async = True
                        await result
                    del result
        except BaseException as exc:
            self._failed(ctx.user_id, exc)
        try:
            await self.sessions.aclose_user(ctx.user_id)
        except Exception as exc:
            self._failed(ctx.user_id, exc)

    async def async_worker(
        self,
        ctx: UserExecutionContext,
        wait: Callable[[], Awaitable[Any]],
        abort: Callable[[], Any],
    ) -> None:
        user = ctx.user_id
        passed = False  # only a worker that fails before the barrier may break it
        try:
            async with self.sessions.request(ctx):
                values = [await _resolve_async(p) for p in self.providers]
                self._keep(_capture(user, self.providers, values))
                del values
                await wait()
                passed = True
        except BaseException as exc:
            if not passed:
                await _maybe(abort())
            self._failed(user, exc)
        try:
            await self.sessions.aclose_user(user)
        except Exception as exc:
            self._failed(user, exc)

    def thread_worker(self, ctx: UserExecutionContext, barrier: threading.Barrier) -> None:
        if self.needs_async:

            async def wait() -> None:
                barrier.wait(_BARRIER_TIMEOUT)

            asyncio.run(self.async_worker(ctx, wait, barrier.abort))
            return
        user = ctx.user_id
        passed = False
        try:
            with self.sessions.request(ctx):
                values = [p() for p in self.providers]
                self._keep(_capture(user, self.providers, values))
                del values
                barrier.wait(_BARRIER_TIMEOUT)
                passed = True
        except BaseException as exc:
            if not passed:
                barrier.abort()
            self._failed(user, exc)
        try:
            self.sessions.close_user(user)
        except Exception as exc:
            self._failed(user, exc)


async def _maybe(value: Any) -> None:
    if inspect.isawaitable(value):
        await value


def _waves(
    items: Sequence[UserExecutionContext], size: int
) -> list[Sequence[UserExecutionContext]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _contexts(prefix: str, count: int) -> list[UserExecutionContext]:
    # One thread id for everyone on purpose: it exposes caches keyed by thread/conversation.
    return [
        UserExecutionContext(
            user_id=f"{prefix}-{i}", thread_id="isolation-thread", request_id=f"{prefix}-{i}-r"
        )
        for i in range(count)
    ]


def _default_providers(container: Any) -> list[Any]:
    found = list(container.traverse(types=[ScopedProvider]))
    if not found:
        raise ValueError(
            f"{container!r} has no UserScoped/ConnectionScoped/RequestScoped providers; "
            "pass providers=[...] explicitly"
        )
    return sorted(found, key=_name)


async def aassert_isolated(
    container: Any,
    sessions: UserSessions,
    providers: Sequence[Any] | None = None,
    *,
    users: int = 100,
    concurrency: int | None = None,
    threads: int = 8,
    depth: int = 2,
    allow_shared: Iterable[Any] = (),
) -> IsolationReport:
    """Async twin of :func:`assert_isolated`: tasks run on the running loop.

    Example:
        >>> import asyncio, userscope as us
        >>> from dependency_injector import containers
        >>> from userscope.testing import aassert_isolated
        >>> class C(containers.DeclarativeContainer):
        ...     notes = us.RequestScoped(list)
        >>> report = asyncio.run(aassert_isolated(C, us.UserSessions(), users=4, threads=2))
        >>> report.users
        8
    """
    if users < 2:
        raise ValueError(f"users must be at least 2 to compare users, got {users}")
    if concurrency is not None and concurrency < 1:
        raise ValueError(f"concurrency must be positive, got {concurrency}")
    if threads < 0:
        raise ValueError(f"threads must be 0 (no threads) or more, got {threads}")
    if depth < 0:
        raise ValueError(f"depth must be 0 or more, got {depth}")
    chosen = list(providers) if providers is not None else _default_providers(container)
    if not chosen:
        raise ValueError("providers=[] checks nothing; list the providers to resolve")
    for p in chosen:
        if not callable(p):
            raise TypeError(f"{p!r} is not a provider; pass e.g. `container.agent`")
    allowed = [a for a in allow_shared if not isinstance(a, type)]
    opaque = tuple(a for a in allow_shared if isinstance(a, type))
    baseline = sessions.stats()

    # Probe: one user first, to fail early on a broken setup and to learn whether threads
    # need an event loop (some provider resolves asynchronously).
    run = _Run(sessions, chosen, needs_async=False)
    await run.probe()
    if run.errors:
        raise run.errors[0]
    task_users = _contexts("isolation-task", users)
    thread_users = _contexts("isolation-thread", users) if threads else []

    async def task_phase() -> None:
        for wave in _waves(task_users, concurrency or users):
            barrier = asyncio.Barrier(len(wave))
            await asyncio.gather(
                *(run.async_worker(ctx, barrier.wait, barrier.abort) for ctx in wave)
            )

    def thread_phase() -> None:
        for wave in _waves(thread_users, threads or 1):
            barrier = threading.Barrier(len(wave))
            workers = [
                threading.Thread(target=run.thread_worker, args=(ctx, barrier), daemon=True)
                for ctx in wave
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()

    await asyncio.gather(task_phase(), asyncio.to_thread(thread_phase))
    if run.errors:
        raise run.errors[0]
    checked = len(task_users) + len(thread_users)
    violations, report, watched = _analyse(
        run, depth, opaque, allowed, baseline.cleanups_run, checked
    )
    run.records.clear()
    violations += _outlived(watched)
    if violations:
        raise IsolationViolation(violations, users=checked)
    return report


def _analyse(
    run: _Run,
    depth: int,
    opaque: tuple[Any, ...],
    allowed_objects: list[Any],
    cleanups_before: int,
    checked: int,
) -> tuple[list[Violation], IsolationReport, list[tuple[_Owned, weakref.ref[Any]]]]:
    violations: list[Violation] = []
    allowed = {id(a) for a in allowed_objects}
    records = run.records
    owner: dict[int, _Owned] = {}
    flagged: set[int] = set()
    instances = 0
    for record in records:
        for owned in record.owned:
            instances += 1
            first = owner.setdefault(id(owned.obj), owned)
            if first.user != owned.user and id(owned.obj) not in allowed:
                flagged.add(id(owned.obj))
                violations.append(
                    Violation(
                        kind="shared_instance",
                        provider=owned.provider,
                        type=type(owned.obj).__qualname__,
                        users=(first.user, owned.user),
                        detail=f"the same object was resolved for both users in their own "
                        f"{owned.level} scopes",
                    )
                )
    reachable = 0
    users = {r.user for r in records}
    for record in records:
        roots = [(o.provider, o.obj) for o in record.owned]
        reached = _walk(roots, depth, opaque, allowed)
        reachable += len(reached)
        for key, (obj, path) in reached.items():
            hit = owner.get(key)
            if hit is not None and hit.user != record.user and key not in flagged:
                flagged.add(key)
                violations.append(
                    Violation(
                        kind="cross_user_reference",
                        provider=hit.provider,
                        type=type(obj).__qualname__,
                        users=(hit.user, record.user),
                        detail=f"user {hit.user!r}'s instance is reachable from user "
                        f"{record.user!r} through {path}",
                    )
                )
            elif (
                isinstance(obj, UserExecutionContext)
                and obj.user_id != record.user
                and obj.user_id in users
                and key not in flagged
            ):
                flagged.add(key)
                violations.append(
                    Violation(
                        kind="cross_user_reference",
                        provider="",
                        type="UserExecutionContext",
                        users=(obj.user_id, record.user),
                        detail=f"the context of user {obj.user_id!r} is reachable from user "
                        f"{record.user!r} through {path}",
                    )
                )
        del reached
    # Cleanups: every generator finalizer finished, and the counter covers them all.
    expected = sum(len(r.finalizers) for r in records)
    for record in records:
        for name, kind, ref in record.finalizers:
            gen = ref() if ref is not None else None
            frame = None
            if gen is not None:
                frame = gen.gi_frame if kind == GEN else gen.ag_frame
            if frame is not None:
                violations.append(
                    Violation(
                        kind="cleanup_not_run",
                        provider=name,
                        type=type(gen).__qualname__,
                        users=(record.user,),
                        detail="its generator never resumed after `yield`",
                    )
                )
            del gen, frame
    ran = run.sessions.stats().cleanups_run - cleanups_before
    if ran < expected:
        violations.append(
            Violation(
                kind="cleanup_not_run",
                provider="",
                type="",
                users=tuple(sorted(users)),
                detail=f"{expected} finalizers were registered but only {ran} ran",
            )
        )
    for user, provider, failed_type, text in run.cleanup_failures:
        violations.append(
            Violation(
                kind="cleanup_failed",
                provider=provider,
                type=failed_type,
                users=(user,),
                detail=text,
            )
        )
    watched: list[tuple[_Owned, weakref.ref[Any]]] = []
    for record in records:
        for owned in record.owned:
            if isinstance(owned.obj, UserExecutionContext):
                continue
            with contextlib.suppress(TypeError):
                blank = _Owned(owned.user, owned.provider, owned.level, None)
                watched.append((blank, weakref.ref(owned.obj)))
    report = IsolationReport(
        users=checked, instances=instances, reachable=reachable, finalizers=expected
    )
    return violations, report, watched


def _outlived(watched: list[tuple[_Owned, weakref.ref[Any]]]) -> list[Violation]:
    """Instances still alive once nothing of the harness holds them (after a collection)."""
    gc.collect()
    found: list[Violation] = []
    seen: set[int] = set()
    for owned, ref in watched:
        obj = ref()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        held = _referrers(obj, {id(watched)})
        found.append(
            Violation(
                kind="outlived_scope",
                provider=owned.provider,
                type=type(obj).__qualname__,
                users=(owned.user,),
                detail=f"still alive after its {owned.level} scope and the user's session "
                f"closed; held by {', '.join(held) or 'nothing visible'}",
            )
        )
        del obj
    return found


def assert_isolated(
    container: Any,
    sessions: UserSessions,
    providers: Sequence[Any] | None = None,
    *,
    users: int = 100,
    concurrency: int | None = None,
    threads: int = 8,
    depth: int = 2,
    allow_shared: Iterable[Any] = (),
) -> IsolationReport:
    """Prove isolation: many users at once, on asyncio tasks and on threads.

    Opens a REQUEST scope (with its CONNECTION and USER scopes) for ``users`` users on
    asyncio tasks, ``concurrency`` of them open at the same moment, and for ``users`` more
    users on threads, ``threads`` at a time; each resolves every provider (sync or
    async) and holds its scope open until the whole wave has resolved. Then each user's
    USER scope is closed and the run is checked:

    * no object is held by two users' scopes (``shared_instance``);
    * no user's scoped instance (or context) is reachable from another user's instances
      by walking attributes and collection items ``depth`` levels deep
      (``cross_user_reference``) — a singleton that keeps per-user objects;
    * no scoped instance is still alive once its scopes closed (``outlived_scope``, with
      what holds it);
    * every cleanup ran (``cleanup_not_run``) and none raised (``cleanup_failed``).

    Every user shares one ``thread_id``, so caches keyed by thread id are caught too.

    Args:
        container: the container (class or instance); its scoped providers are the default
            ``providers``.
        sessions: the runtime to open scopes on (harness users are named ``isolation-*``
            and closed again).
        providers: providers to resolve for each user; default: every scoped provider.
        users: users per mode (tasks and threads); at least 2.
        concurrency: tasks whose scopes are open at once; default: all ``users``.
        threads: threads whose scopes are open at once; ``0`` skips the thread mode.
        depth: attribute levels to walk from each instance.
        allow_shared: objects (or classes) that may legitimately be reached from several
            users, such as an event broker; the walk does not enter them.

    Returns:
        An :class:`IsolationReport` of what was checked.

    Raises:
        IsolationViolation: with every :class:`Violation` found.
        AsyncHarnessRequiredError: called with an event loop running; use
            :func:`aassert_isolated`.

    Example:
        >>> import userscope as us
        >>> from dependency_injector import containers
        >>> from userscope.testing import assert_isolated
        >>> class C(containers.DeclarativeContainer):
        ...     context = us.CurrentContext()
        ...     notes = us.RequestScoped(list)
        >>> assert_isolated(C, us.UserSessions(), users=10).users
        20
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise AsyncHarnessRequiredError("assert_isolated", "aassert_isolated")
    return asyncio.run(
        aassert_isolated(
            container,
            sessions,
            providers,
            users=users,
            concurrency=concurrency,
            threads=threads,
            depth=depth,
            allow_shared=allow_shared,
        )
    )
