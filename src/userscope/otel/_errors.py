"""Errors of ``userscope.otel``."""

from __future__ import annotations

from userscope.errors import UserscopeError

__all__ = ["AlreadyInstrumentedError", "OtelNotInstalledError"]


class OtelNotInstalledError(UserscopeError, ImportError):
    """``userscope.otel`` was imported without the OpenTelemetry API installed.

    Attributes:
        missing: the module that could not be imported.

    Example:
        >>> from userscope.otel import OtelNotInstalledError
        >>> OtelNotInstalledError("opentelemetry").missing
        'opentelemetry'
    """

    def __init__(self, missing: str) -> None:
        self.missing = missing
        super().__init__(
            f"userscope.otel needs the OpenTelemetry API ({missing} is not installed); "
            'install the extra: pip install "userscope[otel]"'
        )


class AlreadyInstrumentedError(UserscopeError, RuntimeError):
    """:func:`~userscope.otel.instrument` was called on a runtime that has an observer.

    Attributes:
        observer: the observer already set on the runtime.

    Example:
        >>> import userscope as us
        >>> from userscope.otel import AlreadyInstrumentedError
        >>> err = AlreadyInstrumentedError(us.ScopeObserver())
        >>> type(err.observer).__name__
        'ScopeObserver'
    """

    def __init__(self, observer: object) -> None:
        self.observer = observer
        super().__init__(
            f"this UserSessions already has an observer ({type(observer).__name__}); "
            "call uninstrument() on the previous handle (or set sessions.observer = None) "
            "before instrumenting it again"
        )
