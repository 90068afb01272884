"""userscope: request, connection and user scopes for dependency-injector.

Declare per-user objects as scoped providers; resolve them only inside a scope
opened by :class:`UserSessions`; every cleanup runs when the scope exits.

Example:
    >>> import userscope as us
    >>> from dependency_injector import containers
    >>> class Container(containers.DeclarativeContainer):
    ...     context = us.CurrentContext()
    ...     notes = us.RequestScoped(list)
    >>> sessions = us.UserSessions()
    >>> with sessions.request(us.UserExecutionContext(user_id="alice", thread_id="t-1")):
    ...     Container.notes().append(Container.context().user_id)
"""

from userscope.container import (
    LeakReport,
    Scope,
    ScopeObserver,
    SessionStats,
    UserSessions,
    current_context,
    current_scope,
    validate,
)
from userscope.context import UserExecutionContext
from userscope.errors import (
    AsyncCleanupRequiredError,
    AsyncScopeRequiredError,
    BlockingWaitError,
    CaptiveDependencyError,
    CleanupError,
    CleanupTimeoutError,
    DependencyCycleError,
    FactoryProtocolError,
    IsolationError,
    OutOfScopeError,
    ScopeClosedError,
    ScopeLimitError,
    ScopeReuseError,
    ShutdownTimeoutError,
    UserscopeError,
)
from userscope.providers import (
    ConnectionScoped,
    CurrentContext,
    RequestScoped,
    ScopedProvider,
    UserScoped,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncCleanupRequiredError",
    "AsyncScopeRequiredError",
    "BlockingWaitError",
    "CaptiveDependencyError",
    "CleanupError",
    "CleanupTimeoutError",
    "ConnectionScoped",
    "CurrentContext",
    "DependencyCycleError",
    "FactoryProtocolError",
    "IsolationError",
    "LeakReport",
    "OutOfScopeError",
    "RequestScoped",
    "Scope",
    "ScopeClosedError",
    "ScopeLimitError",
    "ScopeObserver",
    "ScopeReuseError",
    "ScopedProvider",
    "SessionStats",
    "ShutdownTimeoutError",
    "UserExecutionContext",
    "UserScoped",
    "UserSessions",
    "UserscopeError",
    "current_context",
    "current_scope",
    "validate",
]
