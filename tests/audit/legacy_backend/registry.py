"""Agent registry: one instance for the whole process."""

from __future__ import annotations

import threading
from typing import Any


class AgentRegistry:
    """Maps user ids to their running agents."""

    def __init__(self) -> None:
        self._agents: dict[str, Any] = {}
        self._lock = threading.Lock()

    def register(self, user_id: str, agent: Any) -> None:
        with self._lock:
            self._agents[user_id] = agent

    def get(self, user_id: str) -> Any:
        return self._agents.get(user_id)


global_registry = AgentRegistry()


def get_registry() -> AgentRegistry:
    return global_registry


class EventHub:
    """Fan-out of agent events (matches the extra `Hub` pattern from pyproject.toml)."""

    def __init__(self) -> None:
        self.listeners: list[Any] = []


event_hub = EventHub()
metrics_cache = dict()  # not keyed by user, never mutated: no finding
