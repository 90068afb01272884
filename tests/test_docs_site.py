"""The docs site: every public import surface has a rendered API reference, every page is
in the navigation (``mkdocs build --strict`` in ``scripts/check`` renders them)."""

from __future__ import annotations

import importlib
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
    assert re.search(rf"^::: {re.escape(name)}$", reference, re.M)


def test_every_page_is_in_the_navigation_and_the_reference_is_rendered() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    pages = {path.name for path in (ROOT / "docs").glob("*.md")}
    assert pages == set(re.findall(r"^  - [^:]+: (\S+\.md)$", config, re.M))
    assert "  - mkdocstrings:" in config
    assert "docstring_style: google" in config
