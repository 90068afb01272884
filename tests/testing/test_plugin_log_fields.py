"""The pytest plugin finds cleanup failures by the structured `userscope_event` field."""

from __future__ import annotations

import logging

from userscope._log import fields
from userscope.adapters.pytest_plugin import _CleanupLog


def _record(message: str, extra: dict[str, object] | None = None) -> logging.LogRecord:
    record = logging.LogRecord("userscope", logging.ERROR, __file__, 1, message, (), None)
    for key, value in (extra or {}).items():
        setattr(record, key, value)
    return record


def test_cleanup_failures_are_found_by_event_or_legacy_message() -> None:
    log = _CleanupLog()
    log.emit(_record("finalizer raised", fields("cleanup_failed", provider="C.agent")))
    log.emit(_record("expiry cleanup of 'a' failed"))  # a record without fields
    log.emit(_record("cleanup of C.x failed", fields("observer_failed")))  # other event
    log.emit(_record("something else"))
    assert log.failures == ["finalizer raised", "expiry cleanup of 'a' failed"]
