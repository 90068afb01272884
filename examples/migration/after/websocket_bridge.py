"""The WebSocket bridge (no module instance, no lazy accessor)."""

from __future__ import annotations

from typing import Any, Protocol


class Socket(Protocol):
    async def send_json(self, data: Any) -> None: ...


class AgentWebSocketBridge:
    """Sends agent events to the attached WebSocket."""

    def __init__(self) -> None:
        self.socket: Socket | None = None

    def attach(self, socket: Socket) -> None:
        self.socket = socket

    async def emit(self, event: dict[str, Any]) -> None:
        if self.socket is not None:
            await self.socket.send_json(event)
