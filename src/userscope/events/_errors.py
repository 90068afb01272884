"""Errors raised by the event-delivery layer."""

from __future__ import annotations

from userscope.errors import UserscopeError

__all__ = [
    "BridgeStateError",
    "BrokerClosedError",
    "BrokerUnavailableError",
    "EventIdError",
    "EventPayloadError",
    "SubscriptionFailedError",
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
    """The HMAC secret used to derive per-user stream keys is missing, short or guessable.

    Attributes:
        length: length of the given secret in bytes.
        minimum: the required minimum length in bytes.
        problem: what is wrong with it (never the secret itself).

    Example:
        >>> from userscope.events import WeakSecretError
        >>> WeakSecretError(3, 32).minimum
        32
        >>> WeakSecretError(32, 32, "it uses only 1 distinct characters").problem
        'it uses only 1 distinct characters'
    """

    def __init__(self, length: int, minimum: int, problem: str | None = None) -> None:
        self.length = length
        self.minimum = minimum
        self.problem = problem or f"it is {length} bytes long; at least {minimum} are needed"
        super().__init__(
            f"the broker key secret is refused: {self.problem}. At least {minimum} random "
            "bytes are required so that stream keys cannot be guessed. Generate one with "
            "`python -c 'import secrets; print(secrets.token_hex(32))'` and pass it as "
            "secret=... (keep it in your secret store, identical on every worker)."
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.length, self.minimum, self.problem))


class EventIdError(UserscopeError, ValueError):
    """An event id given to ``subscribe(after=...)`` is not a broker event id.

    Event ids look like ``"1700000000000-0"`` (milliseconds, sequence): ASCII digits
    only, each part within an unsigned 64-bit integer (what Redis stream ids hold).

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
            "received (format '<milliseconds>-<sequence>': ASCII digits, each part at most "
            "2**64-1), or None to start with new events."
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


class BridgeStateError(UserscopeError, RuntimeError):
    """An :class:`EventBridge` method was called in the wrong state: ``start()`` on a
    bridge already started, or ``wait()`` on one never started.

    A bridge serves one socket once: make a new one per connection, and start it (or
    enter it with ``async with``) before waiting on it. Nothing changed on the bridge.

    Attributes:
        method: the method called, ``"start"`` or ``"wait"``.
        started: whether the bridge had been started.

    Example:
        >>> from userscope.events import BridgeStateError
        >>> error = BridgeStateError("wait", started=False)
        >>> error.method, error.started
        ('wait', False)
    """

    def __init__(self, method: str, started: bool) -> None:
        self.method = method
        self.started = started
        if started:
            advice = (
                "EventBridge.start() was already called; a bridge serves one socket once: "
                "make a new EventBridge for each connection"
            )
        else:
            advice = (
                f"EventBridge.{method}() needs a started bridge: call `await bridge.start()` "
                "first, or use `async with EventBridge(...) as bridge:`"
            )
        super().__init__(advice)


class BrokerUnavailableError(UserscopeError, ConnectionError):
    """A subscription could not attach because the broker's server cannot be reached.

    Raised by ``subscribe(...)`` (entering the subscription, or ``EventBridge.start``)
    when a :class:`RedisBroker` could not register it within ``attach_timeout``
    seconds, typically because Redis is down or restarting. Nothing stays registered.
    Tell the client to retry later (a WebSocket closes with ``1013``, see
    :data:`UNAVAILABLE_CLOSE_CODE`).

    Attributes:
        broker: the broker's class name.
        waited: seconds waited before giving up.

    Example:
        >>> from userscope.events import BrokerUnavailableError
        >>> BrokerUnavailableError("RedisBroker", 5.0).waited
        5.0
    """

    def __init__(self, broker: str, waited: float) -> None:
        self.broker = broker
        self.waited = waited
        super().__init__(
            f"{broker} could not attach the subscription within {waited:g} s: its server is "
            "unreachable. Tell the client to reconnect later (with after=<last id> to resume); "
            "raise attach_timeout if the server is only slow."
        )


class SubscriptionFailedError(UserscopeError, RuntimeError):
    """One subscription failed on its own; the broker keeps serving every other one.

    Raised from iterating (or entering) the failed subscription when the broker's
    server refused something about this subscription alone (for example its stream
    key holds a value that is not a stream). The subscription is closed; other
    users' subscriptions on the same reader are not affected.

    Attributes:
        reason: what the server refused (safe to log; it never contains event data).

    Example:
        >>> from userscope.events import SubscriptionFailedError
        >>> SubscriptionFailedError("WRONGTYPE").reason
        'WRONGTYPE'
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason[:200]
        super().__init__(
            f"the event subscription failed: {self.reason}. It was closed and other "
            "subscriptions are unaffected; reconnect to subscribe again, and check the "
            "user's stream key in Redis if it keeps failing."
        )
