"""Tokens in query strings never reach the server's logs (private).

Browsers cannot set headers on a WebSocket, so some clients send the token as
``?token=...``. uvicorn logs every request line with its query string (HTTP in
``uvicorn.access``, WebSocket handshakes in ``uvicorn.error``): `install` adds
:class:`QueryTokenRedactor` to both loggers so those values read ``[redacted]``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any, Final

__all__ = ["DEFAULT_REDACTED_PARAMS", "QueryTokenRedactor", "install_redactor"]

DEFAULT_REDACTED_PARAMS: Final = ("token", "access_token", "id_token", "jwt")
"""Query parameters whose values are always redacted from the server's logs."""

SERVER_LOGGERS: Final = ("uvicorn.access", "uvicorn.error")
"""Loggers that write request lines with their query strings."""

REDACTED: Final = "[redacted]"


class QueryTokenRedactor(logging.Filter):
    """A logging filter that replaces the values of token query parameters.

    ``?token=eyJ...&after=5-0`` becomes ``?token=[redacted]&after=5-0`` in the
    record's message and in its string arguments (case-insensitive names). The
    record is always kept.

    Args:
        names: the query parameter names whose values are secrets.

    Example:
        >>> import logging
        >>> from userscope.adapters.fastapi._redact import QueryTokenRedactor
        >>> record = logging.LogRecord(
        ...     "uvicorn.access", logging.INFO, "app.py", 1,
        ...     '%s - "%s %s HTTP/%s" %d', ("1.2.3.4", "GET", "/ws?token=eyJ.x.y&a=1", "1.1", 101),
        ...     None)
        >>> QueryTokenRedactor(["token"]).filter(record)
        True
        >>> record.getMessage()
        '1.2.3.4 - "GET /ws?token=[redacted]&a=1 HTTP/1.1" 101'
    """

    def __init__(self, names: Iterable[str]) -> None:
        super().__init__()
        self.names = frozenset(name.lower() for name in names if name)
        alternatives = "|".join(re.escape(name) for name in sorted(self.names))
        self._pattern = re.compile(rf"([?&;](?:{alternatives})=)[^&;#\s\"']*", re.IGNORECASE)

    def redact(self, text: str) -> str:
        """``text`` with every configured parameter's value replaced."""
        if "=" not in text:
            return text
        return self._pattern.sub(rf"\g<1>{REDACTED}", text)

    def _value(self, value: Any) -> Any:
        return self.redact(value) if isinstance(value, str) else value

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; never drops it."""
        if isinstance(record.msg, str):
            record.msg = self.redact(record.msg)
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(self._value(arg) for arg in args)
        elif isinstance(args, dict):
            record.args = {key: self._value(value) for key, value in args.items()}
        return True


def install_redactor(names: Iterable[str]) -> QueryTokenRedactor:
    """Add one redactor for ``names`` (plus the defaults) to the server loggers.

    Idempotent per set of names: installing the same names again adds nothing.
    """
    wanted = frozenset(name.lower() for name in (*DEFAULT_REDACTED_PARAMS, *names) if name)
    installed = [
        existing
        for existing in logging.getLogger(SERVER_LOGGERS[0]).filters
        if isinstance(existing, QueryTokenRedactor) and existing.names == wanted
    ]
    if installed:
        return installed[0]
    redactor = QueryTokenRedactor(wanted)
    for logger_name in SERVER_LOGGERS:
        logging.getLogger(logger_name).addFilter(redactor)
    return redactor
