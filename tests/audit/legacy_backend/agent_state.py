"""Shared agent state objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SharedAgentState:
    messages: list[dict[str, Any]] = field(default_factory=list)
    tool_results: dict[str, Any] = field(default_factory=dict)


class _Holder:
    current: SharedAgentState | None = None


shared_state = SharedAgentState()
_holder = _Holder()


def get_shared_state() -> SharedAgentState:
    if _holder.current is None:
        _holder.current = SharedAgentState()
    return _holder.current


class EventLoopManager:
    def __init__(self) -> None:
        self.loops: dict[str, Any] = {}


_loop_manager = None
if _loop_manager is None:
    _loop_manager = EventLoopManager()

_user_sessions: dict[str, dict[str, Any]] = {}


def open_session(session_id: str, data: dict[str, Any]) -> None:
    _user_sessions[session_id] = data


def close_session(session_id: str) -> None:
    del _user_sessions[session_id]
