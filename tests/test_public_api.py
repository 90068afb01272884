"""The public surface is exactly what `__all__` says, and every name is documented."""

from __future__ import annotations

import inspect

import userscope

EXPECTED = {
    "AsyncCleanupRequiredError",
    "AsyncScopeRequiredError",
    "BlockingWaitError",
    "CleanupTimeoutError",
    "DependencyCycleError",
    "FactoryProtocolError",
    "ScopeObserver",
    "ScopeReuseError",
    "ShutdownTimeoutError",
    "COMPILED",
    "CaptiveDependencyError",
    "CleanupError",
    "ConnectionScoped",
    "CurrentContext",
    "GraphFormatError",
    "IsolationError",
    "LeakReport",
    "OutOfScopeError",
    "RequestScoped",
    "Scope",
    "ScopeClosedError",
    "ScopeLimitError",
    "ScopedProvider",
    "SessionStats",
    "UserExecutionContext",
    "UserScoped",
    "UserSessions",
    "UserscopeError",
    "current_context",
    "current_scope",
    "graph",
    "validate",
}


def test_all_is_exactly_the_public_names() -> None:
    assert set(userscope.__all__) == EXPECTED
    assert list(userscope.__all__) == sorted(userscope.__all__)
    public = {n for n in dir(userscope) if not n.startswith("_")}
    modules = {n for n in public if inspect.ismodule(getattr(userscope, n))}
    assert public - modules == EXPECTED


#: public constants: documented, with an example, in the package docstring
CONSTANTS = {"COMPILED": bool}


def test_every_public_name_has_a_docstring_with_an_example() -> None:
    for name in sorted(set(userscope.__all__) - set(CONSTANTS)):
        doc = inspect.getdoc(getattr(userscope, name)) or ""
        assert doc, name
        assert "Example" in doc or ">>>" in doc, name


def test_public_constants_have_their_type_and_an_example_in_the_package_docstring() -> None:
    package_doc = inspect.getdoc(userscope) or ""
    for name, kind in CONSTANTS.items():
        assert type(getattr(userscope, name)) is kind, name
        assert f"``{name}``" in package_doc, name
        assert f"us.{name}" in package_doc, name


def test_errors_derive_from_the_base_and_a_builtin() -> None:
    builtin = {
        "OutOfScopeError": LookupError,
        "IsolationError": PermissionError,
        "ScopeClosedError": RuntimeError,
        "ScopeLimitError": RuntimeError,
        "CaptiveDependencyError": TypeError,
        "CleanupError": ExceptionGroup,
        "GraphFormatError": ValueError,
        "ScopeReuseError": RuntimeError,
        "AsyncScopeRequiredError": RuntimeError,
        "AsyncCleanupRequiredError": RuntimeError,
        "FactoryProtocolError": RuntimeError,
        "DependencyCycleError": RuntimeError,
        "BlockingWaitError": RuntimeError,
        "CleanupTimeoutError": TimeoutError,
        "ShutdownTimeoutError": TimeoutError,
    }
    for name, base in builtin.items():
        cls = getattr(userscope, name)
        assert issubclass(cls, userscope.UserscopeError), name
        assert issubclass(cls, base), name


def test_package_ships_py_typed() -> None:
    from importlib.resources import files

    assert files("userscope").joinpath("py.typed").is_file()
