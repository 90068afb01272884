"""A chat backend written the legacy way: per-user state in process-wide singletons.

`userscope audit` reports every one of them (see `audit_demo.py`); `scoped_chat.py`
is the same backend rewritten with userscope scopes.
"""

from __future__ import annotations

from typing import Any

from dependency_injector import containers, providers


class ConversationState:
    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.messages: list[str] = []


class AgentRegistry:
    def __init__(self) -> None:
        self.agents: dict[str, Any] = {}

    def register(self, user_id: str, agent: Any) -> None:
        self.agents[user_id] = agent  # per-user entries: the audit ranks it an error


class AgentWebSocketBridge:
    def __init__(self) -> None:
        self.listeners: list[Any] = []

    def subscribe(self, callback: Any) -> None:
        self.listeners.append(callback)  # state without an identity key: a warning


registry = AgentRegistry()  # US001 (error)
_histories: dict[str, list[str]] = {}
_bridge: AgentWebSocketBridge | None = None


def get_bridge() -> AgentWebSocketBridge:  # US002 (warning)
    global _bridge
    if _bridge is None:
        _bridge = AgentWebSocketBridge()
    return _bridge


def remember(user_id: str, text: str) -> None:
    _histories.setdefault(user_id, []).append(text)  # makes _histories US006


class Container(containers.DeclarativeContainer):
    conversation = providers.Singleton(ConversationState, user_id="anonymous")  # US005
