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

``COMPILED`` is ``True`` when every module of the hot path runs as its compiled
(Cython) extension, ``False`` when the pure-Python modules run (``USERSCOPE_PURE=1``,
or the extension was not built); see docs/compiled.md.

    >>> isinstance(us.COMPILED, bool)
    True
"""

# First: `_mode` installs the finder that picks compiled or pure runtime modules.
from userscope import _mode
from userscope.container import (
    LeakReport,
    Scope,
    ScopeObserver,
    SessionStats,
    UserSessions,
    current_context,
    current_scope,
    graph,
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
    GraphFormatError,
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

#: Whether every module of the hot path runs compiled (see :mod:`userscope._mode`).
COMPILED: bool = _mode.compiled()

__all__ = [
    "AsyncCleanupRequiredError",
    "AsyncScopeRequiredError",
    "BlockingWaitError",
    "COMPILED",
    "CaptiveDependencyError",
    "CleanupError",
    "CleanupTimeoutError",
    "ConnectionScoped",
    "CurrentContext",
    "DependencyCycleError",
    "FactoryProtocolError",
    "GraphFormatError",
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
    "graph",
    "validate",
]


def _present_as_public() -> None:
    """Give every exported name the public module (``repr`` shows ``userscope.UserSessions``,
    not the private module it is defined in; pickling resolves it through ``userscope``)."""
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("userscope."):
            obj.__module__ = __name__


_present_as_public()
