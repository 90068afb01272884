"""Typed, scoped overrides for tests: `override(provider, value_or_factory, scoped=...)`."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, cast, final, overload

from dependency_injector import providers

from userscope.container import _guard
from userscope.providers import ScopedProvider

__all__ = ["Override", "override"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_UNSET: Any = object()


@final
class _AnyInjection:
    """Typing aid (internal): ``Callable[[_AnyInjection], T]`` matches a ``Provider[T]``.

    Providers are called with any injections, so a provider of ``T`` fits the value slot of
    :func:`override`; the callable also moves the value to mypy's second inference pass, so
    ``T`` comes from the overridden provider alone and a wrong value is reported as
    ``Argument 2 to "override" has incompatible type "X"; expected "T | ..."``.
    """


def _provider_name(provider: providers.Provider[Any]) -> str:
    name = getattr(provider, "name", None)
    return name if isinstance(name, str) else repr(provider)


def _is_async_target(provider: providers.Provider[Any]) -> bool:
    if isinstance(provider, ScopedProvider) and provider._is_async:
        return True
    return provider.is_async_mode_enabled()


class Override(Generic[T]):
    """An override of one provider, active inside ``with`` / ``async with`` or a decorated test.

    Built by :func:`override`; each activation installs a fresh replacement on the provider
    and removes exactly that replacement on exit (also when the body raised), so overrides
    may nest and may even be left out of order.

    Attributes:
        provider: the overridden provider.
        scoped: whether the replacement keeps the provider's scope (``scoped=True``).

    Example:
        >>> import userscope as us
        >>> from userscope.testing import override
        >>> from dependency_injector import containers
        >>> class C(containers.DeclarativeContainer):
        ...     greeting = us.RequestScoped(str, "hello")
        >>> with override(C.greeting, "stub"):
        ...     C.greeting()
        'stub'
    """

    def __init__(
        self,
        provider: providers.Provider[T],
        replacement: Any,
        *,
        scoped: bool | None,
    ) -> None:
        self.provider = provider
        self.scoped = bool(scoped)
        self._replacement = replacement
        self._active: list[providers.Provider[Any]] = []
        self._mode: Literal["provider", "value", "scoped", "factory"]
        if scoped is None:
            self._mode = "provider" if providers.is_provider(replacement) else "value"
            return
        if not callable(replacement):
            raise TypeError(
                f"override({_provider_name(provider)}, ..., scoped={scoped}) needs a factory "
                f"(a class or callable taking no arguments), got {replacement!r}; to share a "
                "ready value drop the `scoped=` argument"
            )
        if scoped:
            if not isinstance(provider, ScopedProvider):
                raise TypeError(
                    f"scoped=True needs a UserScoped, ConnectionScoped or RequestScoped provider; "
                    f"{_provider_name(provider)} is a {type(provider).__name__}. Use "
                    "scoped=False for a factory called on every resolve, or pass a value"
                )
            self._mode = "scoped"
        else:
            if inspect.isgeneratorfunction(replacement) or inspect.isasyncgenfunction(replacement):
                raise TypeError(
                    f"the generator factory {replacement!r} has a cleanup, which only runs "
                    "when the instance belongs to a scope: pass scoped=True"
                )
            self._mode = "factory"

    # -- building and removing replacements -------------------------------------------
    def _build(self) -> providers.Provider[Any]:
        provider, replacement = self.provider, self._replacement
        built: providers.Provider[Any]
        if self._mode == "provider":
            return cast("providers.Provider[Any]", replacement)
        if self._mode == "scoped":
            assert isinstance(provider, ScopedProvider)
            scoped = type(provider)(replacement)
            scoped._us_name = f"{provider.name} (override)"
            if provider._is_async:
                scoped._is_async = True
                scoped.enable_async_mode()
            return scoped
        built = (
            providers.Object(replacement)
            if self._mode == "value"
            else (providers.Factory(replacement))
        )
        if _is_async_target(provider):
            built.enable_async_mode()
        return built

    def _install(self) -> providers.Provider[Any]:
        built = self._build()
        self.provider.override(built)
        _guard.invalidate()  # validated again at the next scoped creation
        return built

    def _remove(self, built: providers.Provider[Any]) -> None:
        _guard.invalidate()  # validated again at the next scoped creation
        provider = self.provider
        if provider.last_overriding is built:
            provider.reset_last_overriding()
            return
        others = [p for p in provider.overridden if p is not built]
        if len(others) == len(provider.overridden):
            return  # already removed (e.g. by reset_override() in the body)
        provider.reset_override()
        for other in others:
            provider.override(other)

    # -- context manager ----------------------------------------------------------------
    def __enter__(self) -> Override[T]:
        self._active.append(self._install())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._remove(self._active.pop())

    async def __aenter__(self) -> Override[T]:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- decorator --------------------------------------------------------------------
    def __call__(self, fn: F) -> F:
        """Decorate a sync or async function: the override is active during each call.

        Example:
            >>> import userscope as us
            >>> from userscope.testing import override
            >>> from dependency_injector import containers
            >>> class C(containers.DeclarativeContainer):
            ...     greeting = us.RequestScoped(str, "hello")
            >>> @override(C.greeting, "stub")
            ... def check():
            ...     return C.greeting()
            >>> check()
            'stub'
        """
        if not callable(fn):
            raise TypeError(f"override(...) decorates a function, got {fn!r}")
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self:
                    return await fn(*args, **kwargs)

            return cast("F", async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return cast("F", wrapper)

    def __repr__(self) -> str:
        return f"<Override of {_provider_name(self.provider)} ({self._mode})>"


@overload
def override(
    provider: providers.Provider[T], value: T | Callable[[_AnyInjection], T], /
) -> Override[T]: ...
@overload
def override(
    provider: providers.Provider[T], factory: Callable[[], T], /, *, scoped: bool
) -> Override[T]: ...
@overload
def override(
    provider: providers.Provider[T],
    factory: Callable[[], Iterator[T]],
    /,
    *,
    scoped: Literal[True],
) -> Override[T]: ...
@overload
def override(
    provider: providers.Provider[T],
    factory: Callable[[], AsyncIterator[T]],
    /,
    *,
    scoped: Literal[True],
) -> Override[T]: ...
@overload
def override(
    provider: providers.Provider[T], factory: Callable[[], Awaitable[T]], /, *, scoped: bool
) -> Override[T]: ...
def override(provider: Any, value: Any, /, *, scoped: Any = _UNSET) -> Override[Any]:
    """Override ``provider`` for a block, a test function, or an async test; typed.

    Three forms:

    * ``override(provider, value)``: every resolve returns ``value`` (shared by every
      scope and user). A dependency-injector provider is used as the replacement.
    * ``override(provider, factory, scoped=True)``: the replacement keeps the provider's
      scope: one instance per scope of its level, cached there, cleaned up when that
      scope exits (generator and async-generator factories run their cleanup).
    * ``override(provider, factory, scoped=False)``: ``factory()`` on every resolve.

    The result is a context manager (``with`` and ``async with``) and a decorator of
    sync and async functions. Each activation installs its own replacement and removes it
    on exit, even when the body raised. Works on class-level providers
    (``Container.agent``: seen by the class and by containers created later) and on
    instance-level ones (``container.agent``: only that container), exactly like
    dependency-injector's own overriding.

    Typing: the value must be a ``T`` and the factory must build a ``T`` where the provider
    is a ``Provider[T]``; ``override(Container.agent, NotAnAgent())`` is a mypy error
    (plain ``provider.override(...)`` accepts anything).

    Args:
        provider: the provider to override.
        value: the shared value, a replacement provider, or with ``scoped=`` a factory
            taking no arguments.
        scoped: with a factory: keep the provider's scope (``True``) or build on every
            resolve (``False``). Omit it to pass a value.

    Raises:
        TypeError: ``scoped=`` with something that is not callable, ``scoped=True`` on a
            provider that is not scoped, or a generator factory without ``scoped=True``.

    Example:
        >>> import userscope as us
        >>> from userscope.testing import override
        >>> from dependency_injector import containers
        >>> class C(containers.DeclarativeContainer):
        ...     notes = us.RequestScoped(list)
        >>> sessions = us.UserSessions()
        >>> ctx = us.UserExecutionContext(user_id="alice", thread_id="t-1")
        >>> with override(C.notes, lambda: ["stub"], scoped=True):
        ...     with sessions.request(ctx):
        ...         C.notes() is C.notes(), C.notes()
        (True, ['stub'])
    """
    if not providers.is_provider(provider):
        raise TypeError(
            f"override() needs a dependency-injector provider as its first argument, got "
            f"{provider!r}; pass e.g. `Container.agent`, not `Container.agent()`"
        )
    return Override(provider, value, scoped=None if scoped is _UNSET else bool(scoped))
