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
    "AsyncCleanupRequiredError",
    "AsyncScopeRequiredError",
    "BlockingWaitError",
    "CaptiveDependencyError",
    "CleanupError",
    "CleanupTimeoutError",
    "DependencyCycleError",
    "FactoryProtocolError",
    "GraphFormatError",
    "IsolationError",
    "LockOrderError",
    "ModeSwitchError",
    "OutOfScopeError",
    "ScopeClosedError",
    "ScopeLimitError",
    "ScopeReuseError",
    "ShutdownTimeoutError",
    "UserscopeError",
]


def _who(user_id: str | None, tenant_id: str | None) -> str:
    """``'alice'`` or ``'acme/alice'`` for messages."""
    if tenant_id is None:
        return repr(user_id)
    return repr(f"{tenant_id}/{user_id}")


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

    A user is ``(tenant_id, user_id)``: the same user id in another tenant is another
    user, and is refused too.

    Attributes:
        expected_user_id: the user of the active (outer) scope.
        actual_user_id: the user of the scope that was refused.
        expected_tenant_id: the tenant of the active scope (``None``: no tenant).
        actual_tenant_id: the tenant of the refused scope.

    Example:
        >>> import userscope as us
        >>> us.IsolationError("alice", "bob").actual_user_id
        'bob'
        >>> us.IsolationError("alice", "alice", "acme", "globex").actual_tenant_id
        'globex'
    """

    def __init__(
        self,
        expected_user_id: str,
        actual_user_id: str,
        expected_tenant_id: str | None = None,
        actual_tenant_id: str | None = None,
    ) -> None:
        self.expected_user_id = expected_user_id
        self.actual_user_id = actual_user_id
        self.expected_tenant_id = expected_tenant_id
        self.actual_tenant_id = actual_tenant_id
        super().__init__(
            f"refused to open a scope for user {_who(actual_user_id, actual_tenant_id)} inside "
            f"a scope of user {_who(expected_user_id, expected_tenant_id)}; nothing was opened. "
            "Open the other user's scope outside this one (for example in its own task), "
            "never nested."
        )


class ModeSwitchError(UserscopeError, ValueError):
    """An environment switch (``USERSCOPE_PURE``) holds something that is not on or off.

    Raised by ``import userscope``, before any runtime module is imported.

    Attributes:
        variable: the environment variable, e.g. ``"USERSCOPE_PURE"``.
        value: what it holds.

    Example:
        >>> from userscope.errors import ModeSwitchError
        >>> ModeSwitchError("USERSCOPE_PURE", "maybe").value
        'maybe'
    """

    def __init__(self, variable: str, value: str) -> None:
        self.variable = variable
        self.value = value
        super().__init__(
            f"{variable}={value!r} is not a switch: set {variable}=1 to run the pure-Python "
            f"runtime, or {variable}=0 (or unset it) to run the compiled one when it is built"
        )


class ScopeClosedError(UserscopeError, RuntimeError):
    """A scope (or the whole :class:`~userscope.UserSessions`) was used after it closed.

    Attributes:
        scope: the level of the closed scope, or ``None`` for the sessions object itself.
        user_id: the user the closed scope belonged to, when known.
        provider: the provider being resolved, when the error came from resolution.
        tenant_id: the tenant of that user, when known.

    Example:
        >>> import userscope as us
        >>> us.ScopeClosedError(us.Scope.REQUEST, "alice").user_id
        'alice'
    """

    def __init__(
        self,
        scope: Scope | None,
        user_id: str | None = None,
        provider: str | None = None,
        tenant_id: str | None = None,
    ) -> None:
        self.scope = scope
        self.user_id = user_id
        self.provider = provider
        self.tenant_id = tenant_id
        what = "the UserSessions runtime" if scope is None else f"the {scope.name} scope"
        whose = f" of user {_who(user_id, tenant_id)}" if user_id else ""
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
        tenant_id: the tenant of that user (``None``: no tenant, or a global limit).

    Example:
        >>> import userscope as us
        >>> us.ScopeLimitError("max_users", None, 100, 100).limit
        'max_users'
    """

    def __init__(
        self,
        limit: str,
        user_id: str | None,
        current: int,
        maximum: int,
        tenant_id: str | None = None,
    ) -> None:
        self.limit = limit
        self.user_id = user_id
        self.current = current
        self.maximum = maximum
        self.tenant_id = tenant_id
        whose = f" for user {_who(user_id, tenant_id)}" if user_id is not None else ""
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
        tenant_id: that user's tenant (``None``: no tenant).

    Example:
        >>> import userscope as us
        >>> err = us.CleanupError("cleanup failed", [ValueError("x")])
        >>> isinstance(err, ExceptionGroup)
        True
    """

    scope: Scope | None
    user_id: str | None
    tenant_id: str | None

    def __new__(
        cls,
        message: str,
        exceptions: Sequence[Exception],
        *,
        scope: Scope | None = None,
        user_id: str | None = None,
        tenant_id: str | None = None,
    ) -> Self:
        self = super().__new__(cls, message, exceptions)
        self.scope = scope
        self.user_id = user_id
        self.tenant_id = tenant_id
        return self

    def __init__(
        self,
        message: str,
        exceptions: Sequence[Exception],
        *,
        scope: Scope | None = None,
        user_id: str | None = None,
        tenant_id: str | None = None,
    ) -> None:
        super().__init__(message, exceptions)

    def derive(self, excs: Sequence[Exception]) -> CleanupError:  # type: ignore[override]
        """Build a group of the same kind around a subset (used by ``split``)."""
        return CleanupError(
            self.message, excs, scope=self.scope, user_id=self.user_id, tenant_id=self.tenant_id
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_cleanup_error,
            (self.message, list(self.exceptions), self.scope, self.user_id, self.tenant_id),
        )


def _rebuild_cleanup_error(
    message: str,
    exceptions: list[Exception],
    scope: Scope | None,
    user_id: str | None,
    tenant_id: str | None = None,
) -> CleanupError:
    return CleanupError(message, exceptions, scope=scope, user_id=user_id, tenant_id=tenant_id)


class ScopeReuseError(UserscopeError, RuntimeError):
    """A scope object was entered twice, reused after its exit, or exited when not open.

    Each ``with``/``async with`` needs a new scope object from ``sessions.request(ctx)``,
    ``sessions.connection(ctx)`` or ``sessions.user(ctx)``.

    Attributes:
        kind: ``"request"``, ``"connection"`` or ``"user"``: the method that made it.
        problem: ``"open"`` (entered while open), ``"used"`` (entered after its exit) or
            ``"not_open"`` (exited while not open).

    Example:
        >>> import userscope as us
        >>> us.ScopeReuseError("request", "used").problem
        'used'
    """

    def __init__(self, kind: str, problem: str) -> None:
        self.kind = kind
        self.problem = problem
        what = {
            "open": "is open: each `with` needs a new one",
            "used": "was already used: each `with` needs a new one",
            "not_open": "is not open; exit it only once",
        }[problem]
        super().__init__(f"this scope object {what}; call sessions.{kind}(ctx) again")


class AsyncScopeRequiredError(UserscopeError, RuntimeError):
    """A provider whose instance is created asynchronously was resolved in a scope
    entered with a plain ``with``.

    Attributes:
        provider: the provider's name.
        scope: the level of the scope that was entered synchronously.

    Example:
        >>> import userscope as us
        >>> us.AsyncScopeRequiredError("C.bridge", us.Scope.REQUEST).provider
        'C.bridge'
    """

    def __init__(self, provider: str, scope: Scope) -> None:
        self.provider = provider
        self.scope = scope
        super().__init__(
            f"{provider} is created asynchronously but its {scope.name} scope was entered "
            f"with a plain `with`; enter it with `async with` and resolve with "
            f"`await {provider}.async_()`"
        )


class AsyncCleanupRequiredError(UserscopeError, RuntimeError):
    """Synchronous code tried to close user scopes that hold async cleanups.

    Nothing was closed when this is raised.

    Attributes:
        users: the users, as ``(tenant_id, user_id)``, whose scopes hold async cleanups.
        use: the async method to call instead, e.g. ``"aclose"``.

    Example:
        >>> import userscope as us
        >>> us.AsyncCleanupRequiredError(((None, "alice"),), "aclose_user").use
        'aclose_user'
    """

    def __init__(self, users: Sequence[tuple[str | None, str]], use: str) -> None:
        self.users: tuple[tuple[str | None, str], ...] = tuple(users)
        self.use = use
        names = ", ".join(_who(user, tenant) for tenant, user in self.users)
        super().__init__(
            f"the USER scope of {names} holds async cleanups; nothing was closed. "
            f"Use `await sessions.{use}(...)` from async code."
        )


class FactoryProtocolError(UserscopeError, RuntimeError):
    """A factory broke the protocol of scoped providers.

    Attributes:
        provider: the provider's name.
        problem: ``"no_yield"`` (a generator factory returned without yielding),
            ``"yielded_twice"`` (it yielded more than once) or ``"not_closable"``
            (declared ``.closing()`` but the instance has no ``close()``/``aclose()``).

    Example:
        >>> import userscope as us
        >>> us.FactoryProtocolError("C.bridge", "no_yield").problem
        'no_yield'
    """

    def __init__(self, provider: str, problem: str, type_name: str | None = None) -> None:
        self.provider = provider
        self.problem = problem
        self.type_name = type_name
        what = {
            "no_yield": f"the generator factory of {provider} returned without yielding; "
            "yield the instance exactly once",
            "yielded_twice": f"the generator of {provider} yielded more than once; "
            "yield exactly once",
            "not_closable": f"{provider} was declared .closing() but {type_name} has no "
            "close() or aclose() method; drop .closing() or use a generator factory",
        }[problem]
        super().__init__(what)


class DependencyCycleError(UserscopeError, RuntimeError):
    """Creating an instance needed that same instance (a dependency cycle).

    Attributes:
        provider: the provider whose creation waited for itself.
        scope: the level of the scope it was created in.

    Example:
        >>> import userscope as us
        >>> us.DependencyCycleError("C.agent", us.Scope.REQUEST).provider
        'C.agent'
    """

    def __init__(self, provider: str, scope: Scope) -> None:
        self.provider = provider
        self.scope = scope
        super().__init__(
            f"creating {provider} ({scope.name} scope) needs {provider} itself: a dependency "
            "cycle. Break the cycle: inject `provider.provider` and call it later."
        )


class BlockingWaitError(UserscopeError, RuntimeError):
    """A synchronous resolve would block an event loop on a creation owned by a task of
    that same loop (it could never finish).

    Attributes:
        provider: the provider being created.
        scope: the level of its scope.

    Example:
        >>> import userscope as us
        >>> us.BlockingWaitError("C.agent", us.Scope.USER).scope.name
        'USER'
    """

    def __init__(self, provider: str, scope: Scope) -> None:
        self.provider = provider
        self.scope = scope
        super().__init__(
            f"{provider} ({scope.name} scope) is being created by another task of this event "
            "loop; a synchronous resolve would block the loop forever. Resolve it with "
            f"`await {provider}.async_()`."
        )


class CleanupTimeoutError(UserscopeError, TimeoutError):
    """A cleanup did not finish within ``cleanup_timeout`` (or the shutdown timeout).

    Recorded as a cleanup failure: it is logged, counted, and part of the scope's
    :class:`CleanupError`. The cleanup was cancelled.

    Attributes:
        provider: the provider whose cleanup timed out.
        timeout: the seconds it was given.

    Example:
        >>> import userscope as us
        >>> us.CleanupTimeoutError("C.bridge", 5.0).timeout
        5.0
    """

    def __init__(self, provider: str, timeout: float) -> None:
        self.provider = provider
        self.timeout = timeout
        super().__init__(
            f"the cleanup of {provider} did not finish within {timeout:g} s and was cancelled; "
            "make it faster or raise UserSessions(cleanup_timeout=...)"
        )


class ShutdownTimeoutError(UserscopeError, TimeoutError):
    """``close()``/``aclose()`` gave up waiting for scopes still open at its timeout.

    The runtime is closed (it refuses new scopes); the users listed here get their
    USER cleanups when their last scope exits.

    Attributes:
        timeout: the seconds shutdown waited.
        open_scopes: how many scopes were still open.
        users: the users, as ``(tenant_id, user_id)``, that still had open scopes.

    Example:
        >>> import userscope as us
        >>> us.ShutdownTimeoutError(30.0, 1, ((None, "alice"),)).open_scopes
        1
    """

    def __init__(
        self, timeout: float, open_scopes: int, users: Sequence[tuple[str | None, str]]
    ) -> None:
        self.timeout = timeout
        self.open_scopes = open_scopes
        self.users: tuple[tuple[str | None, str], ...] = tuple(users)
        names = ", ".join(_who(user, tenant) for tenant, user in self.users[:10])
        more = f" and {len(self.users) - 10} more" if len(self.users) > 10 else ""
        super().__init__(
            f"shutdown waited {timeout:g} s; {open_scopes} scope(s) of {names}{more} are still "
            "open. Their users' cleanups run when their last scope exits; end long-running "
            "work before shutting down, or pass a longer timeout."
        )


class LockOrderError(UserscopeError, AssertionError):
    """The lock-order checker caught a broken locking rule (a bug in userscope).

    Raised only with the checker on (``USERSCOPE_LOCK_CHECK=1`` or under the pytest
    plugin). Please report it.

    Attributes:
        acquiring: the lock being taken, or the user code about to run.
        held: the locks this thread already held, outermost first.

    Example:
        >>> from userscope.errors import LockOrderError
        >>> LockOrderError("table lock", ("session lock",)).held
        ('session lock',)
    """

    def __init__(self, acquiring: str, held: Sequence[str]) -> None:
        self.acquiring = acquiring
        self.held: tuple[str, ...] = tuple(held)
        super().__init__(
            f"lock order broken: {acquiring} while holding {', '.join(self.held)}. The order is "
            "table lock -> session lock, one session lock at a time, none while user code "
            "runs. This is a bug in userscope: please report it with this traceback."
        )
