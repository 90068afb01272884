"""One mechanism for every example: Sybil runs the docstring examples of the whole
package (``src/userscope``) and every ``python`` block of ``docs/*.md`` and README.md.

A docstring's examples run as a reader copies them: in a namespace of their own, without
their module's globals, so each docstring imports what it uses.

A docs page's blocks run in order in one namespace, so a page can build an example
step by step; top-level ``await`` / ``async with`` run on one event loop per page.
A block that cannot run as copied (a file of a user's test suite, a shell session in
Python syntax) says so right above it with ``<!-- skip: next -->`` and a reason in the
surrounding text; everything else runs.
"""

from __future__ import annotations

import ast
import asyncio
import bisect
import contextvars
import inspect
import re
from pathlib import Path
from typing import Any

from sybil import Document, Example, Sybil
from sybil.document import PythonDocStringDocument
from sybil.example import NotEvaluated
from sybil.parsers.markdown import CodeBlockParser, SkipParser
from sybil.parsers.rest import DocTestParser

_FLAGS = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
_ROOT = Path(__file__).resolve().parent
_QUOTE = re.compile(r"# ((?:examples|src|tests)/[\w./-]+\.py)\n")


def _check_quote(example: Example, path: str) -> None:
    """A block headed ``# examples/x.py`` quotes that file: each part between lines
    of ``...`` appears in it exactly as written."""
    source = (_ROOT / path).read_text()
    body = str(example.parsed).split("\n", 1)[1]
    for chunk in body.split("\n...\n"):
        if chunk.strip("\n") not in source:
            raise AssertionError(
                f"{example.path}, line {example.line}: the block quoting {path} is out of "
                f"date; copy the current text of {path} into it:\n{chunk}"
            )


def _run_block(example: Example) -> None:
    """Evaluate one code block; top-level awaits run on the page's event loop.

    A block whose first line names a file of this repository (``# examples/x.py``) is an
    excerpt of that file, which its own tests run: it is checked against the file instead.
    """
    quoted = _QUOTE.match(example.parsed)
    if quoted:
        _check_quote(example, quoted.group(1))
        return
    source = "\n" * (example.line + example.parsed.line_offset) + example.parsed
    code = compile(source, example.path, "exec", flags=_FLAGS, dont_inherit=True)
    namespace = example.namespace
    context: contextvars.Context = namespace["__userscope_context__"]
    result: Any = context.run(eval, code, namespace)
    if inspect.iscoroutine(result):
        loop: asyncio.AbstractEventLoop = namespace["__userscope_loop__"]
        loop.run_until_complete(loop.create_task(result, context=context))
    namespace.pop("__builtins__", None)


def _page_setup(namespace: dict[str, Any]) -> None:
    namespace["__name__"] = "docs_page"
    namespace["__userscope_loop__"] = asyncio.new_event_loop()
    # like one REPL session: a scope entered in one block is still active in the next
    namespace["__userscope_context__"] = contextvars.copy_context()


def _page_teardown(namespace: dict[str, Any]) -> None:
    loop: asyncio.AbstractEventLoop = namespace.pop("__userscope_loop__")
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
    namespace.pop("__userscope_context__")


_pages = Sybil(
    parsers=[SkipParser(), CodeBlockParser("python", _run_block)],
    patterns=["docs/*.md", "README.md"],
    setup=_page_setup,
    teardown=_page_teardown,
    name="docs",
)


class _CopiedDocstrings(PythonDocStringDocument):
    """A module whose docstring examples run as a reader copies them: each docstring in a
    namespace of its own, without the module's globals or an earlier docstring's names."""

    def __init__(self, text: str, path: str) -> None:
        super().__init__(text, path)
        self.pop_evaluator(self.import_document)  # the module's globals stay out
        self._starts: list[int] | None = None  # where each docstring starts in the source
        self._current = -1
        self.push_evaluator(self._isolate)

    def _isolate(self, example: Example) -> None:
        """Before the first example of each docstring: a fresh namespace."""
        if self._starts is None:
            self._starts = sorted(start for start, _, _ in self.extract_docstrings(self.text))
        docstring = bisect.bisect_right(self._starts, example.start) - 1
        if docstring != self._current:
            self._current = docstring
            self.namespace.clear()
            self.namespace["__name__"] = "docstring_example"
        raise NotEvaluated()


_DOCUMENT_TYPES: dict[str | None, type[Document]] = {".py": _CopiedDocstrings}
_docstrings = Sybil(
    parsers=[DocTestParser(optionflags=__import__("doctest").ELLIPSIS)],
    document_types=_DOCUMENT_TYPES,
    # PurePath.match (Python 3.11) reads "**" as one directory: one pattern per depth
    patterns=["src/userscope/*.py", "src/userscope/*/*.py", "src/userscope/*/*/*.py"],
    excludes=["**/__main__.py"],
    name="docstrings",
)

pytest_collect_file = (_pages + _docstrings).pytest()


# -- the `slow` marker: one list, kept here rather than in each test module ------------
# A test is slow when it starts something real: a uvicorn server, redis-server, worker
# processes, Chromium, valgrind, or a benchmark script. `scripts/check --fast` (the inner
# loop) skips them; CI (`scripts/check`) runs everything.
_SLOW_FIXTURES = frozenset({"live_server", "redis_server", "fresh_redis"})
_SLOW_MODULES = (
    "tests/benchmarks/",
    "docs/identity.md",  # runs a real OpenID Connect provider process
    # real uvicorn servers, identity providers, browsers, worker processes
    "tests/adapters/test_demo_browser.py",
    "tests/adapters/test_fastapi_concurrency.py",
    "tests/adapters/test_fastapi_hardening.py",
    "tests/adapters/test_fastapi_live.py",
    "tests/adapters/test_fastapi_sharp_edges.py",
    "tests/adapters/test_identity_hardening.py",
    "tests/adapters/test_identity_keys.py",  # JWKS servers and their time-outs
    "tests/adapters/test_identity_oidc.py",
    "tests/events/test_events_processes.py",
    "tests/events/test_events_workers.py",
    "tests/test_getting_started.py",
    # mypy, pytest or an example script in a subprocess
    "tests/typing/test_mypy_plugin.py",
    "tests/testing/test_mypy.py",
    "tests/testing/test_docs_async_snippet.py",
    "tests/test_readme.py",
    "examples/events/test_events_example.py",
    "examples/identity/test_identity_example.py",
    "examples/quickstart/test_quickstart.py",
    # the bounded stress run (seconds by design)
    "tests/test_stress.py",
)


# single tests that run a script or `python -m` in a subprocess, or wait out a time-out
_SLOW_NAMES = ("runs_as_a_script", "python_dash_m", "broker_is_down", "mode_comes_from_the_env")


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """Mark the tests that start real servers, processes, browsers or valgrind ``slow``."""
    import pytest

    slow = pytest.mark.slow
    for item in items:
        path = Path(str(item.path)).resolve().relative_to(_ROOT).as_posix()
        fixtures = set(getattr(item, "fixturenames", ()))
        redis_param = "redis" in getattr(getattr(item, "callspec", None), "params", {}).values()
        named = any(part in item.name for part in _SLOW_NAMES)
        if path.startswith(_SLOW_MODULES) or fixtures & _SLOW_FIXTURES or redis_param or named:
            item.add_marker(slow)
