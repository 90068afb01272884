"""`message_scope` driven directly (no server): a fake socket whose ASGI scope carries the
middleware's connection state, inside an open CONNECTION scope, as the middleware has it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from dependency_injector import containers

import userscope as us
from userscope.adapters.fastapi import NotInstalledError, message_scope
from userscope.adapters.fastapi._middleware import ConnectionState
from userscope.adapters.fastapi._state import STATE_KEY


class _Url:
    path = "/ws"


class FakeSocket:
    """What `message_scope` reads of a starlette WebSocket, and what it sends."""

    def __init__(self, state: ConnectionState | None) -> None:
        self.scope: dict[str, Any] = {} if state is None else {STATE_KEY: state}
        self.url = _Url()
        self.sent: list[dict[str, Any]] = []

    async def send_json(self, data: dict[str, Any]) -> None:
        self.sent.append(data)


def suspending_failure(log: list[str]) -> Any:
    async def factory(ctx: us.UserExecutionContext) -> AsyncIterator[str]:
        yield ctx.request_id
        await asyncio.sleep(0)  # the cleanup suspends: the exit continues in a coroutine
        log.append(ctx.request_id)
        raise RuntimeError("cleanup failed after suspending")

    return factory


async def test_a_cleanup_failing_after_it_suspended_is_reported_and_the_block_exits() -> None:
    log: list[str] = []

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        flaky = us.RequestScoped(suspending_failure(log), context)

    sessions = us.UserSessions()
    ctx = us.UserExecutionContext(user_id="alice", thread_id="t-1")

    async def send(message: Any) -> None:
        pass

    state = ConnectionState(sessions=sessions, context=ctx, expires_at=None, send=send)
    socket = FakeSocket(state)
    async with asyncio.timeout(10), sessions.connection(ctx):
        async with message_scope(socket) as message:  # type: ignore[arg-type]
            request_id = await C.flaky.async_()
            assert message.request_id == request_id != ctx.request_id
        # the block exited normally; the failure went to the client
        assert log == [request_id]
        assert [(e["error"], e["request_id"]) for e in socket.sent] == [
            ("cleanup_failed", request_id)
        ]
        assert sessions.stats().requests == 0
        assert sessions.stats().cleanups_failed == 1
    await sessions.aclose()


async def test_message_scope_refusals_raise_on_entry_and_once() -> None:
    socket = FakeSocket(None)
    scope = message_scope(socket)  # type: ignore[arg-type]
    with pytest.raises(NotInstalledError) as info:
        async with scope:
            pass  # pragma: no cover - refused on entry
    assert (info.value.provider, info.value.path) == ("message_scope()", "/ws")
    with pytest.raises(us.ScopeReuseError) as reuse:
        async with scope:
            pass  # pragma: no cover - refused on entry
    assert (reuse.value.kind, reuse.value.problem) == ("request", "used")
