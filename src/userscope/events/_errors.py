"""Errors raised by the event-delivery layer."""

from __future__ import annotations

from userscope.errors import UserscopeError

__all__ = [
    "BrokerClosedError",
    "EventIdError",
    "EventPayloadError",
    "WeakSecretError",
]


class EventPayloadError(UserscopeError, TypeError):
    """An event payload is not a plain JSON object (or is too large).

    Events cross process boundaries as JSON text; nothing is ever pickled. Allowed
    values are ``dict`` (with ``str`` keys), ``list``, ``str``, ``int``, finite
    ``float``, ``bool`` and ``None``. Nothing was published when this is raised.

    Attributes:
        path: where the offending value sits, e.g. ``"$.items[2].when"``.
        reason: what is wrong with it.

    Example:
        >>> from userscope.events import EventPayloadError
        >>> EventPayloadError("$.when", "datetime is not JSON").path
        '$.when'
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"event payload refused at {path}: {reason}. Events are JSON only (never pickled): "
            "convert the value to str/int/float/bool/None/list/dict first "
            "(e.g. datetime.isoformat(), model.model_dump(mode='json'))."
        )


class WeakSecretError(UserscopeError, ValueError):
    """The HMAC secret used to derive per-user stream keys is missing or too short.

    Attributes:
        length: length of the given secret in bytes.
        minimum: the required minimum length in bytes.

    Example:
        >>> from userscope.events import WeakSecretError
        >>> WeakSecretError(3, 32).minimum
        32
    """

    def __init__(self, length: int, minimum: int) -> None:
        self.length = length
        self.minimum = minimum
        super().__init__(
            f"the broker key secret is {length} bytes long; at least {minimum} random bytes are "
            "required so that stream keys cannot be guessed. Generate one with "
            "`python -c 'import secrets; print(secrets.token_hex(32))'` and pass it as "
            "secret=... (keep it in your secret store, identical on every worker)."
        )


class EventIdError(UserscopeError, ValueError):
    """An event id given to ``subscribe(after=...)`` is not a broker event id.

    Event ids look like ``"1700000000000-0"`` (milliseconds, sequence).

    Attributes:
        value: the refused value (truncated to 80 characters).

    Example:
        >>> from userscope.events import EventIdError
        >>> EventIdError("*").value
        '*'
    """

    def __init__(self, value: str) -> None:
        self.value = value[:80]
        super().__init__(
            f"{self.value!r} is not an event id; pass the `id` of the last event the client "
            "received (format '<milliseconds>-<sequence>'), or None to start with new events."
        )


class BrokerClosedError(UserscopeError, RuntimeError):
    """A broker was used after :meth:`aclose`.

    Attributes:
        broker: the broker's class name.

    Example:
        >>> from userscope.events import BrokerClosedError
        >>> BrokerClosedError("InMemoryBroker").broker
        'InMemoryBroker'
    """

    def __init__(self, broker: str) -> None:
        self.broker = broker
        super().__init__(
            f"{broker} is closed; create a new broker (one per application, closed at shutdown)."
        )
