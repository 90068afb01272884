"""WebSocket bridge with the classic lazy accessor."""

from __future__ import annotations

from typing import Any


class AgentWebSocketBridge:
    def __init__(self) -> None:
        self.connections: dict[str, Any] = {}

    async def emit(self, user_id: str, event: dict[str, Any]) -> None:
        socket = self.connections.get(user_id)
        if socket is not None:
            await socket.send_json(event)


_bridge: AgentWebSocketBridge | None = None


def get_agent_websocket_bridge() -> AgentWebSocketBridge:
    global _bridge
    if _bridge is None:
        _bridge = AgentWebSocketBridge()
    return _bridge


def reset_bridge_for_tests() -> None:
    global _bridge
    _bridge = None
