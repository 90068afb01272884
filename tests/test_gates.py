"""The quality gates check themselves: the public names look public, no docstring
example is a comment pretending to be one, and the pre-commit config is valid."""

from __future__ import annotations

import ast
import doctest
import importlib.util
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sybil.example import SybilFailure

import userscope as us

ROOT = Path(__file__).resolve().parents[1]


def test_exported_names_live_in_the_public_module() -> None:
    for name in us.__all__:
        obj = getattr(us, name)
        if hasattr(obj, "__module__"):
            assert obj.__module__ == "userscope", name
    assert repr(us.UserSessions) == "<class 'userscope.UserSessions'>"
    ctx = us.UserExecutionContext(user_id="alice", thread_id="t")
    assert pickle.loads(pickle.dumps(ctx)) == ctx
    assert pickle.loads(pickle.dumps(us.Scope.REQUEST)) is us.Scope.REQUEST


def _docstrings(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                found.append((getattr(node, "lineno", 1), doc))
    return found


def test_no_docstring_example_is_only_comments() -> None:
    parser = doctest.DocTestParser()
    pretend = []
    for path in sorted((ROOT / "src" / "userscope").rglob("*.py")):
        for line, doc in _docstrings(ast.parse(path.read_text())):
            # doctest drops examples that are only comments: ">>>" with none left pretends
            if ">>>" in doc and not parser.get_examples(doc):
                pretend.append(f"{path.relative_to(ROOT)}:{line}")
    assert not pretend, (
        "these docstring examples run nothing (every line is a comment): write an "
        f"example that runs, or describe it in prose: {pretend}"
    )


def _root_conftest() -> Any:
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    assert spec is not None
    assert spec.loader is not None
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    return conftest


def _run_docstrings(tmp_path: Path, source: str) -> list[str]:
    """Run a module's docstring examples through the real collector: the failures."""
    module = tmp_path / "module.py"
    module.write_text(source)
    document = _root_conftest()._docstrings.parse(module)
    failures = []
    for example in document:
        try:
            example.evaluate()
        except SybilFailure as failure:
            failures.append(str(failure))
    return failures


def test_a_docstring_example_runs_as_copied(tmp_path: Path) -> None:
    """No module globals and no names of an earlier docstring: each imports its own."""
    relies_on_globals = """
import json

def f():
    '''
    >>> json.dumps(1)
    '1'
    '''
"""
    leans_on_an_earlier_docstring = """
def f():
    '''
    >>> import json
    '''

def g():
    '''
    >>> json.dumps(2)
    '2'
    '''
"""
    self_contained = """
def f():
    '''
    >>> import json
    >>> json.dumps(3)
    '3'
    '''
"""
    for source in (relies_on_globals, leans_on_an_earlier_docstring):
        failures = _run_docstrings(tmp_path, source)
        assert len(failures) == 1
        assert "NameError: name 'json' is not defined" in failures[0]
    assert _run_docstrings(tmp_path, self_contained) == []


def test_the_example_collectors_reach_every_file() -> None:
    """Every source file with a docstring example and every docs page is collected.

    The collectors' patterns go through ``PurePath.match``, where ``**`` is one directory
    only: a pattern that misses a depth silently runs nothing there.
    """
    conftest = _root_conftest()
    sources = [
        path
        for path in (ROOT / "src" / "userscope").rglob("*.py")
        if ">>>" in path.read_text() and path.name != "__main__.py"
    ]
    pages = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    assert len(sources) > 40
    missed = [p for p in sources if not conftest._docstrings.should_parse(p)]
    missed += [p for p in pages if not conftest._pages.should_parse(p)]
    assert not missed, [str(p.relative_to(ROOT)) for p in missed]


def test_pre_commit_config_is_valid() -> None:
    pytest.importorskip("pre_commit")
    done = subprocess.run(
        [sys.executable, "-m", "pre_commit", "validate-config", ".pre-commit-config.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- the session table's members stay its own ------------------------------------------
_TABLE_MODULES = ("container/_sessions.py", "container/_table.py")


def _members(tree: ast.Module) -> set[str]:
    """The names a module's classes define: methods, class attributes, ``self.x = ...``."""
    names: set[str] = set()
    for cls in (node for node in tree.body if isinstance(node, ast.ClassDef)):
        for node in cls.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(node.name)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
            elif isinstance(node, ast.Assign):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        for node in ast.walk(cls):
            targets = node.targets if isinstance(node, ast.Assign) else []
            if isinstance(node, ast.AnnAssign | ast.AugAssign):
                targets = [node.target]
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "self"
                ):
                    names.add(target.attr)
    return names


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def foreign_table_reads(package: Path) -> list[str]:
    """Every ``x._name`` in a module of ``package`` where ``_name`` is an underscore
    member of the session table's classes defined in *another* module (``self``/``cls``
    receivers excepted: a class's own members): ``"path:line: x._name"``."""
    owned = {
        module: {n for n in _members(ast.parse((package / module).read_text())) if _private(n)}
        for module in _TABLE_MODULES
        if (package / module).is_file()
    }
    assert any(owned.values()), f"no session table class found under {package}"
    found = []
    for path in sorted(package.rglob("*.py")):
        module = path.relative_to(package).as_posix()
        foreign = set().union(*(names for owner, names in owned.items() if owner != module))
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute) or node.attr not in foreign:
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            found.append(f"{module}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_reads_the_session_tables_underscore_members() -> None:
    """The scopes, the creation protocol and the job modules use the session table's
    public protocol (``SessionTable.hold_user``, ``leave``, ``release``, ...), never
    another module's private members of it (issue 13)."""
    found = foreign_table_reads(ROOT / "src" / "userscope")
    assert not found, (
        "these modules reach into the session table's private members; give the "
        f"operation a public name on SessionTable (container/_table.py): {found}"
    )


def test_the_table_gate_catches_a_private_read(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "container").mkdir(parents=True)
    (package / "container" / "_table.py").write_text(
        "class SessionTable:\n"
        "    def _acquire(self):\n        self._users = {}\n"
        "    def hold(self):\n        return self._acquire()\n"
    )
    (package / "container" / "_scopes.py").write_text(
        "def open(owner, frame):\n    owner._acquire()\n    return frame[4]._users, owner.hold()\n"
    )
    assert foreign_table_reads(package) == [
        "container/_scopes.py:2: owner._acquire",
        "container/_scopes.py:3: frame[4]._users",
    ]
