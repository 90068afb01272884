"""Message handlers that still call the deprecated accessors."""

from __future__ import annotations

from typing import Any

from . import registry as reg
from .websocket_bridge import get_agent_websocket_bridge

_request_counts: dict[str, int] = {}


async def handle_message(user_id: str, message: dict[str, Any]) -> None:
    bridge = get_agent_websocket_bridge()
    agent = reg.global_registry.get(user_id)
    _request_counts[user_id] = _request_counts.get(user_id, 0) + 1
    await bridge.emit(user_id, {"agent": repr(agent), "echo": message})


def lookup_agent(user_id: str) -> Any:
    return reg.get_registry().get(user_id)


def debug_bridge() -> Any:
    return get_agent_websocket_bridge()  # userscope: ignore[US007]


def metrics() -> dict[str, int]:
    return dict(_request_counts)
