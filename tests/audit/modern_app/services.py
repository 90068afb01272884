"""Services. Per-user state lives in scoped objects, never in module globals."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx

from .models import AgentEvent

logger = logging.getLogger(__name__)
_HANDLERS: dict[str, Any] = {}


def handler(kind: str) -> Any:
    def register(func: Any) -> Any:
        _HANDLERS[kind] = func
        return func

    return register


class EventSerializer:
    """Stateless: turns events into JSON."""

    def dumps(self, event: AgentEvent) -> str:
        return json.dumps({"kind": event.kind, "payload": event.payload})


class Conversation:
    """One user's conversation; built per USER scope with the user's context."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.turns: list[dict[str, Any]] = []
        self.by_thread: dict[str, list[str]] = {}

    def add(self, thread_id: str, text: str) -> None:
        self.by_thread.setdefault(thread_id, []).append(text)


class AgentRunner:
    def __init__(self, client: httpx.AsyncClient, conversation: Conversation) -> None:
        self.client = client
        self.conversation = conversation

    async def run(self, user_id: str, prompt: str) -> str:
        sessions: dict[str, str] = {}
        sessions[user_id] = prompt
        logger.info("run for %s", user_id)
        response = await self.client.post("/v1/run", json={"prompt": prompt})
        return response.text
