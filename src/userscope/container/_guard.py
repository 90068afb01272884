"""Validation that cannot be forgotten: creating a scoped instance validates its container.

The first time a scoped provider creates an instance (and the first time
:class:`~userscope.CurrentContext` resolves), the container(s) the provider belongs to
are validated like :func:`~userscope.validate` does; a captive dependency raises
:class:`~userscope.CaptiveDependencyError` before any instance exists that a longer-lived
provider could capture. The result is remembered per container and *generation*: a new
generation starts whenever a userscope provider is overridden or its overrides are reset,
whenever ``userscope.testing.override`` installs or removes an override, and whenever
:func:`invalidate` is called. Once a provider passed in the current generation, the check
costs its creation path one identity compare (``provider._us_guard is GENERATION.token``;
the creation protocol keeps its own copy of the token, told of each new generation through
:func:`on_generation`, so compiled that is a compare of two C pointers); cache hits never
reach it.

How a provider knows its containers (its *anchors*, ``provider._us_links``):

* a declarative container class: ``__set_name__`` records the class that declares it; its
  subclasses (which inherit the same provider object) are validated with it;
* a container instance, a ``copy.deepcopy`` of a container, and a ``providers.Container``
  sub-container: dependency-injector builds them by deep-copying providers, and the copy
  links to the copied container's ``Self`` provider (the one dependency-injector points at
  the new container);
* any container given to :func:`~userscope.validate` (or to the FastAPI ``install``):
  its providers are linked to it.

A container that is a ``providers.Container`` sub-container is validated through its
outermost parent, so a parent's singleton over a sub-container's scoped provider is seen.

What the guard cannot see (documented in docs/concepts.md):

* a plain callable that closes over a provider (``providers.Singleton(lambda:
  Holder(Container.agent()))``): there is no dependency edge to follow;
* an override of a plain dependency-injector provider (``container.llm.override(...)``)
  made with dependency-injector's own API while no userscope provider is overridden: it
  starts no new generation (call :func:`~userscope.validate` after it, or use
  ``userscope.testing.override``, which does);
* providers added to a container (``container.x = ...``) after its scoped providers were
  first created, until the next generation;
* an override made while a scope is open, against an instance that scope already holds:
  the check runs when an instance is created, so it applies from the next creation;
* a scoped provider that belongs to no container it can find (e.g. assigned to a
  ``DynamicContainer`` that was never validated): only its own dependencies are checked.
"""

from __future__ import annotations

import copy
import threading
import weakref
from collections.abc import Callable
from typing import Any

from dependency_injector import providers

from userscope.container._validate import captive_paths, provider_paths
from userscope.errors import CaptiveDependencyError

__all__ = [
    "GENERATION",
    "Generation",
    "check",
    "copied_links",
    "invalidate",
    "link_owner",
    "on_generation",
    "remember",
]


class Generation:
    """The current validation generation: a fresh ``token`` object per generation."""

    __slots__ = ("token",)

    def __init__(self) -> None:
        self.token: object = object()


#: the current generation (the creation protocol compares against its copy of the token,
#: see :func:`on_generation`)
GENERATION = Generation()

_lock = threading.Lock()
# Serializes new generations: a new token and what the listeners are told of it change
# together, so a listener's copy is never left on an older token than GENERATION's.
_generation_lock = threading.Lock()
_listeners: list[Callable[[object], None]] = []  # told of each new generation's token
# container -> (token, fingerprint, captive paths) of its last validation
_records: weakref.WeakKeyDictionary[Any, tuple[object, tuple[int, ...], tuple[str, ...]]] = (
    weakref.WeakKeyDictionary()
)


def invalidate() -> None:
    """Start a new generation: every container is validated again at its next creation.

    Called by the userscope providers' ``override`` / ``reset_override`` /
    ``reset_last_overriding`` and by ``userscope.testing.override``; call it yourself
    after overriding plain dependency-injector providers with their own API if you do not
    call :func:`~userscope.validate` afterwards.
    """
    with _generation_lock:
        token = GENERATION.token = object()
        for listener in _listeners:
            listener(token)


def on_generation(listener: Callable[[object], None]) -> None:
    """Call ``listener(token)`` now and with each new generation's token.

    The creation protocol keeps its copy of ``GENERATION.token`` this way (compiled, a C
    global it compares by address). Listeners run under a lock that orders generations:
    they must only store the token.

    Example:
        >>> from userscope.container import _guard
        >>> seen = []
        >>> _guard.on_generation(seen.append)
        >>> _guard.invalidate()
        >>> seen[-1] is _guard.GENERATION.token
        True
        >>> _guard._listeners.remove(seen.append)
    """
    with _generation_lock:
        _listeners.append(listener)
        listener(GENERATION.token)


def link_owner(provider: Any, owner: Any) -> None:
    """Record ``owner`` (a container class or a container's ``Self``) as an anchor."""
    links: tuple[Any, ...] = getattr(provider, "_us_links", ())
    if all(anchor is not owner for anchor in links):
        provider._us_links = (*links, owner)


def copied_links(links: tuple[Any, ...], memo: dict[int, Any]) -> tuple[Any, ...]:
    """The anchors of a deep copy of a provider whose anchors are ``links``.

    A container class becomes the ``Self`` providers of it and its subclasses, copied into
    ``memo`` now: when the copy is part of instantiating one of them, dependency-injector
    reuses that very ``Self`` copy and points it at the new instance. An instance's
    ``Self`` is copied along only when the instance itself is being copied.
    """
    out: list[Any] = []
    for anchor in links:
        if isinstance(anchor, type):
            for cls in (anchor, *_subclasses(anchor)):
                own = vars(cls).get("__self__")
                if isinstance(own, providers.Self):
                    out.append(copy.deepcopy(own, memo))
        elif isinstance(anchor, providers.Self):
            container = _container_of(anchor)
            if container is not None and id(container) in memo:
                out.append(copy.deepcopy(anchor, memo))
    return tuple(out)


def check(provider: Any) -> None:
    """Validate the containers of ``provider`` for the current generation, once.

    Raises:
        CaptiveDependencyError: one of its containers has a captive dependency.
    """
    token = GENERATION.token
    roots = _roots(provider)
    if roots:
        for root in roots:
            _check_root(root, token)
    else:
        paths = provider_paths(provider, getattr(provider, "name", repr(provider)))
        if paths:
            raise CaptiveDependencyError(paths)
    provider._us_guard = token


def remember(container: Any, paths: tuple[str, ...]) -> None:
    """Record an explicit :func:`~userscope.validate` result and adopt the container's
    userscope providers (they are linked to it from now on).

    Starts a new generation, so that providers which passed before this call meet the
    recorded result (e.g. a plain override made since then) at their next creation.
    """
    invalidate()
    with _lock:
        _records[container] = (GENERATION.token, _fingerprint(container), paths)
    anchor = container if isinstance(container, type) else getattr(container, "__self__", None)
    if anchor is None:
        return
    for provider in getattr(container, "providers", {}).values():
        if hasattr(provider, "_us_links"):
            link_owner(provider, anchor)


# -- internals ---------------------------------------------------------------------------


def _check_root(root: Any, token: object) -> None:
    fingerprint = _fingerprint(root)
    with _lock:
        record = _records.get(root)
    if record is not None and record[0] is token and record[1] == fingerprint:
        paths = record[2]
    else:
        paths = captive_paths(root)
        with _lock:
            _records[root] = (token, fingerprint, paths)
    if paths:
        raise CaptiveDependencyError(paths)


def _fingerprint(container: Any) -> tuple[int, ...]:
    return tuple(map(id, getattr(container, "providers", {}).values()))


def _roots(provider: Any) -> list[Any]:
    """The outermost containers that hold ``provider``, each once."""
    roots: dict[int, Any] = {}
    for anchor in getattr(provider, "_us_links", ()):
        if isinstance(anchor, type):
            candidates: list[Any] = [anchor, *_subclasses(anchor)]
        else:
            container = _container_of(anchor)
            candidates = [] if container is None else [container]
        for container in candidates:
            if _holds(container, provider):
                root = _outermost(container)
                roots.setdefault(id(root), root)
    return list(roots.values())


def _container_of(anchor: Any) -> Any:
    try:
        container = anchor()
    except Exception:  # an overridden or broken Self: no container to validate
        return None
    return container if hasattr(container, "providers") else None


def _holds(container: Any, provider: Any) -> bool:
    return any(p is provider for p in getattr(container, "providers", {}).values())


def _outermost(container: Any) -> Any:
    """Follow ``providers.Container`` sub-containers up to the container that declares them."""
    seen: set[int] = set()
    while id(container) not in seen:
        seen.add(id(container))
        parent = vars(container).get("parent") if not isinstance(container, type) else None
        if not isinstance(parent, providers.Container):
            break
        owner = parent.parent
        if owner is None or not hasattr(owner, "providers"):
            break
        container = owner
    return container


def _subclasses(cls: type) -> list[type]:
    found: list[type] = []
    stack: list[type] = list(cls.__subclasses__())
    while stack:
        sub = stack.pop()
        if sub not in found:
            found.append(sub)
            stack.extend(sub.__subclasses__())
    return found
