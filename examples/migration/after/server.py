"""Connections and messages, each in its own scope."""

from __future__ import annotations

from collections.abc import AsyncIterator

import userscope as us

from .accessors import get_agent_websocket_bridge
from .container import Container
from .websocket_bridge import Socket


async def serve_connection(
    sessions: us.UserSessions,
    ctx: us.UserExecutionContext,
    socket: Socket,
    messages: AsyncIterator[tuple[str, str]],
) -> None:
    """One WebSocket connection: a CONNECTION scope, and a REQUEST scope per message."""
    async with sessions.connection(ctx):
        get_agent_websocket_bridge().attach(socket)  # an old call, now inside a scope
        async for thread_id, text in messages:
            async with sessions.request(ctx.for_request(thread_id=thread_id)):
                await handle_message(text)


async def handle_message(text: str) -> None:
    ctx = Container.context()
    agent = Container.registry().get_or_create(ctx.thread_id)
    reply = agent.answer(text)
    await Container.bridge().emit({"user_id": ctx.user_id, "reply": reply})
