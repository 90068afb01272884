"""Opt-in OpenTelemetry metrics and traces for a :class:`~userscope.UserSessions` runtime.

Install the extra (``pip install "userscope[otel]"``) and call :func:`instrument` once:

    >>> import userscope as us
    >>> from userscope import otel
    >>> sessions = us.UserSessions()
    >>> handle = otel.instrument(sessions)          # metrics on, traces off
    >>> sessions.observer is handle
    True
    >>> handle.uninstrument(); sessions.observer is None
    True

Nothing here is imported by ``import userscope``: without this call the runtime pays one
``is None`` test per call site and OpenTelemetry is not even loaded. Metric attributes
are low-cardinality (provider names, scope levels, limit names, reasons); a user id
never becomes a metric attribute. See docs/observability.md for the reference.
"""

from __future__ import annotations

try:
    import opentelemetry.metrics
    import opentelemetry.trace  # noqa: F401
except ImportError as missing:  # pragma: no cover - exercised in a subprocess test
    from userscope.otel._errors import OtelNotInstalledError

    raise OtelNotInstalledError(missing.name or "opentelemetry") from missing

from userscope.otel._errors import AlreadyInstrumentedError, OtelNotInstalledError
from userscope.otel._instrument import (
    METER_NAME,
    Instrumentation,
    instrument,
    uninstrument,
)

__all__ = [
    "METER_NAME",
    "AlreadyInstrumentedError",
    "Instrumentation",
    "OtelNotInstalledError",
    "instrument",
    "uninstrument",
]
