"""Public value types and the Broker protocol."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, runtime_checkable

from ._errors import EventIdError

if TYPE_CHECKING:
    from userscope._durations import Duration

    from ._identity import UserLike
    from ._runs import RunHandle

__all__ = [
    "BEGINNING",
    "RUN_FINISHED",
    "RUN_HEARTBEAT",
    "RUN_LOST",
    "RUN_STARTED",
    "Broker",
    "BrokerStats",
    "Delivery",
    "Gap",
    "id_key",
    "parse_after",
]

BEGINNING: Final = "0-0"
"""Pass as ``after`` to read the whole retained history of a user."""

RUN_STARTED: Final = "run_started"
"""Event ``type`` published when a run starts (see :meth:`Broker.run`)."""
RUN_HEARTBEAT: Final = "run_heartbeat"
"""Event ``type`` published periodically while a run is alive."""
RUN_FINISHED: Final = "run_finished"
"""Event ``type`` published when a run ends (``status``: ok, error or cancelled)."""
RUN_LOST: Final = "run_lost"
"""Synthetic event ``type`` a subscriber sees when a run's heartbeats stop."""

# ASCII digits only (``\d`` also matches e.g. Arabic-Indic digits, which Redis refuses)
_ID_RE = re.compile(r"([0-9]{1,20})-([0-9]{1,20})", re.ASCII)
_UINT64_MAX: Final = (1 << 64) - 1


def id_key(event_id: str) -> tuple[int, int]:
    """Sort key of a broker event id (``"<ms>-<seq>"``, both parts unsigned 64-bit).

    Raises:
        EventIdError: not two ASCII digit runs joined by ``-``, or a part beyond
            ``2**64 - 1`` (what Redis stream ids can hold).

    Example:
        >>> from userscope.events._types import id_key
        >>> id_key("1700000000000-3")
        (1700000000000, 3)
    """
    match = _ID_RE.fullmatch(event_id)
    if match is None:
        raise EventIdError(event_id)
    ms, seq = int(match.group(1)), int(match.group(2))
    if ms > _UINT64_MAX or seq > _UINT64_MAX:
        raise EventIdError(event_id)
    return ms, seq


def parse_after(after: str | None) -> str | None:
    """Validate a client-supplied resume id; returns it unchanged or raises EventIdError."""
    if after is None:
        return None
    if not isinstance(after, str):
        raise EventIdError(repr(after))
    id_key(after)
    return after


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event delivered to a subscriber.

    Attributes:
        id: the broker event id (``"<ms>-<seq>"``); resume with ``subscribe(after=id)``.
        user_hash: keyed digest of the identity the event was published for; already
            checked against the subscriber's identity before delivery.
        payload: the event, a fresh JSON-decoded dict owned by this subscriber.
        timestamp: publish time, seconds since the epoch (from the id).
        synthetic: ``True`` for events the subscriber made up locally (``run_lost``);
            they are not stored and repeat the id of the last stored event seen.
        size: bytes of the stored JSON text of the event (0 for synthetic events);
            what byte bounds on buffers and queues count.

    Example:
        >>> from userscope.events import Delivery
        >>> d = Delivery(id="5-0", user_hash="ab", payload={"type": "token"}, timestamp=0.005)
        >>> d.type, d.to_wire()["id"]
        ('token', '5-0')
    """

    id: str
    user_hash: str
    payload: dict[str, Any]
    timestamp: float
    synthetic: bool = False
    size: int = 0

    @property
    def type(self) -> str | None:
        """The payload's ``"type"`` field when it is a string, else ``None``."""
        value = self.payload.get("type")
        return value if isinstance(value, str) else None

    def to_wire(self) -> dict[str, Any]:
        """JSON-ready dict sent to a client: ``{"kind": "event", "id", "ts", "event"}``."""
        wire: dict[str, Any] = {
            "kind": "event",
            "id": self.id,
            "ts": self.timestamp,
            "event": self.payload,
        }
        if self.synthetic:
            wire["synthetic"] = True
        return wire


@dataclass(frozen=True, slots=True)
class Gap:
    """Marker: events between ``after`` and the next delivery are gone.

    Yielded before the first event after the hole (or on its own when the whole
    stream is gone). The client should resynchronise its state (reload the
    conversation) and keep consuming.

    Attributes:
        after: the last id the subscriber had (what it asked to resume after).
        next_id: id of the first event still available after the hole, or ``None``
            when nothing is known yet (the stream expired or Redis lost its data).
        reason: ``"trimmed"`` (the history bound dropped events that the next event
            follows) or ``"missing"`` (the user's stream was lost: it expired while idle
            or Redis lost its data; ``next_id`` is then the first event of the new
            stream, or ``None``).

    Example:
        >>> from userscope.events import Gap
        >>> Gap(after="1-0", next_id="9-0", reason="trimmed").to_wire()["kind"]
        'gap'
    """

    after: str
    next_id: str | None
    reason: Literal["trimmed", "missing"]

    def to_wire(self) -> dict[str, Any]:
        """JSON-ready dict sent to a client: ``{"kind": "gap", "after", "next_id", "reason"}``."""
        return {"kind": "gap", "after": self.after, "next_id": self.next_id, "reason": self.reason}


@dataclass(slots=True)
class BrokerStats:
    """Counters of one broker instance (this process only).

    Attributes:
        published: events published through this instance.
        delivered: deliveries yielded to subscribers (including synthetic ones).
        gaps: gap markers yielded.
        dropped_foreign: envelopes dropped because their user hash did not match the
            subscriber's identity (should stay 0; anything else is logged as an error).
        subscriptions: subscriptions currently open.
        reconnects: times the Redis reader reconnected (always 0 in memory).
        failed: subscriptions the broker failed alone (a Redis error about that
            subscription's stream); every other subscription kept being served.

    Example:
        >>> from userscope.events import BrokerStats
        >>> BrokerStats().dropped_foreign
        0
    """

    published: int = 0
    delivered: int = 0
    gaps: int = 0
    dropped_foreign: int = 0
    subscriptions: int = 0
    reconnects: int = 0
    failed: int = 0
    extra: dict[str, int] = field(default_factory=dict)


@runtime_checkable
class Broker(Protocol):
    """Per-user event delivery: what a bridge or an agent run needs from a broker.

    Both :class:`InMemoryBroker` and :class:`RedisBroker` implement it with the same
    semantics: total order per user, at-least-once on resume, :class:`Gap` markers,
    bounded history, idle expiry and run liveness.

    Example:
        >>> from userscope.events import Broker, InMemoryBroker
        >>> isinstance(InMemoryBroker(), Broker)
        True
    """

    async def publish(self, user: UserLike, event: Mapping[str, Any]) -> str:
        """Append ``event`` (a JSON object) to ``user``'s stream; return its id."""
        ...

    def subscribe(self, user: UserLike, after: str | None = None) -> AsyncIterator[Delivery | Gap]:
        """Iterate ``user``'s events after ``after`` (``None``: only new ones)."""
        ...

    def run(
        self,
        user: UserLike,
        run_id: str,
        *,
        fields: Mapping[str, Any] | None = None,
        heartbeat_interval: Duration | None = None,
        heartbeat_timeout: Duration | None = None,
    ) -> RunHandle:
        """Async context manager announcing a run and keeping it visibly alive.

        ``fields`` are stamped on every event of the run (see :class:`RunHandle`).
        """
        ...

    async def aclose(self) -> None:
        """End every subscription and release connections."""
        ...
