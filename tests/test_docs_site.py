"""The docs site: every public import surface has a rendered API reference, every page is
in the navigation (``mkdocs build --strict`` in ``scripts/check`` renders them)."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = [
    "userscope",
    "userscope.adapters.fastapi",
    "userscope.events",
    "userscope.testing",
    "userscope.audit",
]


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_surface_is_in_the_api_reference(name: str) -> None:
    assert importlib.import_module(name).__all__, f"{name} has no public names"
    reference = (ROOT / "docs" / "reference.md").read_text()
    assert re.search(rf"^::: {re.escape(name)}$", reference, re.MULTILINE)


def test_every_page_is_in_the_navigation_and_the_reference_is_rendered() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    pages = {path.name for path in (ROOT / "docs").glob("*.md")}
    assert pages == set(re.findall(r"^  - [^:]+: (\S+\.md)$", config, re.MULTILINE))
    assert "  - mkdocstrings:" in config
    assert "docstring_style: google" in config


def test_the_reference_renders_examples_as_code_and_roles_as_inline_code() -> None:
    spec = importlib.util.spec_from_file_location(
        "griffe_examples", ROOT / "scripts" / "griffe_examples.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert doctest.testmod(module).failed == 0
    text = "Uses :meth:`~UserSessions.close`.\n\n    Example:\n        >>> 1 + 1\n        2\n"
    assert module.rewrite(text) == (
        "Uses `UserSessions.close`.\n\n    Examples:\n        >>> 1 + 1\n        2\n"
    )
    assert "extensions: [scripts/griffe_examples.py]" in (ROOT / "mkdocs.yml").read_text()
