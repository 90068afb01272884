"""Scope runtime: scope levels, `UserSessions`, observers, and container validation."""

from userscope.container._graph import graph
from userscope.container._leaks import LeakReport
from userscope.container._observe import ScopeObserver
from userscope.container._scope import Scope, current_context, current_scope
from userscope.container._sessions import UserSessions
from userscope.container._stats import SessionStats
from userscope.container._validate import validate

__all__ = [
    "LeakReport",
    "Scope",
    "ScopeObserver",
    "SessionStats",
    "UserSessions",
    "current_context",
    "current_scope",
    "graph",
    "validate",
]
