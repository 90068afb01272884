"""Shared fixtures for the core tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dependency_injector import containers

import userscope as us
from support import Log, ctx_for, make_container


@pytest.fixture
def log() -> Log:
    return Log()


@pytest.fixture
def Container(log: Log) -> type[containers.DeclarativeContainer]:
    return make_container(log)


@pytest.fixture
def sessions() -> Iterator[us.UserSessions]:
    runtime = us.UserSessions()
    yield runtime
    if not runtime.stats().closed:
        runtime.close()


@pytest.fixture
def alice() -> us.UserExecutionContext:
    return ctx_for("alice")


@pytest.fixture
def bob() -> us.UserExecutionContext:
    return ctx_for("bob")
