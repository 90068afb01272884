"""Scoped providers on dependency-injector: `UserScoped`, `ConnectionScoped`, `RequestScoped`,
and `CurrentContext`.

A scoped provider keeps one instance per open scope of its level. It is a real
dependency-injector :class:`~dependency_injector.providers.Provider`: overriding,
container copying, ``traverse()``, wiring and async mode keep working.
"""

from __future__ import annotations

import asyncio
import inspect
import keyword
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from copy import deepcopy
from types import AsyncGeneratorType, CoroutineType, GeneratorType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, overload

from dependency_injector import providers
from typing_extensions import TypeVar

from userscope.container import _guard
from userscope.container._guard import GENERATION
from userscope.container._scope import (
    ACTIVE,
    AGEN,
    CLOSE,
    GEN,
    Frame,
    Scope,
    ScopeState,
    innermost,
    notify,
    run_finalizers_async,
)
from userscope.context import UserExecutionContext
from userscope.errors import OutOfScopeError, ScopeClosedError, ScopeLimitError, UserscopeError

__all__ = ["ConnectionScoped", "CurrentContext", "RequestScoped", "ScopedProvider", "UserScoped"]

T = TypeVar("T")
#: what calling the provider returns: ``T``, or ``Awaitable[T]`` for async factories
R = TypeVar("R", default=T)


class _Observed(threading.local):
    """Per thread: instances created under the session lock, reported once it is released."""

    def __init__(self) -> None:
        self.depth = 0
        self.created: list[tuple[ScopeState, ScopedProvider[Any]]] = []


_observed = _Observed()


def _note_created(state: ScopeState, provider: ScopedProvider[Any]) -> None:
    """Remember a creation for the observer (session lock held)."""
    if _observed.depth:
        _observed.created.append((state, provider))


async def _ready(value: T) -> T:
    return value


_MISSING: Any = object()
_get_active = ACTIVE.get


def _describe(obj: object) -> str:
    return getattr(obj, "__qualname__", None) or type(obj).__qualname__


class _Named:
    """Mixin: remember the attribute name a provider got in its container class, and the
    containers it belongs to (validated at its first creation, see `container._guard`)."""

    _us_name: str | None
    _us_links: tuple[Any, ...]  # anchors of the containers holding it (`_guard`)
    _us_guard: object  # the validation generation it last passed (`_guard.GENERATION`)

    def __set_name__(self, owner: type, name: str) -> None:
        if getattr(self, "_us_name", None) is None:
            self._us_name = f"{owner.__name__}.{name}"
        _guard.link_owner(self, owner)

    # Overriding a userscope provider starts a new validation generation.
    def override(self, provider: Any) -> Any:
        """Override like dependency-injector does; the container is validated again at its
        next scoped creation (the override may introduce a captive dependency)."""
        context = super().override(provider)  # type: ignore[misc]
        _guard.invalidate()
        return context

    def reset_last_overriding(self) -> None:
        """Undo the last override; the container is validated again at its next creation."""
        super().reset_last_overriding()  # type: ignore[misc]
        _guard.invalidate()

    def reset_override(self) -> None:
        """Undo every override; the container is validated again at its next creation."""
        super().reset_override()  # type: ignore[misc]
        _guard.invalidate()


class ScopedProvider(_Named, providers.Provider[T], Generic[T, R]):
    """Base of the scoped providers: one instance per active scope of :attr:`scope`.

    Subclasses fix the level; use :class:`UserScoped`, :class:`ConnectionScoped` or
    :class:`RequestScoped`. The factory may be a class, a callable, a coroutine
    function, or a generator / async generator function whose code after ``yield``
    is the cleanup. Arguments are injected the dependency-injector way (providers
    are called, values passed as they are).

    Example:
        >>> import userscope as us
        >>> from dependency_injector import containers
        >>> class C(containers.DeclarativeContainer):
        ...     items = us.RequestScoped(list)
        >>> sessions = us.UserSessions()
        >>> with sessions.request(us.UserExecutionContext(user_id="a", thread_id="t")):
        ...     C.items() is C.items()
        True
    """

    scope: ClassVar[Scope]
    __slots__ = (
        "_abuilder",
        "_args",
        "_builder",
        "_closing",
        "_factory",
        "_is_async",
        "_kwargs",
        "_plan",
        "_provides",
        "_us_guard",
        "_us_links",
        "_us_name",
    )

    @overload
    def __init__(
        self, provides: Callable[..., Iterator[T]], /, *args: Any, **kwargs: Any
    ) -> None: ...
    @overload
    def __init__(
        self, provides: Callable[..., AsyncIterator[T]], /, *args: Any, **kwargs: Any
    ) -> None: ...
    @overload
    def __init__(
        self, provides: Callable[..., Coroutine[Any, Any, T]], /, *args: Any, **kwargs: Any
    ) -> None: ...
    @overload
    def __init__(self, provides: Callable[..., T], /, *args: Any, **kwargs: Any) -> None: ...
    def __init__(self, provides: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        if not callable(provides):
            raise TypeError(
                f"{type(self).__name__} needs a class or callable to build instances, got "
                f"{provides!r}; to share a ready value use providers.Object(value)"
            )
        super().__init__()
        self._provides = provides
        self._args = args
        self._kwargs = kwargs
        # Full dependency-injector semantics for calls with extra arguments ...
        self._factory = providers.Factory(provides, *args, **kwargs)
        # ... and a precomputed plan for the common call with none: (call it?, value).
        self._plan: tuple[tuple[str | None, int, Any], ...] = (
            *((None, _injection_kind(a), a) for a in args),
            *((k, _injection_kind(v), v) for k, v in kwargs.items()),
        )
        # the plan compiled on first use: synchronous, and for `_acreate` asynchronous
        self._builder: Callable[[Frame], Any] | None = None
        self._abuilder: Callable[[Frame], Any] | None = None
        self._closing = False
        self._us_name = None
        self._us_links = ()
        self._us_guard = None
        self._is_async = inspect.iscoroutinefunction(provides) or inspect.isasyncgenfunction(
            provides
        )

    # -- identity ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        """Name used in errors: ``Container.attr`` when declared in a container class."""
        return self._us_name or f"{type(self).__name__}({_describe(self._provides)})"

    @property
    def provides(self) -> Callable[..., Any]:
        """The factory this provider calls to build an instance."""
        return self._provides

    @property
    def args(self) -> tuple[Any, ...]:
        """Positional injections."""
        return self._args

    @property
    def kwargs(self) -> dict[str, Any]:
        """Keyword injections."""
        return dict(self._kwargs)

    def closing(self) -> Self:
        """Also call the instance's ``close()`` (or await ``aclose()``) at scope exit.

        For factories that return a resource object rather than a generator.

        Example:
            >>> import io, userscope as us
            >>> buffer = us.RequestScoped(io.StringIO).closing()
        """
        self._closing = True
        return self

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} of {_describe(self._provides)}>"

    __str__ = __repr__

    # -- dependency-injector protocol ---------------------------------------------
    @property
    def related(self) -> Iterator[providers.Provider[Any]]:
        """Providers this one depends on, then its overriding providers."""
        for value in (*self._args, *self._kwargs.values()):
            if providers.is_provider(value):
                yield value
        yield from self.overridden

    def __deepcopy__(self, memo: dict[int, Any] | None) -> Self:
        memo = {} if memo is None else memo
        copied = memo.get(id(self))
        if copied is not None:
            return copied  # type: ignore[no-any-return]
        cls = type(self)
        copied = cls.__new__(cls)
        memo[id(self)] = copied
        copied.__init__(  # type: ignore[misc]
            self._provides,
            *deepcopy(self._args, memo),
            **deepcopy(self._kwargs, memo),
        )
        copied._us_name = self._us_name
        copied._us_links = _guard.copied_links(self._us_links, memo)
        copied._closing = self._closing
        self._copy_overridings(copied, memo)
        return copied

    async def async_(self, *args: Any, **kwargs: Any) -> T:
        """Resolve for ``await``: the instance, created asynchronously when needed.

        Example:
            >>> # inside `async with sessions.request(ctx):`
            >>> # agent = await container.agent.async_()
        """
        state: ScopeState | None = None
        frame = _get_active() if self.last_overriding is None and not args and not kwargs else None
        if frame is not None:
            state = frame[self.scope]  # type: ignore[assignment]
        if frame is None or state is None:  # overridden, called with arguments, or out of scope
            result: Any = self(*args, **kwargs)
        else:
            result = state.cache.get(self, _MISSING)
            if result is not _MISSING:
                return result  # type: ignore[no-any-return]
            result = self._create(state, frame, args, kwargs)
        if _is_awaitable(result):
            result = await result
        return result  # type: ignore[no-any-return]

    # -- resolution -------------------------------------------------------------------
    # dependency-injector's stub overloads __call__ twice with identical parameters (T and
    # Awaitable[T]); no single signature can match both, so the override is declared on R
    # (T, or Awaitable[T] for a provider typed over an async factory).
    def __call__(self, *args: Any, **kwargs: Any) -> R:  # type: ignore[override]
        overriding = self.last_overriding
        if overriding is not None:
            return overriding(*args, **kwargs)  # type: ignore[no-any-return]
        frame = _get_active()
        if frame is not None:
            state: ScopeState | None = frame[self.scope]  # type: ignore[assignment]
            if state is not None:
                value = state.cache.get(self, _MISSING)
                if value is _MISSING:
                    return self._create(state, frame, args, kwargs)  # type: ignore[no-any-return]
                if self._is_async:
                    return _ready(value)  # type: ignore[return-value]
                return value  # type: ignore[no-any-return]
        raise OutOfScopeError(self.name, self.scope, innermost(frame))

    def _create(
        self, state: ScopeState, frame: Frame, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Build the instance of ``state`` after a cache miss, under the session lock."""
        if self._is_async and not args and not kwargs:  # `_acreate` locks what it needs
            if not frame[5]:
                raise self._sync_scope_error(state)
            return self._acreate(state, frame)
        lock = state.session.lock
        if state.session.owner._observer is not None:
            return self._create_observed(state, frame, args, kwargs)
        lock.acquire()
        try:
            return self._make(state, frame, args, kwargs)
        finally:
            lock.release()

    def _create_observed(
        self, state: ScopeState, frame: Frame, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """:meth:`_create` with an observer: report creations and refusals after the lock."""
        observed = _observed
        depth = observed.depth
        observed.depth = depth + 1
        lock = state.session.lock
        try:
            lock.acquire()
            try:
                return self._make(state, frame, args, kwargs)
            finally:
                lock.release()
        except ScopeLimitError as refusal:
            observer = state.session.owner._observer
            if depth == 0 and observer is not None:
                notify(observer, "limit_refused", refusal.limit, frame[0].user_key)
            raise
        finally:
            observed.depth = depth
            if depth == 0 and observed.created:
                created, observed.created = observed.created, []
                observer = state.session.owner._observer
                if observer is not None:
                    for made_in, provider in created:
                        notify(
                            observer,
                            "instance_created",
                            made_in.observed,
                            provider.name,
                            provider.scope,
                        )

    def _make(
        self, state: ScopeState, frame: Frame, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """:meth:`_create` with the session lock already held (compiled builders call it
        for their scoped dependencies: every state of one frame shares that lock)."""
        session = state.session
        if state.closed:  # checked under the lock: a closing scope takes no new instance
            raise ScopeClosedError(state.level, session.user_id, self.name)
        value = state.cache.get(self, _MISSING)
        if value is not _MISSING:
            return _ready(value) if self._is_async else value
        if self._us_guard is not GENERATION.token:  # first creation in this generation
            _guard.check(self)  # validates the container(s): CaptiveDependencyError
        plain_call = not args and not kwargs
        if self._is_async and plain_call:  # known to be async: one coroutine does it all
            if not frame[5]:
                raise self._sync_scope_error(state)
            return self._acreate(state, frame)
        waiters = state.pending.get(self) if state.pending else None
        if waiters is not None:  # another task is creating it: wait for that one
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            waiters.append(future)
            return _await_pending(future)
        limit = session.owner._max_instances_per_user
        if limit is not None and session.instances >= limit:
            session.admit(self.name)
        if plain_call:
            builder = self._builder
            if builder is None:
                builder = self._builder = _compile_builder(self, asynchronous=False)
            result = builder(frame)
        else:
            result = self._factory(*args, **kwargs)
        kind = type(result)
        if kind is GeneratorType:
            try:
                value = next(result)
            except StopIteration:
                raise self._no_yield() from None
            state.cache[self] = value
            state.finalizers.append((GEN, result, self))
            session.instances += 1
            if session.owner._observer is not None:
                _note_created(state, self)
            return _ready(value) if self._is_async else value
        if kind not in _PLAIN_TYPES and _needs_await(result):
            if not frame[5]:
                _discard(result)
                raise self._sync_scope_error(state)
            self._is_async = True  # from now on `_acreate` builds it in one coroutine
            self.enable_async_mode()
            if state.pending is None:
                state.pending = {}
            state.pending[self] = []  # futures of concurrent resolvers, made on demand
            return self._acreate(state, frame, result)
        if self._closing:
            state.finalizers.append(self._closer(result))
        state.cache[self] = result
        session.instances += 1
        if session.owner._observer is not None:
            _note_created(state, self)
        return _ready(result) if self._is_async else result

    def _sync_scope_error(self, state: ScopeState) -> UserscopeError:
        return UserscopeError(
            f"{self.name} is created asynchronously but its {state.level.name} scope "
            "was entered with a plain `with`; enter it with `async with` and resolve "
            f"with `await {self.name}.async_()`"
        )

    def _call_factory(self, positional: list[Any], named: dict[str, Any]) -> Any:
        """Call the factory with resolved injections, awaiting the async ones first if any.

        The synchronous builder's slow path: taken when an injected value's type has not
        yet been seen to be a plain (non-awaitable) value.
        """
        for value in (*positional, *named.values()):
            if type(value) not in _PLAIN_TYPES and _needs_await(value):
                return self._build_async(positional, named)
        return self._provides(*positional, **named)

    async def _build_async(self, positional: list[Any], named: dict[str, Any]) -> Any:
        """Await async injections one by one (no extra tasks), then call the factory."""
        for index, value in enumerate(positional):
            if _is_awaitable(value):
                positional[index] = await value
        for key, value in named.items():
            if _is_awaitable(value):
                named[key] = await value
        result = self._provides(*positional, **named)
        if _is_awaitable(result):
            result = await result
        return result

    def _closer(self, value: Any) -> tuple[int, Any, object]:
        if not (
            callable(getattr(value, "close", None)) or callable(getattr(value, "aclose", None))
        ):
            raise UserscopeError(
                f"{self.name} was declared .closing() but {type(value).__qualname__} has no "
                "close() or aclose() method; drop .closing() or use a generator factory"
            )
        return (CLOSE, value, self)

    async def _acreate(self, state: ScopeState, frame: Frame, started: Any = _MISSING) -> Any:
        """Create the instance of ``state`` asynchronously, in this one coroutine.

        ``started`` is a result :meth:`_make` already got from the factory (its pending
        entry is registered); without it, this registers the pending entry itself (or
        waits for the task already creating the instance) and runs the async builder.
        Concurrent resolvers of the same instance wait on futures; a failure reaches
        them too, and a built instance that cannot be handed out is cleaned up at once.
        """
        if self._us_guard is not GENERATION.token:  # first creation in this generation
            _guard.check(self)  # validates the container(s): CaptiveDependencyError
        session = state.session
        if started is _MISSING:
            future: asyncio.Future[Any] | None = None
            try:
                session.lock.acquire()
                try:
                    if state.closed:
                        raise ScopeClosedError(state.level, session.user_id, self.name)
                    value = state.cache.get(self, _MISSING)
                    if value is not _MISSING:
                        return value
                    waiters = state.pending.get(self) if state.pending else None
                    if waiters is not None:
                        future = asyncio.get_running_loop().create_future()
                        waiters.append(future)
                    else:
                        limit = session.owner._max_instances_per_user
                        if limit is not None and session.instances >= limit:
                            session.admit(self.name)
                        if state.pending is None:
                            state.pending = {}
                        state.pending[self] = []
                finally:
                    session.lock.release()
            except ScopeLimitError as refusal:
                observer = session.owner._observer
                if observer is not None:  # reported here, with the lock released
                    notify(observer, "limit_refused", refusal.limit, frame[0].user_key)
                raise
            if future is not None:
                return await future
        finalizer: tuple[int, Any, object] | None = None
        outcome: BaseException | None = None
        try:
            value = started
            if value is _MISSING:
                builder = self._abuilder
                if builder is None:
                    builder = self._abuilder = _compile_builder(self, asynchronous=True)
                value = builder(frame)
            if type(value) is not AsyncGeneratorType and _is_awaitable(value):
                value = await value
            kind = type(value)
            if kind is AsyncGeneratorType:
                agen = value
                try:
                    value = await agen.__anext__()
                except StopAsyncIteration:
                    raise self._no_yield() from None
                finalizer = (AGEN, agen, self)
            elif kind is GeneratorType:
                gen = value
                try:
                    value = next(gen)
                except StopIteration:
                    raise self._no_yield() from None
                finalizer = (GEN, gen, self)
            elif self._closing:
                finalizer = self._closer(value)
            session.lock.acquire()
            try:
                if state.closed:
                    raise ScopeClosedError(state.level, session.user_id, self.name)
                state.cache[self] = value
                if finalizer is not None:
                    state.finalizers.append(finalizer)
                session.instances += 1
                waiters = state.pending.pop(self, None) if state.pending else None
            finally:
                session.lock.release()
            finalizer = None
            observer = session.owner._observer
            if observer is not None:
                notify(observer, "instance_created", state.observed, self.name, self.scope)
            if waiters:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(value)
            return value
        except BaseException as exc:
            outcome = exc
            raise
        finally:
            if outcome is not None:
                with session.lock:
                    waiters = state.pending.pop(self, None) if state.pending else None
                _fail_waiters(waiters, outcome)
            if finalizer is not None:  # built but never handed out: clean it up now
                await run_finalizers_async([finalizer], None)

    def _no_yield(self) -> UserscopeError:
        return UserscopeError(
            f"the generator factory of {self.name} returned without yielding; "
            "yield the instance exactly once"
        )


_VALUE, _CALL, _CONTEXT, _SCOPED = 0, 1, 2, 3  # how a plan entry is resolved


def _injection_kind(value: Any) -> int:
    """dependency-injector's rule: providers are called, delegates passed as they are."""
    if isinstance(value, CurrentContext):
        return _CONTEXT  # read from the frame while not overridden
    if isinstance(value, ScopedProvider):
        return _SCOPED  # read from the frame's cache while not overridden
    if providers.is_provider(value) and not providers.is_delegated(value):
        return _CALL
    return _VALUE


_PLAIN_TYPES: set[type] = set()  # result types seen to be neither awaitable nor async generators


def _compile_builder(
    provider: ScopedProvider[Any], *, asynchronous: bool
) -> Callable[[Frame], Any]:
    """Compile ``provider``'s injection plan into one function ``build(frame)``.

    The function resolves every injection in plan order and calls the factory. Scoped
    and ``CurrentContext`` injections are read straight from the active frame while
    they are not overridden (then they are called, like any other provider); other
    providers are called; plain values are passed as they are. This is
    dependency-injector's Factory semantics with the per-call loop unrolled once.

    The synchronous builder runs under the session lock (inside :meth:`ScopedProvider._make`)
    and creates missing scoped dependencies in the same locked section; it returns what
    the factory returned, or an awaitable when an injection turned out to be async. The
    asynchronous one (``asynchronous=True``, for :meth:`ScopedProvider._acreate`) runs
    without the lock, awaits async injections in place and the factory's awaitable result;
    a plan with no provider to call but the context gets the synchronous builder instead
    (it takes no lock without scoped dependencies).
    """
    namespace: dict[str, Any] = {
        "MISSING": _MISSING,
        "PLAIN": _PLAIN_TYPES,
        "awaitable": _is_awaitable,
        "provides": provider._provides,
        "slow": provider._call_factory,
    }
    if not any(how in (_CALL, _SCOPED) for _, how, _ in provider._plan):
        asynchronous = False  # nothing to await but an overridden context: the slow path does
    create = "_create" if asynchronous else "_make"  # the async builder holds no lock
    lines: list[str] = []
    values: list[str] = []  # expressions of the values, in plan order
    checked: list[str] = []  # values that may be awaitable
    keys: list[str | None] = []
    for index, (key, how, dependency) in enumerate(provider._plan):
        dep, var = f"d{index}", f"v{index}"
        namespace[dep] = dependency
        keys.append(key)
        if how == _VALUE:
            values.append(dep)
            continue
        values.append(var)
        if how == _CONTEXT:
            lines.append(f"    {var} = frame[0] if {dep}.last_overriding is None else {dep}()")
        elif how == _SCOPED:
            lines += [
                f"    s = frame[{int(dependency.scope)}]",
                f"    if s is None or {dep}.last_overriding is not None:",
                f"        {var} = {dep}()",
                "    else:",
                f"        {var} = s.cache.get({dep}, MISSING)",
                f"        if {var} is MISSING:",
                f"            {var} = {dep}.{create}(s, frame, (), {{}})",
            ]
        else:
            lines.append(f"    {var} = {dep}()")
        checked.append(var)
        if asynchronous:
            lines += [
                f"    if type({var}) not in PLAIN and awaitable({var}):",
                f"        {var} = await {var}",
            ]
    positional = [v for v, k in zip(values, keys, strict=True) if k is None]
    named = [(k, v) for v, k in zip(values, keys, strict=True) if k is not None]
    args = list(positional)
    odd: list[str] = []
    for key, var in named:
        if key.isidentifier() and not keyword.iskeyword(key):
            args.append(f"{key}={var}")
        else:  # not a valid parameter name (``**{"class": ...}``): pass it in a dict
            odd.append(f"{key!r}: {var}")
    if odd:
        args.append("**{" + ", ".join(odd) + "}")
    call_args = ", ".join(args)
    if asynchronous:
        lines += [
            f"    result = provides({call_args})",
            "    if type(result) not in PLAIN and awaitable(result):",
            "        result = await result",
            "    return result",
        ]
    else:
        if checked:
            plain = " and ".join(f"type({v}) in PLAIN" for v in checked)
            pos_list = "[" + "".join(f"{v}, " for v in positional) + "]"
            named_dict = "{" + ", ".join(f"{k!r}: {v}" for k, v in named) + "}"
            lines += [
                f"    if not ({plain}):",
                f"        return slow({pos_list}, {named_dict})",
            ]
        lines.append(f"    return provides({call_args})")
    header = "async def build(frame):" if asynchronous else "def build(frame):"
    source = header + "\n" + "\n".join(lines) + "\n"
    code = compile(source, f"<userscope builder of {provider.name}>", "exec")
    exec(code, namespace)  # the source holds only plan indices and repr()'d keywords
    builder: Callable[[Frame], Any] = namespace["build"]
    return builder


def _needs_await(result: Any) -> bool:
    kind = type(result)
    if kind is CoroutineType or kind is AsyncGeneratorType:
        return True
    if inspect.isawaitable(result) or isinstance(result, AsyncGeneratorType):
        return True
    if len(_PLAIN_TYPES) < 4096:  # bounded: a type is only ever added once
        _PLAIN_TYPES.add(type(result))
    return False


def _fail_waiters(waiters: list[asyncio.Future[Any]] | None, outcome: BaseException) -> None:
    """Hand a failed creation's outcome to the resolvers that waited for it."""
    for waiter in waiters or ():
        if waiter.done():
            continue
        if isinstance(outcome, asyncio.CancelledError):
            waiter.cancel()
        else:
            waiter.set_exception(outcome)


def _is_awaitable(value: Any) -> bool:
    kind = type(value)
    if kind in _PLAIN_TYPES:
        return False
    if kind is CoroutineType:
        return True
    if inspect.isawaitable(value):
        return True
    if kind is not AsyncGeneratorType and len(_PLAIN_TYPES) < 4096:
        _PLAIN_TYPES.add(kind)
    return False


async def _await_pending(future: asyncio.Future[Any]) -> Any:
    return await future


def _discard(result: Any) -> None:
    if isinstance(result, CoroutineType):
        result.close()
    elif isinstance(result, asyncio.Future):
        result.cancel()


class UserScoped(ScopedProvider[T, R]):
    """One instance per user session (USER scope), shared by the user's connections.

    Example:
        >>> import userscope as us
        >>> from dependency_injector import containers
        >>> class AgentRegistry:
        ...     def __init__(self, ctx): self.user_id = ctx.user_id
        >>> class C(containers.DeclarativeContainer):
        ...     context = us.CurrentContext()
        ...     registry = us.UserScoped(AgentRegistry, context)
        >>> sessions = us.UserSessions()
        >>> with sessions.request(us.UserExecutionContext(user_id="alice", thread_id="t")):
        ...     C.registry().user_id
        'alice'
    """

    scope = Scope.USER
    __slots__ = ()

    if TYPE_CHECKING:  # typing only: an async factory makes calling it give Awaitable[T]

        @overload
        def __init__(
            self: UserScoped[T, Awaitable[T]],
            provides: Callable[..., AsyncIterator[T]],
            /,
            *args: Any,
            **kwargs: Any,
        ) -> None: ...
        @overload
        def __init__(
            self: UserScoped[T, Awaitable[T]],
            provides: Callable[..., Coroutine[Any, Any, T]],
            /,
            *args: Any,
            **kwargs: Any,
        ) -> None: ...
        @overload
        def __init__(
            self: UserScoped[T, T],
            provides: Callable[..., Iterator[T]],
            /,
            *args: Any,
            **kwargs: Any,
        ) -> None: ...
        @overload
        def __init__(
            self: UserScoped[T, T], provides: Callable[..., T], /, *args: Any, **kwargs: Any
        ) -> None: ...
        def __init__(self, provides: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None: ...


class ConnectionScoped(ScopedProvider[T, R]):
    """One instance per connection (an HTTP request or a WebSocket connection).

    Example:
        >>> import userscope as us
        >>> from dependency_injector import containers
        >>> closed = []
        >>> def open_bridge(ctx):
        ...     yield f"bridge for {ctx.user_id}"
        ...     closed.append(ctx.user_id)
        >>> class C(containers.DeclarativeContainer):
        ...     context = us.CurrentContext()
        ...     bridge = us.ConnectionScoped(open_bridge, context)
        >>> sessions = us.UserSessions()
        >>> with sessions.connection(us.UserExecutionContext(user_id="bob", thread_id="t")):
        ...     C.bridge()
        'bridge for bob'
        >>> closed
        ['bob']
    """

    scope = Scope.CONNECTION
    __slots__ = ()

    if TYPE_CHECKING:  # typing only: an async factory makes calling it give Awaitable[T]

        @overload
        def __init__(
            self: ConnectionScoped[T, Awaitable[T]],
            provides: Callable[..., AsyncIterator[T]],
            /,
            *args: Any,
            **kwargs: Any,
        ) -> None: ...
        @overload
        def __init__(
            self: ConnectionScoped[T, Awaitable[T]],
            provides: Callable[..., Coroutine[Any, Any, T]],
            /,
            *args: Any,
            **kwargs: Any,
        ) -> None: ...
        @overload
        def __init__(
            self: ConnectionScoped[T, T],
            provides: Callable[..., Iterator[T]],
            /,
            *args: Any,
            **kwargs: Any,
        ) -> None: ...
        @overload
        def __init__(
            self: ConnectionScoped[T, T], provides: Callable[..., T], /, *args: Any, **kwargs: Any
        ) -> None: ...
        def __init__(self, provides: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None: ...


class RequestScoped(ScopedProvider[T, R]):
    """One instance per request (an HTTP request, one WebSocket message, one agent run).

    Example:
        >>> import userscope as us
        >>> from dependency_injector import containers
        >>> class C(containers.DeclarativeContainer):
        ...     scratch = us.RequestScoped(dict)
        >>> sessions = us.UserSessions()
        >>> ctx = us.UserExecutionContext(user_id="a", thread_id="t")
        >>> with sessions.request(ctx):
        ...     first = C.scratch()
        >>> with sessions.request(ctx.for_request()):
        ...     C.scratch() is first
        False
    """

    scope = Scope.REQUEST
    __slots__ = ()

    if TYPE_CHECKING:  # typing only: an async factory makes calling it give Awaitable[T]

        @overload
        def __init__(
            self: RequestScoped[T, Awaitable[T]],
            provides: Callable[..., AsyncIterator[T]],
            /,
            *args: Any,
            **kwargs: Any,
        ) -> None: ...
        @overload
        def __init__(
            self: RequestScoped[T, Awaitable[T]],
            provides: Callable[..., Coroutine[Any, Any, T]],
            /,
            *args: Any,
            **kwargs: Any,
        ) -> None: ...
        @overload
        def __init__(
            self: RequestScoped[T, T],
            provides: Callable[..., Iterator[T]],
            /,
            *args: Any,
            **kwargs: Any,
        ) -> None: ...
        @overload
        def __init__(
            self: RequestScoped[T, T], provides: Callable[..., T], /, *args: Any, **kwargs: Any
        ) -> None: ...
        def __init__(self, provides: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None: ...


class CurrentContext(_Named, providers.Provider[UserExecutionContext]):
    """Resolves to the active :class:`~userscope.UserExecutionContext`.

    Outside any scope it raises :class:`~userscope.OutOfScopeError`, like the scoped
    providers. For validation it counts as USER-scoped: scoped providers of any level
    may depend on it; application singletons may not.

    Example:
        >>> import userscope as us
        >>> from dependency_injector import containers
        >>> class C(containers.DeclarativeContainer):
        ...     context = us.CurrentContext()
        >>> sessions = us.UserSessions()
        >>> with sessions.request(us.UserExecutionContext(user_id="a", thread_id="t")):
        ...     C.context().user_id
        'a'
    """

    scope: ClassVar[Scope] = Scope.USER
    __slots__ = ("_us_guard", "_us_links", "_us_name")

    def __init__(self) -> None:
        super().__init__()
        self._us_name = None
        self._us_links = ()
        self._us_guard = None

    @property
    def name(self) -> str:
        """Name used in errors."""
        return self._us_name or "CurrentContext()"

    def __call__(self, *args: Any, **kwargs: Any) -> UserExecutionContext:  # type: ignore[override]
        overriding = self.last_overriding
        if overriding is not None:
            return overriding(*args, **kwargs)  # type: ignore[no-any-return]
        if self._us_guard is not GENERATION.token:  # a singleton must not capture a context
            _guard.check(self)
        frame = ACTIVE.get()
        if frame is None:
            raise OutOfScopeError(
                self.name,
                Scope.USER,
                None,
                hint="open any scope, e.g. `async with sessions.request(ctx):`",
            )
        return frame[0]

    def async_(self, *args: Any, **kwargs: Any) -> Awaitable[UserExecutionContext]:
        """Awaitable twin of calling the provider."""
        return _ready(self(*args, **kwargs))

    def __deepcopy__(self, memo: dict[int, Any] | None) -> Self:
        memo = {} if memo is None else memo
        copied = memo.get(id(self))
        if copied is not None:
            return copied  # type: ignore[no-any-return]
        copied = type(self)()
        memo[id(self)] = copied
        copied._us_name = self._us_name
        copied._us_links = _guard.copied_links(self._us_links, memo)
        self._copy_overridings(copied, memo)
        return copied

    def __repr__(self) -> str:
        return f"<CurrentContext {self.name}>"

    __str__ = __repr__
