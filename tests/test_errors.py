"""Errors carry their data and build their message from it."""

from __future__ import annotations

import pickle

import userscope as us


def test_out_of_scope_fields_and_message() -> None:
    err = us.OutOfScopeError("C.agent", us.Scope.REQUEST, us.Scope.CONNECTION)
    assert (err.provider, err.required_scope, err.active_scope) == (
        "C.agent",
        us.Scope.REQUEST,
        us.Scope.CONNECTION,
    )
    assert "C.agent is REQUEST-scoped" in str(err)
    assert "innermost active scope is CONNECTION" in str(err)
    assert "async with sessions.request(ctx)" in str(err)


def test_limit_error_fields() -> None:
    err = us.ScopeLimitError("max_connections_per_user", "alice", 4, 4)
    assert (err.limit, err.user_id, err.current, err.maximum) == (
        "max_connections_per_user",
        "alice",
        4,
        4,
    )
    assert "nothing was opened" in str(err)


def test_cleanup_error_is_an_exception_group_that_keeps_its_fields() -> None:
    err = us.CleanupError(
        "2 failed", [ValueError("a"), KeyError("b")], scope=us.Scope.USER, user_id="alice"
    )
    values, rest = err.split(ValueError)
    assert isinstance(values, us.CleanupError)
    assert values.user_id == "alice"
    assert values.scope is us.Scope.USER
    assert isinstance(rest, us.CleanupError)
    copy = pickle.loads(pickle.dumps(err))
    assert copy.user_id == "alice"
    assert [type(e) for e in copy.exceptions] == [ValueError, KeyError]


def test_isolation_and_closed_messages_say_what_to_do() -> None:
    assert "never nested" in str(us.IsolationError("alice", "bob"))
    assert "open a new scope" in str(us.ScopeClosedError(us.Scope.REQUEST, "alice", "C.agent"))
    assert us.CaptiveDependencyError(["a -> b"]).paths == ("a -> b",)


def test_every_error_class_the_package_exports_derives_from_userscope_error() -> None:
    import userscope.adapters.fastapi as fastapi_adapter
    import userscope.adapters.legacy as legacy
    import userscope.audit as audit
    import userscope.events as events
    import userscope.testing as testing

    modules = (us, fastapi_adapter, legacy, audit, events, testing)
    exported = {
        f"{module.__name__}.{name}": getattr(module, name)
        for module in modules
        for name in module.__all__
        if isinstance(getattr(module, name), type)
        and issubclass(getattr(module, name), BaseException)
        and not issubclass(getattr(module, name), Warning)
    }
    assert len(exported) >= 15, sorted(exported)  # the tree, not an empty scan
    outside = sorted(
        name for name, cls in exported.items() if not issubclass(cls, us.UserscopeError)
    )
    assert outside == [], "catching us.UserscopeError must catch every userscope error"
