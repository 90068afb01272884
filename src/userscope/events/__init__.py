"""Per-user event delivery: brokers, subscriptions, run liveness and the socket bridge.

Example:
    >>> import asyncio, userscope as us
    >>> from userscope.events import InMemoryBroker
    >>> async def main():
    ...     broker = InMemoryBroker()
    ...     ctx = us.UserExecutionContext(user_id="alice", thread_id="t")
    ...     async with broker.subscribe(ctx) as sub:
    ...         await broker.publish(ctx, {"type": "token", "text": "hi"})
    ...         item = await anext(sub)
    ...     await broker.aclose()
    ...     return item.payload["text"]
    >>> asyncio.run(main())
    'hi'
"""

from ._bridge import (
    BROKER_GONE_CLOSE_CODE,
    FAILED_CLOSE_CODE,
    RESYNC_CLOSE_CODE,
    UNAVAILABLE_CLOSE_CODE,
    BridgeExit,
    EventBridge,
)
from ._config import broker_from_env
from ._errors import (
    BridgeStateError,
    BrokerClosedError,
    BrokerUnavailableError,
    EventIdError,
    EventPayloadError,
    SubscriptionFailedError,
    WeakSecretError,
)
from ._identity import MIN_SECRET_BYTES, UserLike, VerifiedUser
from ._memory import InMemoryBroker
from ._redis import RedisBroker
from ._runs import RunHandle
from ._subscription import Subscription
from ._types import (
    BEGINNING,
    RUN_FINISHED,
    RUN_HEARTBEAT,
    RUN_LOST,
    RUN_STARTED,
    Broker,
    BrokerStats,
    Delivery,
    Gap,
)

__all__ = [
    "BEGINNING",
    "BROKER_GONE_CLOSE_CODE",
    "BridgeExit",
    "BridgeStateError",
    "Broker",
    "BrokerClosedError",
    "BrokerStats",
    "BrokerUnavailableError",
    "Delivery",
    "EventBridge",
    "EventIdError",
    "EventPayloadError",
    "FAILED_CLOSE_CODE",
    "Gap",
    "InMemoryBroker",
    "MIN_SECRET_BYTES",
    "RESYNC_CLOSE_CODE",
    "RUN_FINISHED",
    "RUN_HEARTBEAT",
    "RUN_LOST",
    "RUN_STARTED",
    "RedisBroker",
    "RunHandle",
    "Subscription",
    "SubscriptionFailedError",
    "UNAVAILABLE_CLOSE_CODE",
    "UserLike",
    "VerifiedUser",
    "WeakSecretError",
    "broker_from_env",
]
