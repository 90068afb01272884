"""An admin command: clear one conversation thread."""

from __future__ import annotations

from .agents import get_registry


def clear_thread(thread_id: str) -> int:
    """Forget a thread's agent; return how many messages it had."""
    agent = get_registry().pop(thread_id)
    return 0 if agent is None else len(agent.history)
