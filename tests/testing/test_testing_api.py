"""`userscope.testing`: a sorted public surface, documented, with running examples."""

from __future__ import annotations

import inspect

import userscope.testing


def test_all_is_sorted_and_complete() -> None:
    assert userscope.testing.__all__ == sorted(userscope.testing.__all__)
    public = {n for n in dir(userscope.testing) if not n.startswith("_")}
    modules = {n for n in public if inspect.ismodule(getattr(userscope.testing, n))}
    assert public - modules == set(userscope.testing.__all__)


def test_every_public_name_has_an_example() -> None:
    for name in userscope.testing.__all__:
        doc = inspect.getdoc(getattr(userscope.testing, name)) or ""
        assert "Example" in doc, name
