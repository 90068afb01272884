"""The userscope error tree.

Every error userscope raises derives from :class:`UserscopeError` and also from
the nearest built-in exception, so ``except LookupError`` keeps working in code
that predates userscope. Each error carries its data as attributes and builds
its message from them; the message always says what to do next.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from userscope.container._scope import Scope

__all__ = [
    "CaptiveDependencyError",
    "CleanupError",
    "GraphFormatError",
    "IsolationError",
    "OutOfScopeError",
    "ScopeClosedError",
    "ScopeLimitError",
    "UserscopeError",
]

_OPEN_HINT = {
    "USER": "open one with `with sessions.user(ctx):` or any connection/request scope of that user",
    "CONNECTION": "open one with `async with sessions.connection(ctx):` or `sessions.request(ctx)`",
    "REQUEST": "open one with `async with sessions.request(ctx):`",
}


class UserscopeError(Exception):
    """Base class of every error raised by userscope.

    Example:
        >>> import userscope as us
        >>> issubclass(us.OutOfScopeError, us.UserscopeError)
        True
    """


class OutOfScopeError(UserscopeError, LookupError):
    """A scoped provider was resolved while no scope of its level was active.

    Attributes:
        provider: the provider's name in its container, e.g. ``"Container.agent"``.
        required_scope: the scope level the provider needs.
        active_scope: the innermost active scope level, or ``None`` when none is open.

    Example:
        >>> import userscope as us
        >>> err = us.OutOfScopeError("Container.agent", us.Scope.REQUEST, None)
        >>> err.required_scope is us.Scope.REQUEST
        True
    """

    def __init__(
        self,
        provider: str,
        required_scope: Scope,
        active_scope: Scope | None,
        hint: str | None = None,
    ) -> None:
        self.provider = provider
        self.required_scope = required_scope
        self.active_scope = active_scope
        self.hint = hint
        active = (
            "no scope is active"
            if active_scope is None
            else (f"the innermost active scope is {active_scope.name}")
        )
        message = (
            f"{provider} is {required_scope.name}-scoped but {active}; "
            f"{hint or _OPEN_HINT[required_scope.name]}. "
            "Scoped providers never fall back to a shared instance."
        )
        super().__init__(message)


class IsolationError(UserscopeError, PermissionError):
    """A scope for one user was opened inside a scope of another user.

    Attributes:
        expected_user_id: the user of the active (outer) scope.
        actual_user_id: the user of the scope that was refused.

    Example:
        >>> import userscope as us
        >>> us.IsolationError("alice", "bob").actual_user_id
        'bob'
    """

    def __init__(self, expected_user_id: str, actual_user_id: str) -> None:
        self.expected_user_id = expected_user_id
        self.actual_user_id = actual_user_id
        super().__init__(
            f"refused to open a scope for user {actual_user_id!r} inside a scope of user "
            f"{expected_user_id!r}; nothing was opened. Open the other user's scope outside "
            "this one (for example in its own task), never nested."
        )


class ScopeClosedError(UserscopeError, RuntimeError):
    """A scope (or the whole :class:`~userscope.UserSessions`) was used after it closed.

    Attributes:
        scope: the level of the closed scope, or ``None`` for the sessions object itself.
        user_id: the user the closed scope belonged to, when known.
        provider: the provider being resolved, when the error came from resolution.

    Example:
        >>> import userscope as us
        >>> us.ScopeClosedError(us.Scope.REQUEST, "alice").user_id
        'alice'
    """

    def __init__(
        self, scope: Scope | None, user_id: str | None = None, provider: str | None = None
    ) -> None:
        self.scope = scope
        self.user_id = user_id
        self.provider = provider
        what = "the UserSessions runtime" if scope is None else f"the {scope.name} scope"
        whose = f" of user {user_id!r}" if user_id else ""
        via = f" while resolving {provider}" if provider else ""
        super().__init__(
            f"{what}{whose} is already closed{via}. A task or thread that outlived its scope "
            "must not keep resolving from it: open a new scope for the new unit of work."
        )


class ScopeLimitError(UserscopeError, RuntimeError):
    """A per-user or global limit of :class:`~userscope.UserSessions` was reached.

    Nothing was opened when this is raised.

    Attributes:
        limit: the name of the limit, e.g. ``"max_connections_per_user"``.
        user_id: the user that hit the limit (``None`` for global limits).
        current: the value at the moment of refusal.
        maximum: the configured maximum.

    Example:
        >>> import userscope as us
        >>> us.ScopeLimitError("max_users", None, 100, 100).limit
        'max_users'
    """

    def __init__(self, limit: str, user_id: str | None, current: int, maximum: int) -> None:
        self.limit = limit
        self.user_id = user_id
        self.current = current
        self.maximum = maximum
        whose = f" for user {user_id!r}" if user_id is not None else ""
        super().__init__(
            f"limit {limit}={maximum} reached{whose} (current: {current}); nothing was opened. "
            "Retry later, close idle work, or raise the limit on UserSessions(...)."
        )


class CaptiveDependencyError(UserscopeError, TypeError):
    """A longer-lived provider depends on a shorter-lived scoped provider.

    Attributes:
        paths: one entry per offending dependency path, e.g.
            ``"Container.llm (Singleton) -> Container.registry (UserScoped)"``.

    Example:
        >>> import userscope as us
        >>> err = us.CaptiveDependencyError(["A.x (Singleton) -> A.y (RequestScoped)"])
        >>> len(err.paths)
        1
    """

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths: tuple[str, ...] = tuple(paths)
        lines = "\n".join(f"  - {p}" for p in self.paths)
        super().__init__(
            f"{len(self.paths)} captive dependenc{'y' if len(self.paths) == 1 else 'ies'} "
            f"found:\n{lines}\nA provider may only depend on providers that live at least as "
            "long: make the dependant scoped at the narrower level, or inject the dependency "
            "per call (pass `provider.provider` and call it inside the scope)."
        )


class GraphFormatError(UserscopeError, ValueError):
    """:func:`~userscope.graph` was asked for a format it does not draw.

    Attributes:
        format: the format asked for.
        choices: the formats it draws.

    Example:
        >>> import userscope as us
        >>> us.GraphFormatError("png", ("mermaid", "dot")).choices
        ('mermaid', 'dot')
    """

    def __init__(self, format: str, choices: Sequence[str]) -> None:
        self.format = format
        self.choices = tuple(choices)
        super().__init__(
            f"cannot draw a container as {format!r}; choose one of {', '.join(self.choices)} "
            "(render dot to SVG or PNG with Graphviz: dot -Tsvg graph.dot -o graph.svg)"
        )


class CleanupError(ExceptionGroup[Exception], UserscopeError):
    """One or more scope cleanups failed while the scope body itself succeeded.

    It is an :class:`ExceptionGroup`: ``except* SomeError`` reaches each failure.

    Attributes:
        scope: the level of the scope whose cleanups failed.
        user_id: the user the scope belonged to.

    Example:
        >>> import userscope as us
        >>> err = us.CleanupError("cleanup failed", [ValueError("x")])
        >>> isinstance(err, ExceptionGroup)
        True
    """

    scope: Scope | None
    user_id: str | None

    def __new__(
        cls,
        message: str,
        exceptions: Sequence[Exception],
        *,
        scope: Scope | None = None,
        user_id: str | None = None,
    ) -> Self:
        self = super().__new__(cls, message, exceptions)
        self.scope = scope
        self.user_id = user_id
        return self

    def __init__(
        self,
        message: str,
        exceptions: Sequence[Exception],
        *,
        scope: Scope | None = None,
        user_id: str | None = None,
    ) -> None:
        super().__init__(message, exceptions)

    def derive(self, excs: Sequence[Exception]) -> CleanupError:  # type: ignore[override]
        """Build a group of the same kind around a subset (used by ``split``)."""
        return CleanupError(self.message, excs, scope=self.scope, user_id=self.user_id)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_cleanup_error,
            (self.message, list(self.exceptions), self.scope, self.user_id),
        )


def _rebuild_cleanup_error(
    message: str, exceptions: list[Exception], scope: Scope | None, user_id: str | None
) -> CleanupError:
    return CleanupError(message, exceptions, scope=scope, user_id=user_id)
