"""The compiled core and its pure-Python twins: which one runs, the switch, the build.

The runtime modules listed in ``userscope._mode.COMPILED_MODULES`` are compiled by
Cython as they are; the ``.py`` files stay the reference. These tests check the import
switch (``USERSCOPE_PURE``), the stale-extension guard, and that a build without a
working C compiler still installs (pure, said once).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

import userscope
from userscope import _mode
from userscope.errors import ModeSwitchError, UserscopeError

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "userscope"

# Prints, from a fresh interpreter: COMPILED, describe(), then module -> (loader, file).
PROBE = """
import json, sys, userscope
from userscope import _mode
print(json.dumps({
    "compiled": userscope.COMPILED,
    "describe": _mode.describe(),
    "modules": {
        name: [type(sys.modules[name].__loader__).__name__, sys.modules[name].__file__]
        for name in _mode.COMPILED_MODULES
    },
}))
"""


def probe(**env: str) -> dict[str, object]:
    """Import userscope in a fresh interpreter with ``env`` (USERSCOPE_PURE unset unless
    given) and report what it loaded."""
    clean = {k: v for k, v in os.environ.items() if k != _mode.PURE_ENV}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **env},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def built_extensions() -> list[Path]:
    """The in-place extensions of the listed modules that exist next to their source."""
    found = []
    for name in _mode.COMPILED_MODULES:
        directory = ROOT / "src" / Path(*name.split(".")[:-1])
        leaf = name.rpartition(".")[2]
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            if (directory / f"{leaf}{suffix}").exists():
                found.append(directory / f"{leaf}{suffix}")
                break
    return found


def fresh_build() -> bool:
    """Every listed module has an extension built from today's source."""
    try:
        stamps = json.loads((PACKAGE / _mode.STAMP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    for name in _mode.COMPILED_MODULES:
        source = ROOT / "src" / Path(*name.split(".")).with_suffix(".py")
        digest = _mode.source_digest(str(source))
        if stamps.get(name, {}).get("source_sha256") != digest:
            return False
    return len(built_extensions()) == len(_mode.COMPILED_MODULES)


def test_compiled_is_a_public_bool_matching_the_loaded_modules() -> None:
    assert "COMPILED" in userscope.__all__
    loaders = [type(sys.modules[name].__loader__) for name in _mode.COMPILED_MODULES]
    expected = all(issubclass(kind, importlib.machinery.ExtensionFileLoader) for kind in loaders)
    assert userscope.COMPILED is expected


def test_pure_switch_loads_every_listed_module_from_its_py_file() -> None:
    seen = probe(USERSCOPE_PURE="1")
    assert seen["compiled"] is False
    assert seen["describe"] == "pure (USERSCOPE_PURE=1)"
    modules = seen["modules"]
    assert isinstance(modules, dict)
    assert set(modules) == set(_mode.COMPILED_MODULES)
    for name, (loader, file) in modules.items():
        assert loader == "SourceFileLoader", name
        assert file.endswith(".py"), name
        assert Path(file).parent.is_relative_to(PACKAGE), name


TRACE = """
import sys, userscope as us
from dependency_injector import containers
class C(containers.DeclarativeContainer):
    items = us.RequestScoped(list)
seen = set()
def tracer(frame, event, arg):
    seen.add(frame.f_code.co_filename.rsplit("/", 1)[-1])
sys.settrace(tracer)
with us.UserSessions().request(us.UserExecutionContext(user_id="a", thread_id="t")):
    C.items()
sys.settrace(None)
print(" ".join(sorted(name for name in seen if name.startswith("_s"))))
"""


def test_pure_mode_is_traceable_so_coverage_measures_the_runtime() -> None:
    # coverage.py sees what sys.settrace sees: every line of the pure runtime modules
    clean = {k: v for k, v in os.environ.items() if k != _mode.PURE_ENV}
    proc = subprocess.run(
        [sys.executable, "-c", TRACE],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, "USERSCOPE_PURE": "1"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) >= {"_scoped.py", "_sessions.py"}


@pytest.mark.skipif(
    not fresh_build(),
    reason="compiled core not built in place from today's sources "
    "(run `python setup.py build_ext --inplace`; scripts/check does, and fails without it)",
)
def test_compiled_build_loads_every_listed_module_as_an_extension() -> None:
    seen = probe()
    assert seen["compiled"] is True
    assert seen["describe"] == "compiled"
    modules = seen["modules"]
    assert isinstance(modules, dict)
    for name, (loader, file) in modules.items():
        assert loader == "ExtensionFileLoader", name
        assert file.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), name


def test_compiled_modules_use_dependency_injector_through_its_python_api_only() -> None:
    # a `cimport` of dependency_injector would pin each wheel to one binary layout
    for name in _mode.COMPILED_MODULES:
        source = (ROOT / "src" / Path(*name.split(".")).with_suffix(".py")).read_text()
        assert "cimport" not in source, name


def test_switch_off_values_do_not_force_pure(monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("", "0", "false", "No", " off "):
        monkeypatch.setenv(_mode.PURE_ENV, value)
        assert _mode.pure_requested() is False, value
    for value in ("1", "true", "YES", "on"):
        monkeypatch.setenv(_mode.PURE_ENV, value)
        assert _mode.pure_requested() is True, value


def test_a_bad_switch_value_is_refused_with_its_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_mode.PURE_ENV, "maybe")
    with pytest.raises(ModeSwitchError) as caught:
        _mode.pure_requested()
    assert caught.value.variable == "USERSCOPE_PURE"
    assert caught.value.value == "maybe"
    assert isinstance(caught.value, UserscopeError)
    assert isinstance(caught.value, ValueError)
    assert "USERSCOPE_PURE=1" in str(caught.value)


def test_import_with_a_bad_switch_value_fails_before_any_runtime_module() -> None:
    clean = {k: v for k, v in os.environ.items() if k != _mode.PURE_ENV}
    proc = subprocess.run(
        [sys.executable, "-c", "import userscope"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, "USERSCOPE_PURE": "maybe"},
        check=False,
    )
    assert proc.returncode != 0
    assert "ModeSwitchError: USERSCOPE_PURE='maybe' is not a switch" in proc.stderr


class TestFinder:
    """The finder's choice, on a throw-away package with a stand-in extension file (the
    finder only looks the file up; it never loads it here)."""

    NAME = "fakepkg.hot"

    @pytest.fixture
    def package(self, tmp_path: Path) -> Path:
        directory = tmp_path / "fakepkg"
        directory.mkdir()
        (directory / "hot.py").write_text("VALUE = 1\n")
        return directory

    def add_extension(self, package: Path, source_digest: str | None) -> None:
        (package / f"hot{importlib.machinery.EXTENSION_SUFFIXES[0]}").write_bytes(b"\0")
        stamps = {} if source_digest is None else {self.NAME: {"source_sha256": source_digest}}
        (package / "stamps.json").write_text(json.dumps(stamps))

    def find(self, package: Path, *, pure: bool) -> tuple[str, str]:
        finder = _mode._Finder([self.NAME], pure=pure, stamp_file=str(package / "stamps.json"))
        assert finder.find_spec("fakepkg.other", [str(package)]) is None
        spec = finder.find_spec(self.NAME, [str(package)])
        assert spec is not None
        assert spec.loader is not None
        return type(spec.loader).__name__, finder.status[self.NAME]

    def test_fresh_extension_is_chosen(self, package: Path) -> None:
        digest = hashlib.sha256((package / "hot.py").read_bytes()).hexdigest()
        self.add_extension(package, digest)
        assert self.find(package, pure=False) == ("ExtensionFileLoader", "compiled")

    def test_pure_switch_wins_over_a_fresh_extension(self, package: Path) -> None:
        digest = hashlib.sha256((package / "hot.py").read_bytes()).hexdigest()
        self.add_extension(package, digest)
        assert self.find(package, pure=True) == ("SourceFileLoader", "pure (USERSCOPE_PURE=1)")

    def test_extension_built_from_an_older_source_is_skipped(self, package: Path) -> None:
        self.add_extension(package, hashlib.sha256(b"VALUE = 0\n").hexdigest())
        loader, status = self.find(package, pure=False)
        assert loader == "SourceFileLoader"
        assert status.startswith("pure (extension stale: rebuild with")

    def test_extension_without_a_stamp_is_skipped(self, package: Path) -> None:
        self.add_extension(package, None)
        loader, status = self.find(package, pure=False)
        assert loader == "SourceFileLoader"
        assert status.startswith("pure (extension stale")

    def test_leftover_extension_of_a_module_no_longer_listed_is_skipped(
        self, package: Path
    ) -> None:
        digest = hashlib.sha256((package / "hot.py").read_bytes()).hexdigest()
        self.add_extension(package, digest)  # built and stamped while it was listed
        finder = _mode._Finder([], pure=False, stamp_file=str(package / "stamps.json"))
        spec = finder.find_spec(self.NAME, [str(package)])
        assert spec is not None
        assert type(spec.loader).__name__ == "SourceFileLoader"
        assert finder.status[self.NAME] == "pure (not in COMPILED_MODULES)"

    def test_no_extension_means_the_source(self, package: Path) -> None:
        assert self.find(package, pure=False) == (
            "SourceFileLoader",
            "pure (extension not built)",
        )

    def test_one_stale_module_makes_every_listed_module_load_pure(self, package: Path) -> None:
        # the compiled modules cimport each other's types: all compiled, or none
        (package / "cold.py").write_text("VALUE = 2\n")
        (package / "cold.pxd").write_text("cdef int VALUE\n")
        suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
        for leaf in ("hot", "cold"):
            (package / f"{leaf}{suffix}").write_bytes(b"\0")
        stamps = {
            self.NAME: {"source_sha256": _mode.source_digest(str(package / "hot.py"))},
            # stamped before its .pxd changed: the digest covers the .py and the .pxd
            "fakepkg.cold": {"source_sha256": hashlib.sha256(b"VALUE = 2\n").hexdigest()},
        }
        (package / "stamps.json").write_text(json.dumps(stamps))
        finder = _mode._Finder(
            [self.NAME, "fakepkg.cold"], pure=False, stamp_file=str(package / "stamps.json")
        )
        spec = finder.find_spec(self.NAME, [str(package)])
        assert spec is not None
        assert type(spec.loader).__name__ == "SourceFileLoader"
        status = finder.status[self.NAME]
        assert status.startswith("pure (all compiled modules load together; fakepkg.cold")
        assert "is stale" in status

    def test_the_digest_of_a_module_with_a_pxd_covers_both_files(self, package: Path) -> None:
        alone = _mode.source_digest(str(package / "hot.py"))
        assert alone == hashlib.sha256(b"VALUE = 1\n").hexdigest()
        (package / "hot.pxd").write_text("cdef int VALUE\n")
        with_pxd = _mode.source_digest(str(package / "hot.py"))
        (package / "hot.pxd").write_text("cdef long VALUE\n")
        assert len({alone, with_pxd, _mode.source_digest(str(package / "hot.py"))}) == 3


# -- packaging: bounded subprocess builds into temporary directories ----------------------


def build_sdist(out: Path) -> Path:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / proc.stdout.strip().splitlines()[-1]


def pip_wheel(source: Path, out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``pip wheel`` without build isolation (the venv has setuptools and Cython: no network)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--verbose",
            "-w",
            str(out),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
        check=False,
    )


def wheel_names(out: Path) -> tuple[Path, list[str]]:
    [wheel] = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return wheel, archive.namelist()


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("Cython") is None:
        pytest.skip("Cython is not installed in this environment (dev extra)")
    return build_sdist(tmp_path_factory.mktemp("sdist"))


def test_sdist_ships_the_sources_and_the_build_script_not_build_outputs(sdist: Path) -> None:
    with tarfile.open(sdist) as archive:
        names = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
    assert "setup.py" in names
    assert "pyproject.toml" in names
    assert "src/userscope/_mode.py" in names
    for name in _mode.COMPILED_MODULES:
        assert "src/" + name.replace(".", "/") + ".py" in names
    leftovers = [n for n in names if n.endswith((".so", ".pyd", ".c")) or "_extensions" in n]
    assert leftovers == []


@pytest.mark.skipif(shutil.which("false") is None, reason="needs the `false` command as CC")
def test_build_without_a_working_compiler_installs_pure_and_says_so_once(
    sdist: Path, tmp_path: Path
) -> None:
    proc = pip_wheel(sdist, tmp_path, CC="false", LDSHARED="false")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    output = proc.stdout + proc.stderr
    lines = [line for line in output.splitlines() if "compiled core not built" in line]
    assert len(lines) == 1, output[-3000:]
    assert "C compilation failed" in lines[0]
    assert "installs the pure-Python runtime" in lines[0]
    _, names = wheel_names(tmp_path)
    assert [n for n in names if n.endswith((".so", ".pyd"))] == []
    for name in _mode.COMPILED_MODULES:
        assert name.replace(".", "/") + ".py" in names
    assert "BuildBackendWarning" not in output  # no license-table deprecation storm


def test_pure_build_switch_gives_a_pure_wheel(sdist: Path, tmp_path: Path) -> None:
    proc = pip_wheel(sdist, tmp_path, USERSCOPE_BUILD_PURE="1")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    wheel, names = wheel_names(tmp_path)
    assert wheel.name.endswith("-py3-none-any.whl")
    assert [n for n in names if n.endswith((".so", ".pyd", ".c"))] == []
    assert "userscope/_mode.py" in names
    assert "compiled core not built" not in proc.stdout + proc.stderr


def test_mypy_types_a_module_from_its_py_twin_next_to_an_extension(tmp_path: Path) -> None:
    # The compiled build puts `_scoped.<tag>.so` next to `_scoped.py`: mypy must keep
    # reading the typed .py (it never loads extensions; this pins that down).
    from mypy import api

    package = tmp_path / "twinpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "hot.py").write_text("def answer() -> int:\n    return 42\n")
    (package / f"hot{importlib.machinery.EXTENSION_SUFFIXES[0]}").write_bytes(b"\0")
    (tmp_path / "sample.py").write_text("from twinpkg.hot import answer\nreveal_type(answer())\n")
    stdout, stderr, status = api.run(
        [
            "--strict",
            "--no-incremental",
            "--no-error-summary",
            "--python-version",
            "3.11",
            str(tmp_path / "sample.py"),
        ]
    )
    assert stderr == ""
    assert status == 0, stdout
    assert re.search(r'Revealed type is "(builtins\.)?int"', stdout), stdout


FREE_THREADED_BUILD = """
import runpy, sys, sysconfig
real = sysconfig.get_config_var
sysconfig.get_config_var = lambda name: 1 if name == "Py_GIL_DISABLED" else real(name)
sys.argv = ["setup.py", "-q", "build_ext", "--build-lib", sys.argv[1], "--build-temp", sys.argv[2]]
runpy.run_path("setup.py", run_name="__main__")
"""


def test_a_free_threaded_python_builds_pure_and_says_why_once(tmp_path: Path) -> None:
    # the compiled lock and tables test-and-set C fields under the GIL: without a GIL the
    # build must not produce them (simulated: this interpreter reports Py_GIL_DISABLED)
    lib, temp = tmp_path / "lib", tmp_path / "temp"
    proc = subprocess.run(
        [sys.executable, "-c", FREE_THREADED_BUILD, str(lib), str(temp)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if "compiled core not built" in line]
    expected = (
        "userscope: compiled core not built (free-threaded CPython: the compiled core "
        "relies on the GIL); this build installs the pure-Python runtime for every "
        "compiled module"
    )
    assert lines == [expected]
    assert [p for p in tmp_path.rglob("*") if p.suffix in {".so", ".pyd", ".c"}] == []
    stamps = json.loads((lib / "userscope" / _mode.STAMP_FILE).read_text(encoding="utf-8"))
    assert stamps == {}  # nothing recorded as built: the import loads the .py twins


# -- compiler flags: code locality, and the opt-in profile-guided build -------------------


@pytest.fixture
def setup_script(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """``setup.py``'s globals, without running the build (``setup()`` made a no-op)."""
    import setuptools

    monkeypatch.setattr(setuptools, "setup", lambda **_: None)
    return runpy.run_path(str(ROOT / "setup.py"), run_name="setup_under_test")


def test_locality_flags_go_to_gcc_and_clang_on_linux_only(setup_script: dict[str, Any]) -> None:
    flags = setup_script["compile_flags"]
    locality = list(setup_script["LOCALITY_FLAGS"])
    assert "-fno-plt" in locality
    assert flags("unix", "linux", None) == (locality, [])
    assert flags("unix", "darwin", None) == ([], [])
    assert flags("msvc", "win32", None) == ([], [])


def test_profile_guided_steps_add_their_flags(setup_script: dict[str, Any]) -> None:
    flags = setup_script["compile_flags"]
    compile_args, link_args = flags("unix", "linux", "generate")
    assert "-fprofile-generate" in compile_args
    assert link_args == ["-fprofile-generate"]
    compile_args, link_args = flags("unix", "linux", "use")
    assert "-fprofile-use" in compile_args
    assert link_args == []


@pytest.mark.parametrize(("value", "step"), [("", None), ("off", None), (" Use ", "use")])
def test_pgo_switch_values(
    setup_script: dict[str, Any], monkeypatch: pytest.MonkeyPatch, value: str, step: str | None
) -> None:
    monkeypatch.setenv("USERSCOPE_PGO", value)
    assert setup_script["pgo_step"]() == step


def test_a_bad_pgo_switch_stops_the_build_and_says_what_to_use(
    setup_script: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USERSCOPE_PGO", "yes")
    with pytest.raises(SystemExit) as stopped:
        setup_script["pgo_step"]()
    assert "USERSCOPE_PGO='yes'" in str(stopped.value)
    assert "`generate`, `use`" in str(stopped.value)


# Builds one tiny module with setup.py's own build command, through a C compiler that
# refuses -fno-plt (a stand-in wrapper around the real one).
REFUSING_BUILD = """
import runpy, sys, setuptools
from setuptools import Distribution
setuptools.setup = lambda **_: None
script = runpy.run_path("setup.py", run_name="setup_under_test")
lib, temp, source = sys.argv[1:4]
dist = Distribution({"ext_modules": [setuptools.Extension("tinymod", [source])]})
command = script["BuildCompiledCore"](dist)
command.build_lib, command.build_temp = lib, temp
command.ensure_finalized()
command.run()
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("gcc") is None,
    reason="the locality flags are for GCC/Clang on Linux",
)
def test_a_compiler_refusing_the_locality_flags_still_builds_compiled(tmp_path: Path) -> None:
    if importlib.util.find_spec("Cython") is None:
        pytest.skip("Cython is not installed in this environment (dev extra)")
    calls = tmp_path / "calls.log"
    wrapper = tmp_path / "cc"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        'for arg in "$@"; do [ "$arg" = "-fno-plt" ] && exit 1; done\n'
        'exec gcc "$@"\n'
    )
    wrapper.chmod(0o755)
    source = tmp_path / "tinymod.py"
    source.write_text("def answer():\n    return 42\n")
    lib = tmp_path / "lib"
    proc = subprocess.run(
        [sys.executable, "-c", REFUSING_BUILD, str(lib), str(tmp_path / "temp"), str(source)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CC": str(wrapper), "LDSHARED": f"{wrapper} -shared"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "-fno-plt" in calls.read_text()  # asked for first
    assert "tinymod built without -fno-plt -fvisibility=hidden" in proc.stderr
    assert "compiled core not built" not in proc.stderr
    [built] = lib.glob("tinymod*.so")
    stamps = json.loads((lib / "userscope" / _mode.STAMP_FILE).read_text(encoding="utf-8"))
    assert stamps["tinymod"]["file"] == built.name
