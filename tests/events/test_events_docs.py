"""The examples in the events docstrings run and pass."""

from __future__ import annotations

import doctest
import importlib
import inspect
from pathlib import Path

import pytest

MODULES = [
    "userscope.events",
    "userscope.events._bridge",
    "userscope.events._config",
    "userscope.events._errors",
    "userscope.events._identity",
    "userscope.events._memory",
    "userscope.events._redis",
    "userscope.events._runs",
    "userscope.events._subscription",
    "userscope.events._types",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_public_surface_is_sorted_and_documented() -> None:
    events = importlib.import_module("userscope.events")
    assert events.__all__ == sorted(events.__all__)
    for name in events.__all__:
        obj = getattr(events, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, name
            assert "Example:" in obj.__doc__, name


def test_quick_start_in_docs_runs() -> None:
    text = (Path(__file__).parents[2] / "docs" / "events.md").read_text()
    block = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert "asyncio.run(main())" in block
    exec(compile(block, "docs/events.md", "exec"), {"__name__": "docs_events"})
