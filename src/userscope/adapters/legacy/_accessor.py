"""Drop-in replacements for old global accessors: `accessor` and `async_accessor`."""

from __future__ import annotations

import inspect
import sys
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

from dependency_injector import providers

import userscope as us
from userscope.adapters.legacy._registry import (
    FALLBACK,
    REFUSED,
    SCOPED,
    LegacyMode,
    LegacyRegistry,
    check_mode,
    default_registry,
)

__all__ = [
    "AsyncLegacyAccessor",
    "LegacyAccessError",
    "LegacyAccessWarning",
    "LegacyAccessor",
    "accessor",
    "async_accessor",
]

T = TypeVar("T")

_OPEN = {
    us.Scope.USER: "`with sessions.user(ctx):` or any connection/request scope of that user",
    us.Scope.CONNECTION: "`async with sessions.connection(ctx):` or `sessions.request(ctx)`",
    us.Scope.REQUEST: "`async with sessions.request(ctx):`",
}


class LegacyAccessWarning(DeprecationWarning):
    """A legacy accessor was called outside a scope and fell back to the old singleton.

    Emitted by accessors in ``"warn"`` mode; the warning's location (what
    ``warnings`` shows, and ``WarningMessage.filename``/``lineno``) is the caller's
    line. Being a :class:`DeprecationWarning`, it is hidden by Python's default filters
    outside ``__main__`` and tests: show it with ``-W default::DeprecationWarning`` or
    ``warnings.simplefilter("default", LegacyAccessWarning)``. Call sites are recorded
    in the registry whatever the filters say.

    Attributes:
        accessor: name of the legacy accessor, e.g. ``"get_agent_websocket_bridge"``.
        provider: name of the scoped provider it stands for, e.g. ``"Container.bridge"``.
        required_scope: the scope level the provider needs.
        filename: the caller's file.
        lineno: the caller's line.
        function: the caller's qualified function name.

    Example:
        >>> import userscope as us
        >>> from userscope.adapters.legacy import LegacyAccessWarning
        >>> w = LegacyAccessWarning("get_bridge", "C.bridge", us.Scope.USER, "app.py", 3, "run")
        >>> (issubclass(LegacyAccessWarning, DeprecationWarning), w.lineno)
        (True, 3)
    """

    def __init__(
        self,
        accessor: str,
        provider: str,
        required_scope: us.Scope,
        filename: str,
        lineno: int,
        function: str,
    ) -> None:
        self.accessor = accessor
        self.provider = provider
        self.required_scope = required_scope
        self.filename = filename
        self.lineno = lineno
        self.function = function
        super().__init__(
            f"{accessor}() was called outside a {required_scope.name} scope (in {function}) and "
            f"fell back to the old instance that every user shares; call it inside a scope "
            f"(open one with {_OPEN[required_scope]}) or inject {provider} instead"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (
                self.accessor,
                self.provider,
                self.required_scope,
                self.filename,
                self.lineno,
                self.function,
            ),
        )


class LegacyAccessError(us.OutOfScopeError):
    """A legacy accessor in ``"error"`` mode was called outside a scope.

    An :class:`~userscope.OutOfScopeError` (so existing handlers catch it) whose hint
    names the accessor and the call site.

    Attributes:
        accessor: name of the legacy accessor.
        filename: the caller's file.
        lineno: the caller's line.
        function: the caller's qualified function name.
        provider: (inherited) the scoped provider's name.
        required_scope: (inherited) the level it needs.
        active_scope: (inherited) the innermost active level, or ``None``.
        hint: (inherited) the migration hint in the message.

    Example:
        >>> import userscope as us
        >>> from userscope.adapters.legacy import LegacyAccessError
        >>> err = LegacyAccessError("get_bridge", "C.bridge", us.Scope.USER, None,
        ...                         "app.py", 3, "run")
        >>> (isinstance(err, us.OutOfScopeError), err.accessor)
        (True, 'get_bridge')
    """

    def __init__(
        self,
        accessor: str,
        provider: str,
        required_scope: us.Scope,
        active_scope: us.Scope | None,
        filename: str,
        lineno: int,
        function: str,
    ) -> None:
        self.accessor = accessor
        self.filename = filename
        self.lineno = lineno
        self.function = function
        hint = (
            f"the legacy accessor {accessor}() is in 'error' mode and no longer falls back to "
            f"the old instance; the call at {filename}:{lineno} (in {function}) must run inside "
            f"a scope (open one with {_OPEN[required_scope]}) or inject {provider} instead"
        )
        super().__init__(provider, required_scope, active_scope, hint=hint)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (
                self.accessor,
                self.provider,
                self.required_scope,
                self.active_scope,
                self.filename,
                self.lineno,
                self.function,
            ),
        )


def _is_async_provider(provider: providers.Provider[Any]) -> bool:
    if provider.is_async_mode_enabled():
        return True
    provides = (
        getattr(provider, "provides", None) if isinstance(provider, us.ScopedProvider) else None
    )
    return inspect.iscoroutinefunction(provides) or inspect.isasyncgenfunction(provides)


class _BaseAccessor(Generic[T]):
    """State and checks shared by the sync and async accessors (internal)."""

    def __init__(
        self,
        provider: providers.Provider[T],
        *,
        name: str,
        fallback: Callable[[], Any] | None,
        mode: str,
        registry: LegacyRegistry | None,
    ) -> None:
        if not isinstance(provider, us.ScopedProvider | us.CurrentContext):
            raise TypeError(
                f"legacy.accessor() needs a userscope scoped provider (UserScoped, "
                f"ConnectionScoped, RequestScoped or CurrentContext), got {provider!r}; "
                "declare the object as a scoped provider in your container first"
            )
        if not isinstance(name, str) or not name.strip():
            raise ValueError(
                f"legacy.accessor() needs name= the old accessor's name, got {name!r}; it is how "
                "warnings and the report identify the accessor"
            )
        if fallback is not None and not callable(fallback):
            raise TypeError(
                f"fallback of legacy accessor {name!r} must be the old accessor (a callable "
                f"taking no arguments), got {fallback!r}"
            )
        checked = check_mode(mode)
        if checked == "warn" and fallback is None:
            raise ValueError(
                f"legacy accessor {name!r} in 'warn' mode needs fallback=<the old accessor>: "
                "outside a scope there would be nothing to fall back to; pass the old "
                "implementation, or use mode='error' once every call site runs in a scope"
            )
        if registry is not None and not isinstance(registry, LegacyRegistry):
            raise TypeError(f"registry must be a LegacyRegistry, got {registry!r}")
        self._provider = provider
        self._scope: us.Scope = provider.scope
        self._name = name
        self._fallback = fallback
        self._mode: LegacyMode = checked
        self._registry = default_registry() if registry is None else registry
        self.__name__ = self.__qualname__ = name
        self._registry._register(self)  # type: ignore[arg-type]

    # -- introspection --------------------------------------------------------------
    @property
    def name(self) -> str:
        """The old accessor's name, as given."""
        return self._name

    @property
    def provider(self) -> providers.Provider[T]:
        """The scoped provider resolved inside a scope."""
        return self._provider

    @property
    def provider_name(self) -> str:
        """The provider's name, e.g. ``"Container.bridge"``."""
        return str(getattr(self._provider, "name", repr(self._provider)))

    @property
    def scope(self) -> us.Scope:
        """The scope level the provider needs."""
        return self._scope

    @property
    def fallback(self) -> Callable[[], Any] | None:
        """The old accessor called outside a scope in ``"warn"`` mode."""
        return self._fallback

    @property
    def registry(self) -> LegacyRegistry:
        """Where this accessor records its call sites."""
        return self._registry

    @property
    def mode(self) -> LegacyMode:
        """``"warn"`` or ``"error"``; assignable (``"warn"`` needs a fallback)."""
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        checked = check_mode(value)
        if checked == "warn" and self._fallback is None:
            raise ValueError(
                f"cannot switch {self._name} to 'warn': no fallback to call outside a scope"
            )
        self._set_mode(checked)

    def _set_mode(self, mode: LegacyMode) -> None:
        self._mode = mode
        self._registry._mode_changed(self)  # type: ignore[arg-type]

    # -- the two paths ----------------------------------------------------------------
    def _in_scope(self) -> bool:
        if self._provider.last_overriding is not None:
            return True  # overrides win, as they do on the provider itself
        active = us.current_scope()
        return active is not None and active <= self._scope

    def _outside(self, caller: Any) -> LegacyAccessError | None:
        """Record an out-of-scope call; warn (``None``) or build the error to raise."""
        code = caller.f_code
        filename, lineno, function = code.co_filename, caller.f_lineno, code.co_qualname
        if self._mode == "error":
            self._registry._record(self._name, filename, lineno, function, REFUSED)
            return LegacyAccessError(
                self._name,
                self.provider_name,
                self._scope,
                us.current_scope(),
                filename,
                lineno,
                function,
            )
        self._registry._record(self._name, filename, lineno, function, FALLBACK)
        module_globals = caller.f_globals
        warnings.warn_explicit(
            LegacyAccessWarning(
                self._name, self.provider_name, self._scope, filename, lineno, function
            ),
            LegacyAccessWarning,
            filename,
            lineno,
            module=module_globals.get("__name__", "<string>"),
            registry=module_globals.setdefault("__warningregistry__", {}),
            module_globals=module_globals,
        )
        return None

    def _scoped(self, caller: Any) -> None:
        code = caller.f_code
        self._registry._record(
            self._name, code.co_filename, caller.f_lineno, code.co_qualname, SCOPED
        )

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self._name} -> {self.provider_name} "
            f"({self._scope.name}) mode={self._mode!r}>"
        )


class LegacyAccessor(_BaseAccessor[T]):
    """A drop-in replacement for an old zero-argument accessor; built by :func:`accessor`.

    Calling it returns the scoped instance inside a scope of the provider's level (or
    whatever overrides the provider); outside one it warns and calls the fallback
    (``"warn"`` mode) or raises :class:`LegacyAccessError` (``"error"`` mode). Every
    call is recorded by call site in :attr:`registry`.

    Example:
        >>> import userscope as us
        >>> from dependency_injector import containers
        >>> from userscope.adapters import legacy
        >>> class C(containers.DeclarativeContainer):
        ...     bridge = us.UserScoped(dict)
        >>> get_bridge = legacy.accessor(C.bridge, name="get_bridge", mode="error",
        ...                              registry=legacy.LegacyRegistry())
        >>> get_bridge.mode
        'error'
    """

    def __call__(self) -> T:
        caller = sys._getframe(1)
        try:
            if self._in_scope():
                self._scoped(caller)
                value: T = self._provider()
                return value
            error = self._outside(caller)
        finally:
            del caller
        if error is not None:
            raise error
        fallback = self._fallback
        assert fallback is not None  # guaranteed for "warn" mode at construction
        return fallback()  # type: ignore[no-any-return]


class AsyncLegacyAccessor(_BaseAccessor[T]):
    """The awaitable twin of :class:`LegacyAccessor`; built by :func:`async_accessor`.

    ``await get_x()`` gives the scoped instance inside a scope (the provider may be
    sync or async); outside one it warns when called (so the warning points at the
    caller's line) and awaits the fallback if it returns an awaitable (``"warn"``),
    or raises :class:`LegacyAccessError` when awaited (``"error"``).

    Example:
        >>> import userscope as us
        >>> from dependency_injector import containers
        >>> from userscope.adapters import legacy
        >>> async def open_client():
        ...     return {"client": True}
        >>> class C(containers.DeclarativeContainer):
        ...     client = us.UserScoped(open_client)
        >>> get_client = legacy.async_accessor(C.client, name="get_client", mode="error",
        ...                                    registry=legacy.LegacyRegistry())
        >>> get_client.scope.name
        'USER'
    """

    def __call__(self) -> Coroutine[Any, Any, T]:
        caller = sys._getframe(1)
        try:
            if self._in_scope():
                self._scoped(caller)
                return self._resolve()
            error = self._outside(caller)
        finally:
            del caller
        if error is not None:
            return _raise(error)
        return self._fall_back()

    async def _resolve(self) -> T:
        value: T = await self._provider.async_()
        return value

    async def _fall_back(self) -> T:
        fallback = self._fallback
        assert fallback is not None  # guaranteed for "warn" mode at construction
        result = fallback()
        if inspect.isawaitable(result):
            result = await result
        return result  # type: ignore[no-any-return]


async def _raise(error: BaseException) -> Any:
    raise error


def accessor(
    provider: providers.Provider[T],
    *,
    name: str,
    fallback: Callable[[], T] | None = None,
    mode: str = "warn",
    registry: LegacyRegistry | None = None,
) -> LegacyAccessor[T]:
    """Build a drop-in replacement for an old global accessor such as ``get_bridge()``.

    Inside a scope of the provider's level it resolves the provider (so overrides are
    honoured) and returns the scoped instance. Outside one:

    * ``"warn"``: emits :class:`LegacyAccessWarning` located at the caller's file and
      line, records the call site, and returns ``fallback()`` (the old singleton);
    * ``"error"``: records the call site and raises :class:`LegacyAccessError`, an
      :class:`~userscope.OutOfScopeError` whose hint names the accessor and the caller.

    For async providers or old ``async def`` accessors use :func:`async_accessor`.

    Args:
        provider: a ``UserScoped``/``ConnectionScoped``/``RequestScoped`` provider (or
            ``CurrentContext``).
        name: the old accessor's name, used in warnings, errors and the report.
        fallback: the old accessor, called outside a scope in ``"warn"`` mode.
        mode: ``"warn"`` (default) or ``"error"``.
        registry: where to record call sites; the process-wide default when omitted.

    Returns:
        A callable taking no arguments, to assign to the old accessor's name.

    Raises:
        ValueError: invalid ``mode``, empty ``name``, or ``"warn"`` without ``fallback``.
        TypeError: ``provider`` is not a userscope scoped provider, ``fallback`` is not
            callable, or either is async (use :func:`async_accessor`).

    Example:
        >>> import userscope as us
        >>> from dependency_injector import containers
        >>> from userscope.adapters import legacy
        >>> class Bridge: ...
        >>> class Container(containers.DeclarativeContainer):
        ...     bridge = us.UserScoped(Bridge)
        >>> _old_bridge = Bridge()
        >>> get_bridge = legacy.accessor(Container.bridge, name="get_bridge",
        ...                              fallback=lambda: _old_bridge,
        ...                              registry=legacy.LegacyRegistry())
        >>> with us.UserSessions().user(us.UserExecutionContext(user_id="a", thread_id="t")):
        ...     get_bridge() is _old_bridge
        False
    """
    if isinstance(provider, providers.Provider) and _is_async_provider(provider):
        raise TypeError(
            f"legacy.accessor({name!r}) got an async provider {provider!r}; its instance must "
            "be awaited: use legacy.async_accessor(...) and `await` the calls"
        )
    if inspect.iscoroutinefunction(fallback):
        raise TypeError(
            f"the fallback of legacy accessor {name!r} is a coroutine function; use "
            "legacy.async_accessor(...) and `await` the calls"
        )
    return LegacyAccessor(provider, name=name, fallback=fallback, mode=mode, registry=registry)


def async_accessor(
    provider: providers.Provider[T],
    *,
    name: str,
    fallback: Callable[[], T | Awaitable[T]] | None = None,
    mode: str = "warn",
    registry: LegacyRegistry | None = None,
) -> AsyncLegacyAccessor[T]:
    """Build the awaitable replacement of an old accessor: ``bridge = await get_bridge()``.

    Same rules as :func:`accessor`; the provider may be sync or async and the fallback
    may return a value or an awaitable (an old ``async def`` accessor). The scope check
    and the warning happen when the accessor is called, so the warning points at the
    caller's line; an ``"error"``-mode :class:`LegacyAccessError` is raised on ``await``.

    Args:
        provider: a userscope scoped provider (sync or async factory).
        name: the old accessor's name.
        fallback: the old accessor (sync or async), called outside a scope in ``"warn"``.
        mode: ``"warn"`` (default) or ``"error"``.
        registry: where to record call sites; the process-wide default when omitted.

    Returns:
        A callable taking no arguments that returns a coroutine.

    Raises:
        ValueError: invalid ``mode``, empty ``name``, or ``"warn"`` without ``fallback``.
        TypeError: ``provider`` is not a userscope scoped provider or ``fallback`` is
            not callable.

    Example:
        >>> import asyncio, userscope as us
        >>> from dependency_injector import containers
        >>> from userscope.adapters import legacy
        >>> async def open_client(ctx):
        ...     return f"client of {ctx.user_id}"
        >>> class Container(containers.DeclarativeContainer):
        ...     context = us.CurrentContext()
        ...     client = us.RequestScoped(open_client, context)
        >>> get_client = legacy.async_accessor(Container.client, name="get_client",
        ...                                    mode="error", registry=legacy.LegacyRegistry())
        >>> async def handler():
        ...     ctx = us.UserExecutionContext(user_id="a", thread_id="t")
        ...     async with us.UserSessions().request(ctx):
        ...         return await get_client()
        >>> asyncio.run(handler())
        'client of a'
    """
    return AsyncLegacyAccessor(provider, name=name, fallback=fallback, mode=mode, registry=registry)
