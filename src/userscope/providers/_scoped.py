"""Scoped providers on dependency-injector: `UserScoped`, `ConnectionScoped`, `RequestScoped`,
and `CurrentContext`.

A scoped provider keeps one instance per open scope of its level. It is a real
dependency-injector :class:`~dependency_injector.providers.Provider`: overriding,
container copying, ``traverse()``, wiring and async mode keep working.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from copy import deepcopy
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, Self, overload

from dependency_injector import providers
from typing_extensions import TypeVar

if TYPE_CHECKING:  # the declarations, as typed no-ops
    from userscope import _nocython as cython
else:
    try:  # Cython's pure-Python mode: C types for the compiled build (see _nocython)
        import cython
    except ImportError:  # pragma: no cover - a pure install: no Cython, no-op declarations
        from userscope import _nocython as cython

from userscope._speedups import ready, var_get
from userscope.container import _guard
from userscope.container._scope import ACTIVE, ASYNC, CTX, ActiveFrame, Scope, innermost
from userscope.container._state import CLOSE, Finalizer, ScopeState
from userscope.context import UserExecutionContext
from userscope.errors import FactoryProtocolError, OutOfScopeError
from userscope.providers._creation import ProviderCore, acreate, begin_acreate, create
from userscope.providers._plan import (
    MISSING,
    PLAIN_TYPES,
    is_awaitable,
    needs_await,
    plan_entry,
)

_is_awaitable = is_awaitable  # the name the FastAPI adapter imports

__all__ = ["ConnectionScoped", "CurrentContext", "RequestScoped", "ScopedProvider", "UserScoped"]

T = TypeVar("T")
#: what calling the provider returns: ``T``, or ``Awaitable[T]`` for async factories
R = TypeVar("R", default=T)


_MISSING: Any = MISSING
_ASYNC: Final = ASYNC  # the frame index, a C integer compiled (see the .pxd)

_generation: object = None
"""The current validation generation's token, kept by `_guard.on_generation` (compiled:
a C global, where reading ``GENERATION.token`` is a generic lookup per call)."""


def _follow_generation(token: object) -> None:
    global _generation
    _generation = token


_guard.on_generation(_follow_generation)

if not cython.compiled:  # the pure twins of two C helpers declared in the .pxd

    def _member_offset(descr: Any, owner: type) -> int:
        """Compiled: where the object slot ``descr`` of ``owner`` sits in its instances
        (0 when ``descr`` is not such a slot)."""
        return 0

    def _slot_at(obj: Any, owner: type, offset: int) -> Any:
        """Compiled: the value of the object slot at ``offset`` in ``obj`` when ``obj`` is
        an instance of ``owner`` and the slot is set, else None.

        The call paths read a provider's ``_core`` this way: a generic attribute lookup
        (the type's attribute cache, the member descriptor, its type check) costs ~150
        instructions per call, the read in place a subtype check and a load.
        """
        return None


def _describe(obj: object) -> str:
    return getattr(obj, "__qualname__", None) or type(obj).__qualname__


class _Named:
    """Mixin: remember the attribute name a provider got in its container class, and the
    containers it belongs to (validated at its first creation, see `container._guard`);
    keep its core's ``overridden`` flag in step with dependency-injector's overriding."""

    _us_name: str | None
    _us_links: tuple[Any, ...]  # anchors of the containers holding it (`_guard`)
    _core: ProviderCore  # what the call and creation paths read (`_creation.ProviderCore`)

    def __set_name__(self, owner: type, name: str) -> None:
        if getattr(self, "_us_name", None) is None:
            self._us_name = f"{owner.__name__}.{name}"
        _guard.link_owner(self, owner)

    @property
    def _us_guard(self) -> object:
        """The validation generation it last passed (`_guard.GENERATION`)."""
        return self._core.guard

    @_us_guard.setter
    def _us_guard(self, token: object) -> None:
        self._core.guard = token

    def _sync_overridden(self) -> None:
        self._core.overridden = self.last_overriding is not None  # type: ignore[attr-defined]

    # Overriding a userscope provider starts a new validation generation.
    def override(self, provider: Any) -> Any:
        """Override like dependency-injector does; the container is validated again at its
        next scoped creation (the override may introduce a captive dependency)."""
        try:
            context = super().override(provider)  # type: ignore[misc]
        finally:
            self._sync_overridden()
        _guard.invalidate()
        return context

    def reset_last_overriding(self) -> None:
        """Undo the last override; the container is validated again at its next creation."""
        try:
            super().reset_last_overriding()  # type: ignore[misc]
        finally:
            self._sync_overridden()
        _guard.invalidate()

    def reset_override(self) -> None:
        """Undo every override; the container is validated again at its next creation."""
        try:
            super().reset_override()  # type: ignore[misc]
        finally:
            self._sync_overridden()
        _guard.invalidate()


class _Resolve:
    """How a scoped provider is called: the one base that defines ``__call__``.

    Compiled, this is an extension type with no fields of its own (see the ``.pxd``), so
    its ``__call__`` is a C call slot (``tp_call``) that :class:`ScopedProvider` and its
    subclasses inherit as it is: calling a provider enters this function directly, where
    a ``__call__`` defined on the Python class itself is looked up and called through
    CPython's generic slot (``slot_tp_call``: a method lookup, a frame of arguments
    rebuilt with ``self`` in front, a vectorcall). Having no fields, it does not change
    the instance layout of dependency-injector's ``Provider`` it is combined with. Pure,
    it is a plain mixin and the call is a Python method like any other.
    """

    @cython.locals(core=ProviderCore, state=ScopeState, frame=tuple)
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Compiled only: pure, `_call` below (the same steps, reading `self._core`)
        # replaces it, as `_slot_at` would be a Python call there.
        core = _slot_at(self, _SCOPED_CLASS, _CORE_OFFSET)  # the core slot, read in place
        if core is None:
            core = self._core  # type: ignore[attr-defined]
        if core.overridden:
            overriding = self.last_overriding  # type: ignore[attr-defined]
            if overriding is not None:
                return overriding(*args, **kwargs)
        frame: ActiveFrame | None = var_get(ACTIVE)
        if frame is not None:
            state: ScopeState | None = frame[core.scope]  # type: ignore[assignment]
            if state is not None:
                value = state.cache.get(self, _MISSING)
                if value is _MISSING:
                    return create(core, state, frame, args, kwargs)
                if core.is_async:
                    return ready(value)
                return value
        raise OutOfScopeError(self.name, self.scope, innermost(frame))  # type: ignore[attr-defined]


if not cython.compiled:

    def _call(self: Any, *args: Any, **kwargs: Any) -> Any:
        """Calling a scoped provider (pure): the instance in the active scope of its
        level, created on a miss; the overriding provider's result when overridden."""
        core = self._core
        if core.overridden:
            overriding = self.last_overriding
            if overriding is not None:
                return overriding(*args, **kwargs)
        frame: ActiveFrame | None = var_get(ACTIVE)
        if frame is not None:
            state: ScopeState | None = frame[core.scope]  # type: ignore[assignment]
            if state is not None:
                value = state.cache.get(self, _MISSING)
                if value is _MISSING:
                    return create(core, state, frame, args, kwargs)
                if core.is_async:
                    return ready(value)
                return value
        raise OutOfScopeError(self.name, self.scope, innermost(frame))

    _Resolve.__call__ = _call  # type: ignore[method-assign]


class ScopedProvider(_Named, _Resolve, providers.Provider[T], Generic[T, R]):
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
        "_core",
        "_kwargs",
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
        core = self._core = ProviderCore(self, int(self.scope))
        core.provides = provides
        self._args = args
        self._kwargs = kwargs
        # Full dependency-injector semantics for calls with extra arguments ...
        core.factory = providers.Factory(provides, *args, **kwargs)
        # ... and a precomputed plan for the common call with none (see `plan_entry`).
        core.set_plan(
            (
                *(plan_entry(None, a) for a in args),
                *(plan_entry(k, v) for k, v in kwargs.items()),
            )
        )
        # the plan compiled on first use (the pure runtime): synchronous, and asynchronous
        self._builder: Callable[[ActiveFrame], Any] | None = None
        self._abuilder: Callable[[ActiveFrame], Any] | None = None
        self._us_name = None
        self._us_links = ()
        core.is_async = inspect.iscoroutinefunction(provides) or inspect.isasyncgenfunction(
            provides
        )
        core.suspends = core.is_async  # an async factory: its creation runs in `acreate`

    # -- identity ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        """Name used in errors: ``Container.attr`` when declared in a container class."""
        return self._us_name or f"{type(self).__name__}({_describe(self._provides)})"

    @property
    def provides(self) -> Callable[..., Any]:
        """The factory this provider calls to build an instance."""
        return self._core.provides  # type: ignore[no-any-return]

    # views of the core's fields (`_creation.ProviderCore`), under their historical names
    @property
    def _provides(self) -> Callable[..., Any]:
        return self._core.provides  # type: ignore[no-any-return]

    @property
    def _factory(self) -> providers.Factory[Any]:
        return self._core.factory  # type: ignore[no-any-return]

    @property
    def _plan(self) -> tuple[tuple[str | None, int, Any, ProviderCore | None], ...]:
        return self._core.plan

    @property
    def _is_async(self) -> bool:
        """Whether it builds asynchronously (an async factory, or one seen to return an
        awaitable); set when a build turns out to be async."""
        return self._core.is_async

    @_is_async.setter
    def _is_async(self, value: bool) -> None:
        self._core.is_async = value

    @property
    def _closing(self) -> bool:
        return self._core.closing

    @_closing.setter
    def _closing(self, value: bool) -> None:
        self._core.closing = value

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
        copied._sync_overridden()
        return copied

    @cython.locals(core=ProviderCore, state=ScopeState, frame=tuple)
    def async_(self, *args: Any, **kwargs: Any) -> Awaitable[T]:
        """Resolve for ``await``: the instance, created asynchronously when needed.

        A cached instance comes back as a ready awaitable; an async provider's creation
        is started by :func:`~userscope.providers._creation.begin_acreate`: a ready
        awaitable when it completed in the call, else that creation's own coroutine.

        Example:
            >>> import asyncio, userscope as us
            >>> from dependency_injector import containers
            >>> async def open_client(ctx):
            ...     return f"client of {ctx.user_id}"
            >>> class C(containers.DeclarativeContainer):
            ...     context = us.CurrentContext()
            ...     client = us.RequestScoped(open_client, context)
            >>> async def main():
            ...     sessions = us.UserSessions()
            ...     ctx = us.UserExecutionContext(user_id="a", thread_id="t")
            ...     async with sessions.request(ctx):
            ...         return await C.client.async_()
            >>> asyncio.run(main())
            'client of a'
        """
        core = self._core
        if not core.overridden and not args and not kwargs:
            frame: ActiveFrame | None = var_get(ACTIVE)
            if frame is not None:
                state: ScopeState | None = frame[core.scope]  # type: ignore[assignment]
                if state is not None:
                    value = state.cache.get(self, _MISSING)
                    if value is not _MISSING:
                        return ready(value)
                    if core.is_async:
                        if not frame[_ASYNC]:
                            return self._async_resolve(args, kwargs)  # raises on await
                        if core.suspends:
                            return acreate(core, state, frame)
                        return begin_acreate(core, state, frame)
        return self._async_resolve(args, kwargs)

    @cython.locals(core=ProviderCore, state=ScopeState, frame=tuple)
    async def _async_resolve(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        """`async_` for everything but a cache hit or an async provider's creation: a
        sync provider's creation (which may turn out async), an override, arguments, or
        no scope (the error is raised on ``await``)."""
        core = self._core
        state: ScopeState | None = None
        frame: ActiveFrame | None = None
        if not core.overridden and not args and not kwargs:
            frame = var_get(ACTIVE)
        if frame is not None:
            state = frame[core.scope]  # type: ignore[assignment]
        if frame is None or state is None:  # overridden, called with arguments, or out of scope
            result: Any = self(*args, **kwargs)
        else:
            result = state.cache.get(self, _MISSING)
            if result is not _MISSING:
                return result  # type: ignore[no-any-return]
            result = create(core, state, frame, args, kwargs, True)
        if is_awaitable(result):
            result = await result
        return result  # type: ignore[no-any-return]

    # -- resolution -------------------------------------------------------------------
    # Calling the provider is `_Resolve.__call__` (a base class: compiled, the type's C
    # call slot). dependency-injector's stub overloads __call__ twice with identical
    # parameters (T and Awaitable[T]); no single signature can match both, so the typed
    # view is declared on R (T, or Awaitable[T] for a provider typed over an async factory).
    if TYPE_CHECKING:

        def __call__(self, *args: Any, **kwargs: Any) -> R: ...  # type: ignore[override]

    def _call_factory(self, positional: list[Any], named: dict[str, Any]) -> Any:
        """Call the factory with resolved injections, awaiting the async ones first if any.

        The synchronous builder's slow path: taken when an injected value's type has not
        yet been seen to be a plain (non-awaitable) value.
        """
        for value in (*positional, *named.values()):
            if type(value) not in PLAIN_TYPES and needs_await(value):
                return self._build_async(positional, named)
        return self._core.provides(*positional, **named)

    async def _build_async(self, positional: list[Any], named: dict[str, Any]) -> Any:
        """Await async injections one by one (no extra tasks), then call the factory."""
        for index, value in enumerate(positional):
            if is_awaitable(value):
                positional[index] = await value
        for key, value in named.items():
            if is_awaitable(value):
                named[key] = await value
        result = self._core.provides(*positional, **named)
        if is_awaitable(result):
            result = await result
        return result

    def _closer(self, value: Any) -> Finalizer:
        if not (
            callable(getattr(value, "close", None)) or callable(getattr(value, "aclose", None))
        ):
            raise FactoryProtocolError(self.name, "not_closable", type(value).__qualname__)
        return (CLOSE, value, self)


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
    __slots__ = ("_core", "_us_links", "_us_name")

    def __init__(self) -> None:
        super().__init__()
        self._core = ProviderCore(self, int(Scope.USER))
        self._us_name = None
        self._us_links = ()

    @property
    def name(self) -> str:
        """Name used in errors."""
        return self._us_name or "CurrentContext()"

    @cython.locals(core=ProviderCore)
    def __call__(self, *args: Any, **kwargs: Any) -> UserExecutionContext:  # type: ignore[override]
        core = self._core
        if core.overridden:
            overriding = self.last_overriding
            if overriding is not None:
                return overriding(*args, **kwargs)  # type: ignore[no-any-return]
        if core.guard is not _generation:  # a singleton must not capture a context
            _guard.check(self)
        frame = ACTIVE.get()
        if frame is None:
            raise OutOfScopeError(
                self.name,
                Scope.USER,
                None,
                hint="open any scope, e.g. `async with sessions.request(ctx):`",
            )
        return frame[CTX]

    def async_(self, *args: Any, **kwargs: Any) -> Awaitable[UserExecutionContext]:
        """Awaitable twin of calling the provider."""
        return ready(self(*args, **kwargs))

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
        copied._sync_overridden()
        return copied

    def __repr__(self) -> str:
        return f"<CurrentContext {self.name}>"

    __str__ = __repr__


# where `ScopedProvider._core` sits in its instances (and its subclasses': a subclass
# appends its own slots after the base's), for `_slot_at`
_SCOPED_CLASS: type = ScopedProvider
_CORE_OFFSET: int = _member_offset(vars(ScopedProvider)["_core"], ScopedProvider)
