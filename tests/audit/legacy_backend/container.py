"""dependency-injector container that shares per-user objects between users."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dependency_injector import containers, providers

from .websocket_bridge import AgentWebSocketBridge


class Settings:
    def __init__(self, database_url: str = "sqlite://") -> None:
        self.database_url = database_url


class UserAgentState:
    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.history: list[dict[str, Any]] = []


class ConversationMemory:
    def __init__(self, context: Any, max_turns: int = 50) -> None:
        self.context = context
        self.max_turns = max_turns


def init_user_session(user_id: str) -> Iterator[dict[str, Any]]:
    session: dict[str, Any] = {"user_id": user_id}
    yield session
    session.clear()


class ToolRunner:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout


class Container(containers.DeclarativeContainer):
    config = providers.Configuration()
    settings = providers.Singleton(Settings)
    user_state = providers.Singleton(UserAgentState, user_id=config.default_user)
    memory = providers.ThreadLocalSingleton(ConversationMemory, context=None)
    bridge = providers.ThreadSafeSingleton(AgentWebSocketBridge)
    user_session = providers.Resource(init_user_session, user_id="system")
    tool_runner = providers.Singleton(ToolRunner, timeout=30.0)
    per_request_state = providers.Factory(UserAgentState, user_id=config.user_id)
