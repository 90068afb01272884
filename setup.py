"""Build of userscope: the pure-Python package, plus its hot path compiled by Cython.

The pure-Python modules are the source: Cython compiles the modules listed in
``COMPILED_MODULES`` (in ``src/userscope/_mode.py``, the one list) as they are, into
extension modules installed next to their ``.py`` twin. Everything else about the
project is in ``pyproject.toml``.

* No C compiler, no Cython, or a failed compilation: the install still succeeds with
  the pure-Python runtime and the build says so in one line.
* ``USERSCOPE_BUILD_PURE=1``: build no extension at all (the pure wheel, ``py3-none-any``).
* A free-threaded CPython (``Py_GIL_DISABLED``, 3.13t and later) gets the pure runtime
  too, and the build says so: the compiled core's lock and tables rely on the GIL to
  make a test-and-set of a C field atomic.
* Code locality (GCC and Clang on Linux): every extension is compiled with
  ``LOCALITY_FLAGS`` (calls into libpython through the GOT instead of a PLT stub, only
  ``PyInit_*`` exported); a compiler that refuses them builds without them.
* ``USERSCOPE_PGO=generate`` / ``USERSCOPE_PGO=use``: a profile-guided build, opt-in for
  wheel builders (``scripts/pgo_build.sh`` runs both steps with the benchmarks as the
  training run); the default build never depends on it. See docs/compiled.md.
* Editable installs (``pip install -e .``) and ``python setup.py build_ext --inplace``
  put the extensions next to the sources in ``src/``; the build records each source's
  SHA-256 in ``_extensions.json`` so an extension built from an older source is skipped
  at import (see ``userscope._mode``).

Nothing here ``cimport``s dependency-injector: the extensions use its Python API only,
so they do not depend on its binary layout.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sys
import sysconfig
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
MODE_FILE = Path("src", "userscope", "_mode.py")
STAMP_FILE = "_extensions.json"
PURE_BUILD_ENV = "USERSCOPE_BUILD_PURE"
PGO_ENV = "USERSCOPE_PGO"

#: Compiler flags for the compiled core's code locality (docs/compiled.md, measured per
#: WebSocket message with ``benchmarks/ws_instructions.py --simulate``): ``-fno-plt``
#: calls libpython through the GOT, without a PLT stub per call (a cache line of stubs
#: per few functions called, and an indirect jump each); ``-fvisibility=hidden`` exports
#: nothing but ``PyInit_*`` (Cython's own functions are ``static`` already).
LOCALITY_FLAGS: tuple[str, ...] = ("-fno-plt", "-fvisibility=hidden")

#: ``USERSCOPE_PGO`` step -> (compile flags, link flags). The profile (``.gcda`` files)
#: is written next to each object file under ``build/``, which the ``use`` build
#: compiles to again; ``-fprofile-update=single``: the runtime is one thread at a time.
PGO_FLAGS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "generate": (("-fprofile-generate", "-fprofile-update=single"), ("-fprofile-generate",)),
    "use": (("-fprofile-use", "-fprofile-correction", "-Wno-missing-profile"), ()),
}

# Cython directives: Python semantics wherever they differ from C speed.
DIRECTIVES: dict[str, Any] = {
    "language_level": "3",
    "binding": True,  # functions keep __name__, __qualname__, __doc__, introspection
    "always_allow_keywords": True,  # one-argument methods still accept keywords
    "embedsignature": False,
    "autotestdict": False,  # doctest finds the docstrings itself; no duplicate __test__ entries
    # Annotations stay documentation, as in CPython: with Cython's default (True) an
    # annotation such as `x: dict` becomes a runtime type check the pure twin does not make.
    "annotation_typing": False,
}


def gil_free_reason() -> str | None:
    """Why this interpreter cannot run the compiled core, or None when it can."""
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return "free-threaded CPython: the compiled core relies on the GIL"
    return None


def compiled_modules() -> list[str]:
    """Read ``COMPILED_MODULES`` from ``_mode.py`` without importing the package."""
    tree = ast.parse((HERE / MODE_FILE).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id == "COMPILED_MODULES" and value:
            return [str(name) for name in ast.literal_eval(value)]
    raise SystemExit(f"setup.py: no COMPILED_MODULES = (...) assignment in {MODE_FILE}")


def source_of(module: str) -> str:
    """Relative path of the file Cython compiles for a module (setuptools wants relative
    paths): its ``.pyx`` when it has one (a compiled twin of a ``.py`` module), else the
    ``.py`` itself (augmented by its ``.pxd`` when there is one)."""
    base = Path("src", *module.split("."))
    pyx = base.with_suffix(".pyx")
    return str(pyx if (HERE / pyx).exists() else base.with_suffix(".py"))


def source_digest(module: str) -> str:
    """What the build stamps: SHA-256 of the ``.py`` alone, or of the ``.py`` and its
    ``.pxd``/``.pyx`` files when it has them (the same rule as ``_mode.source_digest``)."""
    base = HERE / Path("src", *module.split("."))
    parts = [base.with_suffix(suffix) for suffix in (".py", ".pxd", ".pyx")]
    present = [part for part in parts if part.exists()]
    if len(present) == 1:
        return hashlib.sha256(present[0].read_bytes()).hexdigest()
    digest = hashlib.sha256()
    for part in present:
        digest.update(part.suffix.encode() + b"\0" + part.read_bytes() + b"\0")
    return digest.hexdigest()


def _switch(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def pgo_step() -> str | None:
    """The profile-guided step asked for by ``USERSCOPE_PGO`` (``None``: an ordinary build)."""
    step = os.environ.get(PGO_ENV, "").strip().lower()
    if step in {"", "0", "off", "no", "false"}:
        return None
    if step not in PGO_FLAGS:
        raise SystemExit(f"setup.py: {PGO_ENV}={step!r}: use `generate`, `use` or leave it unset")
    return step


def compile_flags(
    compiler_type: str, platform: str, pgo: str | None
) -> tuple[list[str], list[str]]:
    """Extra (compile, link) flags for the extensions on this compiler and platform:
    ``LOCALITY_FLAGS`` and the PGO step's, for GCC/Clang on Linux only (elsewhere a PLT
    and symbol visibility work differently, and the flags may not exist)."""
    if compiler_type != "unix" or not platform.startswith("linux"):
        return [], []
    compile_args, link_args = PGO_FLAGS[pgo] if pgo else ((), ())
    return [*LOCALITY_FLAGS, *compile_args], list(link_args)


class BuildCompiledCore(build_ext):
    """``build_ext`` that cythonizes the listed ``.py`` modules and never fails the install.

    Any failure (Cython missing, a Cython or C compilation error, no compiler) drops
    that extension; the build prints one line saying the pure runtime is installed.
    """

    def run(self) -> None:
        if not self.extensions:
            return
        self._pgo = pgo_step()  # a bad value stops the build before anything compiles
        self._failed: list[tuple[str, str]] = self._cythonize()
        if not self._failed:
            super().run()
        self._write_stamp()
        if self._failed:
            names = [name for name, _ in self._failed]
            which = "every compiled module" if len(names) == len(self.extensions) else names
            sys.stderr.write(
                f"userscope: compiled core not built ({self._failed[0][1]}); this build "
                f"installs the pure-Python runtime for {which}\n"
            )
            sys.stderr.flush()

    def _cythonize(self) -> list[tuple[str, str]]:
        """Turn each extension's ``.py`` source into C; the extensions that cannot be built."""
        reason = gil_free_reason()
        if reason is None:
            try:
                from Cython.Build import cythonize
            except ImportError:
                reason = "Cython is not installed"
        if reason is not None:
            return [(ext.name, reason) for ext in self.extensions]
        try:
            generated = cythonize(
                [Extension(ext.name, list(ext.sources)) for ext in self.extensions],
                build_dir=str(Path(self.build_temp, "cython")),
                include_path=[str(HERE / "src")],  # the .pxd files cimport each other
                compiler_directives=DIRECTIVES,
                quiet=True,
                force=bool(self.force),
            )
        except Exception as exc:  # a Cython compile error (Cython printed where)
            return [(ext.name, f"Cython failed: {type(exc).__name__}") for ext in self.extensions]
        c_sources = {ext.name: ext.sources for ext in generated}
        for ext in self.extensions:
            ext.sources = c_sources[ext.name]
        return []

    def build_extension(self, ext: Extension) -> None:
        kind = self.compiler.compiler_type
        compile_args, link_args = compile_flags(kind, sys.platform, self._pgo)
        base_compile, base_link = list(ext.extra_compile_args), list(ext.extra_link_args)
        ext.extra_compile_args = base_compile + compile_args
        ext.extra_link_args = base_link + link_args
        try:
            try:
                super().build_extension(ext)
            except Exception:
                if not compile_args and not link_args:
                    raise
                # a compiler that refuses one of the extra flags: build without them
                ext.extra_compile_args, ext.extra_link_args = base_compile, base_link
                super().build_extension(ext)
                sys.stderr.write(
                    f"userscope: {ext.name} built without {' '.join(compile_args + link_args)}"
                    " (the compiler refused them)\n"
                )
        except Exception as exc:  # compiler missing or failing: CompileError, LinkError, ...
            compiler = os.environ.get("CC") or "the default C compiler"
            self._failed.append(
                (ext.name, f"C compilation failed with {compiler}: {type(exc).__name__}")
            )

    def _write_stamp(self) -> None:
        """Record, next to ``_mode.py`` of this build, the source hash of each extension
        built, and forget the ones that failed (a stale one is then skipped at import);
        delete the extension of a module built once but no longer listed."""
        package_dir = Path(self.get_ext_fullpath("userscope._stamp")).parent
        stamp_path = package_dir / STAMP_FILE
        try:
            stamps = json.loads(stamp_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            stamps = {}
        failed = {name for name, _ in self._failed}
        for ext in self.extensions:
            built = Path(self.get_ext_fullpath(ext.name))
            if ext.name in failed or not built.exists():
                stamps.pop(ext.name, None)
                continue
            stamps[ext.name] = {
                "source_sha256": source_digest(ext.name),
                "file": built.name,
            }
        listed = {ext.name for ext in self.extensions}
        for name in [name for name in stamps if name not in listed]:
            leftover = Path(self.get_ext_fullpath(name))  # built once, no longer listed
            try:
                leftover.unlink(missing_ok=True)
            except OSError:
                continue  # keep its entry: the import then skips the leftover
            del stamps[name]
        package_dir.mkdir(parents=True, exist_ok=True)
        stamp_path.write_text(json.dumps(stamps, indent=1, sort_keys=True) + "\n", "utf-8")


def extensions() -> list[Extension]:
    if _switch(PURE_BUILD_ENV):
        return []
    return [Extension(name, [source_of(name)]) for name in compiled_modules()]


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildCompiledCore})
