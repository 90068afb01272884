"""Call-site statistics of the legacy accessor shims: `LegacyRegistry` and its report.

The registry is application-level migration telemetry (which line of code still calls
an old accessor, and whether it did so inside a scope), not per-user state: one
process-wide default registry is used unless an accessor is given its own.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal, get_args

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from userscope.adapters.legacy._accessor import _BaseAccessor

__all__ = [
    "AccessorReport",
    "CallSite",
    "LegacyMode",
    "LegacyRegistry",
    "LegacyReport",
    "check_mode",
    "default_registry",
]

LegacyMode = Literal["warn", "error"]
"""How a legacy accessor behaves outside a scope: fall back with a warning, or raise."""

_MODES: tuple[str, ...] = get_args(LegacyMode)

# Index of each outcome in a call site's counters.
SCOPED, FALLBACK, REFUSED = 0, 1, 2


def check_mode(mode: object) -> LegacyMode:
    """Return ``mode`` if it is a valid :data:`LegacyMode`, else raise ``ValueError``.

    Example:
        >>> from userscope.adapters.legacy import check_mode
        >>> check_mode("error")
        'error'
    """
    if isinstance(mode, str) and mode in _MODES:
        return mode  # type: ignore[return-value]
    raise ValueError(
        f"invalid legacy accessor mode {mode!r}; use 'warn' (fall back to the old singleton "
        "with a LegacyAccessWarning) or 'error' (raise OutOfScopeError)"
    )


class CallSite(BaseModel):
    """What one line of code did with one legacy accessor.

    Attributes:
        accessor: name of the legacy accessor that was called.
        filename: the caller's file, as Python reports it (``co_filename``).
        lineno: the caller's line.
        function: the caller's qualified function name (``"<module>"`` at module level).
        scoped: calls made inside a scope of the provider's level (or while it was
            overridden): they got the scoped instance.
        fallback: calls made outside a scope in ``"warn"`` mode: they got the old singleton.
        refused: calls made outside a scope in ``"error"`` mode: they raised.

    Example:
        >>> from userscope.adapters.legacy import CallSite
        >>> site = CallSite(accessor="get_bridge", filename="app/ws.py", lineno=14,
        ...                 function="handle", scoped=3, fallback=1, refused=0)
        >>> (site.location, site.calls)
        ('app/ws.py:14', 4)
    """

    model_config = ConfigDict(frozen=True)

    accessor: str
    filename: str
    lineno: int
    function: str
    scoped: int
    fallback: int
    refused: int

    @property
    def location(self) -> str:
        """``filename:lineno``."""
        return f"{self.filename}:{self.lineno}"

    @property
    def calls(self) -> int:
        """All calls from this site."""
        return self.scoped + self.fallback + self.refused


class AccessorReport(BaseModel):
    """Statistics of one legacy accessor over all its call sites.

    Attributes:
        name: the accessor's name, e.g. ``"get_agent_websocket_bridge"``.
        provider: the scoped provider it resolves, e.g. ``"Container.bridge"``.
        scope: the provider's scope level name (``"USER"``, ``"CONNECTION"``, ``"REQUEST"``).
        mode: the accessor's current mode.
        sites: one entry per call site, sorted by file and line.

    Example:
        >>> from userscope.adapters.legacy import AccessorReport
        >>> AccessorReport(name="get_bridge", provider="C.bridge", scope="USER",
        ...                mode="warn", sites=()).next_step
        'no calls recorded yet'
    """

    model_config = ConfigDict(frozen=True)

    name: str
    provider: str
    scope: str
    mode: LegacyMode
    sites: tuple[CallSite, ...]

    @property
    def scoped(self) -> int:
        """Calls that got the scoped instance."""
        return sum(site.scoped for site in self.sites)

    @property
    def fallback(self) -> int:
        """Calls that fell back to the old singleton."""
        return sum(site.fallback for site in self.sites)

    @property
    def refused(self) -> int:
        """Calls that raised ``OutOfScopeError`` in ``"error"`` mode."""
        return sum(site.refused for site in self.sites)

    @property
    def ready_for_error(self) -> bool:
        """Whether it was called and no call fell back or was refused: flip to ``"error"``."""
        return self.scoped > 0 and self.fallback == 0 and self.refused == 0

    @property
    def next_step(self) -> str:
        """What the migration should do next with this accessor, in a few words."""
        bad = [site for site in self.sites if site.fallback or site.refused]
        if bad:
            what = "fell back" if self.mode == "warn" else "raised"
            return (
                f"fix {len(bad)} call site{'s' if len(bad) != 1 else ''} that {what}: "
                f"open a scope there or inject {self.provider}"
            )
        if not self.sites:
            return "no calls recorded yet"
        if self.mode == "warn":
            return "every call was scoped: flip to mode='error'"
        return "no fallback: delete the old singleton and the fallback"


class LegacyReport(BaseModel):
    """Per accessor and call site: how many calls were scoped, fell back or were refused.

    Returned by :func:`~userscope.adapters.legacy.report` and
    :meth:`LegacyRegistry.report`.

    Attributes:
        accessors: one entry per accessor name, sorted by name.

    Example:
        >>> from userscope.adapters.legacy import LegacyRegistry
        >>> LegacyRegistry().report().accessors
        ()
    """

    model_config = ConfigDict(frozen=True)

    accessors: tuple[AccessorReport, ...]

    @property
    def sites(self) -> tuple[CallSite, ...]:
        """Every call site of every accessor."""
        return tuple(site for accessor in self.accessors for site in accessor.sites)

    def accessor(self, name: str) -> AccessorReport:
        """The entry of the accessor called ``name``.

        Raises:
            KeyError: no accessor of that name is registered; the message lists the known ones.
        """
        for entry in self.accessors:
            if entry.name == name:
                return entry
        known = ", ".join(entry.name for entry in self.accessors) or "none"
        raise KeyError(f"no legacy accessor named {name!r} in this report (known: {known})")

    def format(self, *, relative_to: str | os.PathLike[str] | None = None) -> str:
        """Render as a text table: one line per accessor, then one per call site.

        Args:
            relative_to: show file names relative to this directory when they are
                below it; the current working directory when omitted.

        Example:
            >>> from userscope.adapters.legacy import LegacyRegistry
            >>> print(LegacyRegistry().report().format())
            no legacy accessors registered
        """
        if not self.accessors:
            return "no legacy accessors registered"
        base = os.path.abspath(os.fspath(relative_to) if relative_to is not None else os.curdir)
        header = ("accessor / call site", "mode", "scoped", "fallback", "refused", "next step")
        rows: list[tuple[str, ...]] = []
        for entry in self.accessors:
            rows.append(
                (
                    f"{entry.name} -> {entry.provider} ({entry.scope})",
                    entry.mode,
                    str(entry.scoped),
                    str(entry.fallback),
                    str(entry.refused),
                    entry.next_step,
                )
            )
            for site in entry.sites:
                where = f"{_shorten(site.filename, base)}:{site.lineno} in {site.function}"
                rows.append(
                    (f"  {where}", "", str(site.scoped), str(site.fallback), str(site.refused), "")
                )
        widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]
        lines = []
        for row in (header, *rows):
            cells = [
                row[0].ljust(widths[0]),
                row[1].ljust(widths[1]),
                *(row[i].rjust(widths[i]) for i in (2, 3, 4)),
                row[5],
            ]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)


def _shorten(filename: str, base: str) -> str:
    try:
        path = os.path.abspath(filename)
        if os.path.commonpath([path, base]) == base:
            return os.path.relpath(path, base)
    except ValueError:  # different drives, or not a path at all
        pass
    return filename


class LegacyRegistry:
    """Where legacy accessors record their call sites; one process-wide default exists.

    Thread-safe. Pass ``registry=LegacyRegistry()`` to an accessor to keep its
    statistics apart (tests do); use :meth:`reset` to start counting afresh.
    Accessors are identified by name: two accessors with the same name in one
    registry share their statistics. The report lists the live accessors and those
    whose calls are still counted (until :meth:`reset`).

    Example:
        >>> import userscope as us
        >>> from dependency_injector import containers
        >>> from userscope.adapters import legacy
        >>> class C(containers.DeclarativeContainer):
        ...     bridge = us.UserScoped(object)
        >>> registry = legacy.LegacyRegistry()
        >>> get_bridge = legacy.accessor(C.bridge, name="get_bridge", mode="error",
        ...                              registry=registry)
        >>> with us.UserSessions().user(us.UserExecutionContext(user_id="a", thread_id="t")):
        ...     _ = get_bridge()
        >>> registry.report().accessor("get_bridge").scoped
        1
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # name -> (provider name, scope name, mode)
        self._info: dict[str, tuple[str, str, LegacyMode]] = {}
        # (name, filename, lineno, function) -> [scoped, fallback, refused]
        self._counts: dict[tuple[str, str, int, str], list[int]] = {}
        self._accessors: weakref.WeakSet[_BaseAccessor[object]] = weakref.WeakSet()

    # -- used by the accessors ------------------------------------------------------
    def _register(self, accessor: _BaseAccessor[object]) -> None:
        with self._lock:
            self._accessors.add(accessor)
            self._info[accessor.name] = (accessor.provider_name, accessor.scope.name, accessor.mode)

    def _mode_changed(self, accessor: _BaseAccessor[object]) -> None:
        with self._lock:
            self._info[accessor.name] = (accessor.provider_name, accessor.scope.name, accessor.mode)

    def _record(self, name: str, filename: str, lineno: int, function: str, outcome: int) -> None:
        key = (name, filename, lineno, function)
        with self._lock:
            counts = self._counts.get(key)
            if counts is None:
                counts = self._counts[key] = [0, 0, 0]
            counts[outcome] += 1

    # -- public -----------------------------------------------------------------------
    @property
    def accessors(self) -> tuple[_BaseAccessor[object], ...]:
        """The live accessors that record here, sorted by name."""
        with self._lock:
            return tuple(sorted(self._accessors, key=lambda a: a.name))

    def report(self) -> LegacyReport:
        """A snapshot of the statistics of every accessor registered here.

        Example:
            >>> from userscope.adapters.legacy import LegacyRegistry
            >>> LegacyRegistry().report().sites
            ()
        """
        with self._lock:
            counts = {key: tuple(value) for key, value in self._counts.items()}
            # Accessors still alive, and those garbage-collected with calls still counted.
            names = {a.name for a in self._accessors} | {key[0] for key in counts}
            info = {name: self._info[name] for name in names}
        entries = []
        for name in sorted(info):
            provider, scope, mode = info[name]
            sites = tuple(
                CallSite(
                    accessor=name,
                    filename=filename,
                    lineno=lineno,
                    function=function,
                    scoped=c[SCOPED],
                    fallback=c[FALLBACK],
                    refused=c[REFUSED],
                )
                for (owner, filename, lineno, function), c in sorted(counts.items())
                if owner == name
            )
            entries.append(
                AccessorReport(name=name, provider=provider, scope=scope, mode=mode, sites=sites)
            )
        return LegacyReport(accessors=tuple(entries))

    def format_report(self, *, relative_to: str | os.PathLike[str] | None = None) -> str:
        """:meth:`report` rendered as a text table (see :meth:`LegacyReport.format`).

        Example:
            >>> from userscope.adapters.legacy import LegacyRegistry
            >>> LegacyRegistry().format_report()
            'no legacy accessors registered'
        """
        return self.report().format(relative_to=relative_to)

    def reset(self) -> None:
        """Forget every recorded call; registered accessors and their modes stay.

        Example:
            >>> from userscope.adapters.legacy import LegacyRegistry
            >>> LegacyRegistry().reset()
        """
        with self._lock:
            self._counts.clear()

    def set_mode(self, mode: str, *, names: Iterable[str] | None = None) -> None:
        """Switch every registered accessor (or those in ``names``) to ``mode``.

        All or nothing: nothing changes when ``mode`` is invalid, a name is unknown, or
        ``"warn"`` is asked for an accessor without a fallback.

        Args:
            mode: ``"warn"`` or ``"error"``, e.g. from an environment variable.
            names: only these accessors; all registered ones when omitted.

        Raises:
            ValueError: invalid mode, unknown name, or ``"warn"`` without a fallback.

        Example:
            >>> from userscope.adapters.legacy import LegacyRegistry
            >>> LegacyRegistry().set_mode("error")
        """
        checked = check_mode(mode)
        targets = list(self.accessors)
        if names is not None:
            wanted = set(names)
            unknown = wanted - {a.name for a in targets}
            if unknown:
                raise ValueError(
                    f"no legacy accessor named {', '.join(sorted(unknown))} is registered; "
                    f"known: {', '.join(a.name for a in targets) or 'none'}"
                )
            targets = [a for a in targets if a.name in wanted]
        if checked == "warn":
            missing = [a.name for a in targets if a.fallback is None]
            if missing:
                raise ValueError(
                    f"cannot switch {', '.join(missing)} to 'warn': no fallback to call outside "
                    "a scope; build the accessor with fallback=<the old accessor>"
                )
        for target in targets:
            target._set_mode(checked)

    def __repr__(self) -> str:
        with self._lock:
            return f"<LegacyRegistry accessors={len(self._info)} sites={len(self._counts)}>"


_DEFAULT = LegacyRegistry()


def default_registry() -> LegacyRegistry:
    """The process-wide registry used by accessors built without ``registry=``.

    Example:
        >>> from userscope.adapters.legacy import default_registry
        >>> default_registry() is default_registry()
        True
    """
    return _DEFAULT
