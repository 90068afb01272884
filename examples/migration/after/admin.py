"""The admin command, found by the legacy report and then migrated."""

from __future__ import annotations

import userscope as us

from .accessors import get_registry
from .container import Container


def clear_thread(thread_id: str) -> int:
    """Not migrated yet: runs outside any scope, so the shim falls back (or refuses)."""
    agent = get_registry().pop(thread_id)
    return 0 if agent is None else len(agent.history)


def clear_user_thread(sessions: us.UserSessions, user_id: str, thread_id: str) -> int:
    """The migrated command: the caller names the user; the scope gives their registry."""
    with sessions.user(us.UserExecutionContext(user_id=user_id, thread_id=thread_id)):
        agent = Container.registry().pop(thread_id)
    return 0 if agent is None else len(agent.history)
