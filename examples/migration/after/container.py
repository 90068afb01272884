"""The container: one registry per user, one bridge per connection."""

from __future__ import annotations

from dependency_injector import containers

import userscope as us

from .agents import AgentRegistry
from .websocket_bridge import AgentWebSocketBridge


class Container(containers.DeclarativeContainer):
    context = us.CurrentContext()
    registry = us.UserScoped(AgentRegistry)
    bridge = us.ConnectionScoped(AgentWebSocketBridge)
