"""Fixtures for the FastAPI adapter tests: a real uvicorn server on a free loopback port.

The helpers behind them (and the ones test modules import) live in ``adapter_support``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from adapter_support import AdapterApp, build_adapter_app, make_token, serve
from starlette.types import ASGIApp


@pytest.fixture
def live_server() -> Callable[[ASGIApp], Any]:
    """``with live_server(app) as server:`` runs ``app`` on a real uvicorn server."""
    return serve


@pytest.fixture
def token() -> Callable[..., str]:
    """Factory fixture: ``token("alice", exp_in=60)`` signs a test token."""
    return make_token


@pytest.fixture
def adapter_app() -> AdapterApp:
    return build_adapter_app()
