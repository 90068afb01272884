"""Fixtures for the event-delivery tests: a real redis-server and broker factories."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from events_support import INSTALL_HINT, BrokerFactory, RedisServer

from userscope.events import InMemoryBroker, RedisBroker

SECRET = "test-secret-0123456789abcdef0123456789abcdef"

# short timings so that the whole module runs in a few seconds
FAST: dict[str, Any] = {"heartbeat_interval": 0.05, "heartbeat_timeout": 0.3}


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server for the whole session; FAILS (never skips) when not installed."""
    if shutil.which("redis-server") is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of its own (for tests that stop and restart it)."""
    if shutil.which("redis-server") is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["memory", "redis"])
def broker_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_broker(
    broker_kind: str, request: pytest.FixtureRequest
) -> AsyncIterator[BrokerFactory]:
    """Build brokers of the parametrised kind; every one is closed at teardown."""
    made: list[InMemoryBroker | RedisBroker] = []
    prefix = f"test:{uuid.uuid4().hex[:12]}"
    url = request.getfixturevalue("redis_server").url if broker_kind == "redis" else ""

    def factory(**overrides: Any) -> InMemoryBroker | RedisBroker:
        options = {**FAST, **overrides}
        broker: InMemoryBroker | RedisBroker
        if broker_kind == "memory":
            broker = InMemoryBroker(**options)
        else:
            options.setdefault("block_timeout", 0.5)
            options.setdefault("socket_timeout", 2.0)
            options.setdefault("reconnect_backoff", (0.02, 0.2))
            broker = RedisBroker(url, secret=SECRET, key_prefix=prefix, **options)
        made.append(broker)
        return broker

    yield factory
    for broker in made:
        await broker.aclose()
