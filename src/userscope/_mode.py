"""Which implementation of the hot path runs: compiled extension modules or their pure twins.

The pure-Python modules are the source. The build (``setup.py``) compiles the modules
named in :data:`COMPILED_MODULES` with Cython, as they are, into extension modules that
sit next to their ``.py`` twin (``_scoped.py`` and ``_scoped.cpython-311-x86_64-linux-gnu.so``
in the same directory). Python's own import system prefers the extension; this module
decides before anything imports them:

* ``USERSCOPE_PURE=1`` (or ``true``/``yes``/``on``): every listed module is imported from
  its ``.py`` file, whatever was built.
* otherwise the extension is used when it was built from the ``.py`` file that is there
  now (the build records each source's SHA-256 in ``_extensions.json``); an extension
  built from an older source (a stale in-place build after an edit) is skipped and the
  ``.py`` file imported, so an edit always takes effect. A leftover extension of a
  module that was built once but is no longer listed is never loaded either.

Importing this module installs the finder that does it (``userscope/__init__.py``
imports it first, so it runs before any listed module can be imported). It uses the
standard library only: ``setup.py`` reads :data:`COMPILED_MODULES` from this file's
source without importing the package.

Example:
    >>> from userscope import _mode
    >>> "userscope.providers._scoped" in _mode.COMPILED_MODULES
    True
    >>> _mode.describe().startswith(("compiled", "pure", "partly compiled"))
    True
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Final

from userscope.errors import ModeSwitchError

__all__ = ["COMPILED_MODULES", "PURE_ENV", "compiled", "describe", "pure_requested"]

#: The modules the build compiles, in one place (``setup.py`` reads this assignment).
#: Switching to other modules is a change of this tuple only.
COMPILED_MODULES: Final[tuple[str, ...]] = (
    "userscope.container._scope",
    "userscope.container._state",
    "userscope.container._pending",
    "userscope.container._cleanup",
    "userscope.container._session",
    "userscope.container._scopes",
    "userscope.container._table",
    "userscope.container._sessions",
    "userscope.providers._plan",
    "userscope.providers._creation",
    "userscope.providers._scoped",
    "userscope._speedups",
)

#: Environment variable that forces the pure-Python modules at import.
PURE_ENV: Final = "USERSCOPE_PURE"

#: Written by the build next to this file: ``{module: {"source_sha256": ..., "file": ...}}``.
STAMP_FILE: Final = "_extensions.json"

REBUILD_HINT: Final = "rebuild with `python setup.py build_ext --inplace` (or `pip install -e .`)"

_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"", "0", "false", "no", "off"})


def pure_requested() -> bool:
    """Whether ``USERSCOPE_PURE`` asks for the pure-Python modules.

    Raises:
        ModeSwitchError: the variable holds something that is not an on/off switch.

    Example:
        >>> import os
        >>> from userscope import _mode
        >>> _mode.pure_requested() == (os.environ.get("USERSCOPE_PURE", "0") not in ("", "0"))
        True
    """
    value = os.environ.get(PURE_ENV, "")
    switch = value.strip().lower()
    if switch in _ON:
        return True
    if switch in _OFF:
        return False
    raise ModeSwitchError(PURE_ENV, value)


def source_digest(source: str) -> str:
    """What the build stamps for a module whose ``.py`` file is ``source``: the SHA-256
    of that file, or, when it has a ``.pxd`` (augmenting declarations) or a ``.pyx``
    (a compiled twin) next to it, of all of them (``setup.py`` applies the same rule).

    Example:
        >>> import hashlib, tempfile, os
        >>> from userscope import _mode
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = os.path.join(folder, "hot.py")
        ...     with open(path, "wb") as file:
        ...         _ = file.write(b"VALUE = 1")
        ...     _mode.source_digest(path) == hashlib.sha256(b"VALUE = 1").hexdigest()
        True
    """
    stem = source.removesuffix(".py")
    present = [p for p in (stem + ".py", stem + ".pxd", stem + ".pyx") if os.path.isfile(p)]
    if len(present) == 1:
        with open(present[0], "rb") as file:
            return hashlib.sha256(file.read()).hexdigest()
    digest = hashlib.sha256()
    for path in present:
        with open(path, "rb") as file:
            digest.update(os.path.splitext(path)[1].encode() + b"\0" + file.read() + b"\0")
    return digest.hexdigest()


def _stamps(path: str) -> dict[str, dict[str, str]]:
    try:
        with open(path, encoding="utf-8") as stamp:
            data = json.load(stamp)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class _Finder:
    """Meta path finder for the listed modules: the ``.py`` twin unless the extension is
    wanted and fresh. Records why each module loaded the way it did."""

    def __init__(self, names: Sequence[str], *, pure: bool, stamp_file: str) -> None:
        self.names = frozenset(names)
        self.pure = pure
        self.stamp_file = stamp_file
        # built earlier but no longer listed: its leftover extension must not load
        self.unlisted = frozenset(_stamps(stamp_file)) - self.names
        #: module -> "compiled" | "pure (...)" reason, filled as the modules are found
        self.status: dict[str, str] = {}
        self._unfit: str | None = None
        self._checked = False

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if path is None or (fullname not in self.names and fullname not in self.unlisted):
            return None
        leaf = fullname.rpartition(".")[2]
        source = next(
            (c for c in (os.path.join(e, leaf + ".py") for e in path) if os.path.isfile(c)),
            None,
        )
        if fullname in self.unlisted:
            self.status[fullname] = "pure (not in COMPILED_MODULES)"
            return self._source_spec(fullname, source)
        if self.pure:
            self.status[fullname] = f"pure ({PURE_ENV}=1)"
            return self._source_spec(fullname, source)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or not isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            self.status[fullname] = "pure (extension not built)"
            return spec
        if source is not None:
            stamp = _stamps(self.stamp_file).get(fullname, {})
            if stamp.get("source_sha256") != source_digest(source):
                self.status[fullname] = f"pure (extension stale: {REBUILD_HINT})"
                return self._source_spec(fullname, source)
        unfit = self._unfit_member()
        if unfit is not None:  # they cimport each other's types: all compiled, or none
            self.status[fullname] = f"pure (all compiled modules load together; {unfit})"
            return self._source_spec(fullname, source)
        self.status[fullname] = "compiled"
        return spec

    def _unfit_member(self) -> str | None:
        """Why some listed module has no fresh extension (``None``: every one has).

        The compiled modules declare their classes to each other (``.pxd`` files), so
        one of them loaded from its ``.py`` would break the others: they load together.
        """
        if self._checked:
            return self._unfit
        self._checked = True
        root = os.path.dirname(self.stamp_file)
        stamps = _stamps(self.stamp_file)
        self._unfit = None
        for name in sorted(self.names):
            parts = name.split(".")[1:]
            stem = os.path.join(root, *parts)
            if not any(
                os.path.isfile(stem + suffix) for suffix in importlib.machinery.EXTENSION_SUFFIXES
            ):
                self._unfit = f"{name} is not built"
                break
            source = stem + ".py"
            if os.path.isfile(source) and (
                stamps.get(name, {}).get("source_sha256") != source_digest(source)
            ):
                self._unfit = f"{name} is stale: {REBUILD_HINT}"
                break
        return self._unfit

    @staticmethod
    def _source_spec(fullname: str, source: str | None) -> ModuleSpec | None:
        if source is None:
            return None  # no .py twin: let the normal finders report the module
        return importlib.util.spec_from_file_location(fullname, source)


def _install() -> _Finder:
    for finder in sys.meta_path:
        if isinstance(finder, _Finder):
            return finder
    stamp_file = os.path.join(os.path.dirname(os.path.abspath(__file__)), STAMP_FILE)
    finder = _Finder(COMPILED_MODULES, pure=pure_requested(), stamp_file=stamp_file)
    sys.meta_path.insert(0, finder)
    return finder


_FINDER: Final = _install()


def compiled() -> bool:
    """Whether every listed module runs compiled (imports them if needed).

    Example:
        >>> from userscope import _mode
        >>> isinstance(_mode.compiled(), bool)
        True
    """
    return all(
        isinstance(
            importlib.import_module(name).__loader__, importlib.machinery.ExtensionFileLoader
        )
        for name in COMPILED_MODULES
    )


def describe() -> str:
    """One line for humans: ``compiled``, ``pure (USERSCOPE_PURE=1)``, ``pure (extension
    not built)``, ``pure (extension stale: ...)`` or ``partly compiled (pure: ...)``.

    Example:
        >>> from userscope import _mode
        >>> _mode.describe() == "compiled" or not _mode.compiled()
        True
    """
    status = {}
    for name in COMPILED_MODULES:
        module = importlib.import_module(name)
        is_ext = isinstance(module.__loader__, importlib.machinery.ExtensionFileLoader)
        found = _FINDER.status.get(name, "pure (imported before userscope._mode)")
        status[name] = "compiled" if is_ext else found
    reasons = set(status.values())
    if reasons == {"compiled"}:
        return "compiled"
    if "compiled" in reasons:
        pure = ", ".join(n for n, s in status.items() if s != "compiled")
        return f"partly compiled (pure: {pure})"
    inner = sorted(reason.removeprefix("pure (").removesuffix(")") for reason in reasons)
    return "pure (" + "; ".join(inner) + ")"
