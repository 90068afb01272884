"""`validate(container)`: find captive dependencies before any request is served."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dependency_injector import providers

from userscope.container._scope import Scope
from userscope.errors import CaptiveDependencyError

__all__ = [
    "captive_paths",
    "captive_routes",
    "collect",
    "label",
    "provider_paths",
    "validate",
]

_APP = 4  # lifetime of caching dependency-injector providers: the application
_CACHING = (providers.BaseSingleton, providers.BaseResource)


def _level(provider: Any) -> int | None:
    """Lifetime of a provider, or ``None`` for transient providers (followed through)."""
    scope = getattr(type(provider), "scope", None)
    if isinstance(scope, Scope):
        return int(scope)
    if isinstance(provider, _CACHING):
        return _APP
    if isinstance(provider, providers.Object) and providers.is_provider(provider.provides):
        return _APP
    return None


def _effective(provider: Any) -> Any:
    """The provider actually called: the last overriding one, followed to the end."""
    seen: set[int] = set()
    while provider.last_overriding is not None and id(provider) not in seen:
        seen.add(id(provider))
        provider = provider.last_overriding
    return provider


def _dependencies(provider: Any) -> Iterator[Any]:
    if isinstance(provider, providers.Delegate):
        return  # hands out the provider itself; resolution happens later, in scope
    overriding = set(map(id, provider.overridden))
    for dep in provider.related:
        if id(dep) not in overriding:
            yield dep


def _collect(container: Any, prefix: str, names: dict[int, str], roots: list[Any]) -> None:
    for attr, provider in container.providers.items():
        if id(provider) in names:
            continue
        names[id(provider)] = f"{prefix}.{attr}"
        roots.append(provider)
        if isinstance(provider, providers.Container):
            _collect(provider.container, f"{prefix}.{attr}", names, roots)


def _container_name(container: Any) -> str:
    if isinstance(container, type):
        return container.__name__
    parent = getattr(container, "declarative_parent", None)
    return parent.__name__ if parent is not None else type(container).__name__


def collect(container: Any) -> tuple[list[Any], dict[int, str]]:
    """Every provider declared in ``container`` (sub-containers included) and its name."""
    names: dict[int, str] = {}
    roots: list[Any] = []
    _collect(container, _container_name(container), names, roots)
    return roots, names


def label(provider: Any, names: dict[int, str]) -> str:
    """``Container.attr (Kind)``, or ``<inline Kind(factory)> (Kind)`` for an unnamed one."""
    name = names.get(id(provider))
    if name is None:
        provides = getattr(provider, "provides", None)
        inner = getattr(provides, "__qualname__", None)
        if inner is None or providers.is_provider(provides):
            name = f"<inline {type(provider).__name__}>"
        else:
            name = f"<inline {type(provider).__name__}({inner})>"
    return f"{name} ({type(provider).__name__})"


def captive_routes(container: Any) -> list[tuple[tuple[Any, ...], str]]:
    """Every captive dependency path: its providers, root first, and its text.

    The one traversal behind :func:`validate`, the first-resolve guard and the graph.
    """
    roots, names = collect(container)
    return _walk(roots, names)


def captive_paths(container: Any) -> tuple[str, ...]:
    """Every captive dependency path of ``container`` as text (sorted; empty when sound)."""
    return tuple(sorted(text for _, text in captive_routes(container)))


def provider_paths(provider: Any, name: str) -> tuple[str, ...]:
    """Captive dependency paths that start at ``provider`` itself (no container known)."""
    return tuple(sorted(text for _, text in _walk([provider], {id(provider): name})))


def _walk(roots: list[Any], names: dict[int, str]) -> list[tuple[tuple[Any, ...], str]]:
    paths: list[tuple[tuple[Any, ...], str]] = []
    reported: set[tuple[int, int]] = set()
    for root in roots:
        root = _effective(root)
        root_level = _level(root)
        if root_level is None or root_level == int(Scope.REQUEST):
            continue
        stack: list[tuple[Any, tuple[Any, ...]]] = [(dep, (root,)) for dep in _dependencies(root)]
        seen: set[int] = set()
        while stack:
            node, trail = stack.pop()
            effective = _effective(node)
            if effective is not node:  # show the overridden provider on the path too
                trail, node = (*trail, node), effective
            if id(node) in seen:
                continue
            seen.add(id(node))
            level = _level(node)
            if level is None:
                stack.extend((dep, (*trail, node)) for dep in _dependencies(node))
                continue
            if level < root_level and (id(root), id(node)) not in reported:
                reported.add((id(root), id(node)))
                path = (*trail, node)
                paths.append((path, " -> ".join(label(p, names) for p in path)))
    return paths


def validate(container: Any) -> None:
    """Check a container for captive dependencies; raise one error listing every path.

    A captive dependency is a longer-lived provider that depends, directly or through
    transient providers (``Factory``, ``Callable``, ``Coroutine``, ``List``, ``Dict``,
    ``.provided`` chains, overridden ``Dependency`` providers, ``providers.Container``
    sub-containers), on a provider of a narrower scope: any caching dependency-injector
    provider (``Singleton`` family, ``Resource``, ``Object`` holding a provider) on a
    scoped provider or on :class:`~userscope.CurrentContext`; a ``UserScoped`` on a
    ``ConnectionScoped`` or ``RequestScoped``; a ``ConnectionScoped`` on a
    ``RequestScoped``. Overrides in force are taken into account.

    Args:
        container: a ``DeclarativeContainer`` class or a container instance.

    Raises:
        CaptiveDependencyError: with ``paths`` such as
            ``"Container.llm (Singleton) -> Container.registry (UserScoped)"``.

    Example:
        >>> import userscope as us
        >>> from dependency_injector import containers, providers
        >>> class C(containers.DeclarativeContainer):
        ...     registry = us.UserScoped(dict)
        ...     llm = providers.Singleton(dict, registry=registry)
        >>> try:
        ...     us.validate(C)
        ... except us.CaptiveDependencyError as err:
        ...     print(err.paths[0])
        C.llm (Singleton) -> C.registry (UserScoped)
    """
    if not hasattr(container, "providers"):
        raise TypeError(
            f"validate() takes a dependency-injector container class or instance, got "
            f"{type(container).__name__}"
        )
    paths = captive_paths(container)
    from userscope.container import _guard  # imported here: _guard imports this module

    _guard.remember(container, paths)
    if paths:
        raise CaptiveDependencyError(paths)
