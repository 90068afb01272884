"""Structured log fields: every record userscope logs carries them as ``extra``.

JSON log formatters (python-json-logger, structlog's stdlib bridge, OpenTelemetry's
logging handler) pick attributes of the ``LogRecord`` up as fields; plain formatters
ignore them. Every attribute is prefixed ``userscope_`` so it never collides with
``LogRecord``'s own attributes or an application's.

Fields: ``userscope_user_id``, ``userscope_tenant_id``, ``userscope_request_id``,
``userscope_scope`` (level name), ``userscope_provider`` (provider name), and
``userscope_event`` (a short stable name of what happened, e.g. ``"cleanup_failed"``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from userscope.context import UserExecutionContext

__all__ = ["FIELDS", "fields", "logger"]

logger = logging.getLogger("userscope")
"""The logger of the core runtime; subpackages log under ``userscope.<name>``."""

FIELDS = (
    "userscope_event",
    "userscope_user_id",
    "userscope_tenant_id",
    "userscope_request_id",
    "userscope_scope",
    "userscope_provider",
)
"""Every ``extra`` attribute :func:`fields` may set, for log formatter configuration."""


def fields(
    event: str,
    ctx: UserExecutionContext | None = None,
    *,
    user_id: str | None = None,
    tenant_id: str | None = None,
    request_id: str | None = None,
    scope: object = None,
    provider: str | None = None,
) -> dict[str, Any]:
    """Build the ``extra`` mapping of one log call.

    Args:
        event: a short, stable name of what happened (``"cleanup_failed"``).
        ctx: the context the record is about; fills user, tenant and request ids.
        user_id: the user id, when there is no context (overrides ``ctx``'s).
        tenant_id: the tenant id, when there is no context (overrides ``ctx``'s).
        request_id: the request id (overrides ``ctx``'s).
        scope: the scope level (a ``Scope`` or its name).
        provider: the provider's name.

    Example:
        >>> from userscope._log import fields
        >>> import logging, userscope as us
        >>> ctx = us.UserExecutionContext(user_id="alice", thread_id="t", request_id="r-1")
        >>> extra = fields("cleanup_failed", ctx, provider="Container.agent")
        >>> extra["userscope_user_id"], extra["userscope_request_id"], extra["userscope_provider"]
        ('alice', 'r-1', 'Container.agent')
        >>> logging.getLogger("userscope").debug("cleanup failed", extra=extra)
    """
    if ctx is not None:
        user_id = ctx.user_id if user_id is None else user_id
        tenant_id = ctx.tenant_id if tenant_id is None else tenant_id
        request_id = ctx.request_id if request_id is None else request_id
    name = getattr(scope, "name", scope)
    return {
        "userscope_event": event,
        "userscope_user_id": user_id,
        "userscope_tenant_id": tenant_id,
        "userscope_request_id": request_id,
        "userscope_scope": name if name is None or isinstance(name, str) else str(name),
        "userscope_provider": provider,
    }
