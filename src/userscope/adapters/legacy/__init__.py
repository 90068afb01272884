"""Legacy accessor shims: a staged way off global singletons.

Replace an old accessor with a shim that resolves the scoped provider inside a
scope and, while call sites are migrated, falls back to the old singleton with a
:class:`LegacyAccessWarning` pointing at the caller (``"warn"`` mode) or refuses
with an :class:`~userscope.OutOfScopeError` (``"error"`` mode). Every call is
recorded by call site; :func:`report` tells when an accessor can be flipped to
``"error"`` and its old code deleted. See ``docs/migration.md``.

Example:
    >>> import userscope as us
    >>> from dependency_injector import containers
    >>> from userscope.adapters import legacy
    >>> class Bridge: ...
    >>> _bridge = Bridge()
    >>> def _old_get_bridge():
    ...     return _bridge
    >>> class Container(containers.DeclarativeContainer):
    ...     bridge = us.UserScoped(Bridge)
    >>> registry = legacy.LegacyRegistry()
    >>> get_bridge = legacy.accessor(Container.bridge, name="get_bridge",
    ...                              fallback=_old_get_bridge, registry=registry)
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     old = get_bridge()  # outside a scope: warns and falls back
    >>> (old is _bridge, caught[0].category.__name__)
    (True, 'LegacyAccessWarning')
    >>> registry.report().accessor("get_bridge").fallback
    1
"""

from __future__ import annotations

import os

from userscope.adapters.legacy._accessor import (
    AsyncLegacyAccessor,
    LegacyAccessError,
    LegacyAccessor,
    LegacyAccessWarning,
    accessor,
    async_accessor,
)
from userscope.adapters.legacy._registry import (
    AccessorReport,
    CallSite,
    LegacyMode,
    LegacyRegistry,
    LegacyReport,
    check_mode,
    default_registry,
)

__all__ = [
    "AccessorReport",
    "AsyncLegacyAccessor",
    "CallSite",
    "LegacyAccessError",
    "LegacyAccessWarning",
    "LegacyAccessor",
    "LegacyMode",
    "LegacyRegistry",
    "LegacyReport",
    "accessor",
    "async_accessor",
    "check_mode",
    "default_registry",
    "format_report",
    "report",
    "reset",
    "set_mode",
]


def report(registry: LegacyRegistry | None = None) -> LegacyReport:
    """Per accessor and call site: how many calls were scoped, fell back or were refused.

    Args:
        registry: the registry to read; the process-wide default when omitted.

    Example:
        >>> from userscope.adapters import legacy
        >>> isinstance(legacy.report(), legacy.LegacyReport)
        True
    """
    return (registry or default_registry()).report()


def format_report(
    registry: LegacyRegistry | None = None,
    *,
    relative_to: str | os.PathLike[str] | None = None,
) -> str:
    """:func:`report` as a text table, with the next migration step per accessor.

    Args:
        registry: the registry to read; the process-wide default when omitted.
        relative_to: show files relative to this directory (default: the working directory).

    Example:
        >>> from userscope.adapters import legacy
        >>> print(legacy.format_report(legacy.LegacyRegistry()))
        no legacy accessors registered
    """
    return (registry or default_registry()).report().format(relative_to=relative_to)


def reset(registry: LegacyRegistry | None = None) -> None:
    """Forget the recorded calls (accessors and modes stay), e.g. between test runs.

    Example:
        >>> from userscope.adapters import legacy
        >>> legacy.reset(legacy.LegacyRegistry())
    """
    (registry or default_registry()).reset()


def set_mode(mode: str, *, registry: LegacyRegistry | None = None) -> None:
    """Switch every accessor of a registry to ``"warn"`` or ``"error"`` (all or nothing).

    Typically at start-up from configuration:
    ``legacy.set_mode(os.environ.get("LEGACY_ACCESSOR_MODE", "warn"))``.

    Raises:
        ValueError: invalid mode, or ``"warn"`` for an accessor without a fallback.

    Example:
        >>> from userscope.adapters import legacy
        >>> legacy.set_mode("error", registry=legacy.LegacyRegistry())
    """
    (registry or default_registry()).set_mode(mode)
