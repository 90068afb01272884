"""The examples in the public docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "userscope",
    "userscope._durations",
    "userscope._log",
    "userscope.context",
    "userscope.errors",
    "userscope.container._expiry",
    "userscope.container._leaks",
    "userscope.container._locks",
    "userscope.container._observe",
    "userscope.container._scope",
    "userscope.container._sessions",
    "userscope.container._stats",
    "userscope.container._validate",
    "userscope.providers._scoped",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
