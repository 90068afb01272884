"""Shared fixtures for the audit tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

try:  # the package is normally installed (pip install -e .); fall back to the src tree
    import userscope.audit  # noqa: F401
except ModuleNotFoundError:  # pragma: no cover - depends on how the tree is set up
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

HERE = Path(__file__).resolve().parent


@pytest.fixture
def legacy_backend() -> Path:
    """The deliberately bad legacy backend fixture (has its own pyproject.toml)."""
    return HERE / "legacy_backend"


@pytest.fixture
def modern_app() -> Path:
    """The clean FastAPI app fixture (zero findings expected)."""
    return HERE / "modern_app"
