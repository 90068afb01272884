"""Testing toolkit: typed overrides, the isolation harness, and the pytest plugin's helpers.

The pytest plugin itself (fixtures ``userscope_sessions``, ``userscope_asessions``,
``userscope_context`` and the leak check) is installed with the package; see
``docs/testing.md``.

Example:
    >>> import userscope as us
    >>> from userscope.testing import override
    >>> from dependency_injector import containers
    >>> class C(containers.DeclarativeContainer):
    ...     greeting = us.RequestScoped(str, "hello")
    >>> with override(C.greeting, "hi"):
    ...     C.greeting()
    'hi'
"""

from userscope.testing._isolation import (
    AsyncHarnessRequiredError,
    IsolationReport,
    IsolationViolation,
    Violation,
    aassert_isolated,
    assert_isolated,
)
from userscope.testing._override import Override, override

__all__ = [
    "AsyncHarnessRequiredError",
    "IsolationReport",
    "IsolationViolation",
    "Override",
    "Violation",
    "aassert_isolated",
    "assert_isolated",
    "override",
]
