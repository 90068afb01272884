"""The chat backend of `legacy_chat.py`, rewritten with userscope scopes.

Every per-user object is a scoped provider: resolved inside a scope, one per
user, dropped when the scope closes. `userscope audit` finds nothing here.
"""

from __future__ import annotations

from typing import Any

from dependency_injector import containers

from userscope import CurrentContext, RequestScoped, UserScoped


class ConversationState:
    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.messages: list[str] = []


class AgentRegistry:
    def __init__(self) -> None:
        self.agents: dict[str, Any] = {}


class Container(containers.DeclarativeContainer):
    context = CurrentContext()
    registry = UserScoped(AgentRegistry)
    conversation = UserScoped(ConversationState, user_id=context.provided.user_id)
    bridge = RequestScoped(object)


def remember(text: str) -> list[str]:
    """Append to the current user's conversation (needs an active scope)."""
    conversation: ConversationState = Container.conversation()
    conversation.messages.append(text)
    return conversation.messages
