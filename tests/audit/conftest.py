"""Shared fixtures for the audit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.fixture
def legacy_backend() -> Path:
    """The deliberately bad legacy backend fixture (has its own pyproject.toml)."""
    return HERE / "legacy_backend"


@pytest.fixture
def modern_app() -> Path:
    """The clean FastAPI app fixture (zero findings expected)."""
    return HERE / "modern_app"
