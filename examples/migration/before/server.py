"""Connection and message handlers: they reach the singletons through the accessors."""

from __future__ import annotations

from .agents import get_registry
from .websocket_bridge import Socket, get_agent_websocket_bridge


async def on_connect(user_id: str, socket: Socket) -> None:
    get_agent_websocket_bridge().attach(socket)


async def handle_message(user_id: str, thread_id: str, text: str) -> None:
    agent = get_registry().get_or_create(thread_id)
    reply = agent.answer(text)
    await get_agent_websocket_bridge().emit({"user_id": user_id, "reply": reply})
