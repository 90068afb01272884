"""The old singletons, kept only as fallbacks of the legacy shims.

Step 6 of docs/migration.md deletes this file, once the report shows no fallback.
"""

from __future__ import annotations

from .agents import AgentRegistry
from .websocket_bridge import AgentWebSocketBridge

global_registry = AgentRegistry()


def get_registry() -> AgentRegistry:
    return global_registry


_bridge: AgentWebSocketBridge | None = None


def get_agent_websocket_bridge() -> AgentWebSocketBridge:
    global _bridge
    if _bridge is None:
        _bridge = AgentWebSocketBridge()
    return _bridge
