"""Regressions of the adversarial and fault reviews (issue 16) at the broker layer.

Real redis-server processes, killed (SIGKILL) and restarted by the tests. Every wait
is bounded by GUARD; nothing asserts on speed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as redis_asyncio
import redis.exceptions
from events_support import BrokerFactory, RedisServer, ctx

from userscope.events import (
    BEGINNING,
    FAILED_CLOSE_CODE,
    RESYNC_CLOSE_CODE,
    BrokerUnavailableError,
    Delivery,
    EventBridge,
    EventIdError,
    Gap,
    InMemoryBroker,
    RedisBroker,
    Subscription,
    SubscriptionFailedError,
)
from userscope.events._types import parse_after

SECRET = "hardening-test-secret-0123456789abcdef0123456789"
GUARD = 5.0


def make(url: str, **options: Any) -> RedisBroker:
    defaults: dict[str, Any] = {
        "secret": SECRET,
        "key_prefix": f"hard:{uuid.uuid4().hex[:8]}",
        "block_timeout": 0.5,
        "socket_timeout": 2.0,
        "reconnect_backoff": (0.02, 0.2),
    }
    return RedisBroker(url, **{**defaults, **options})


@pytest.fixture
async def admin(redis_server: RedisServer) -> AsyncIterator[redis_asyncio.Redis]:
    client = redis_asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


async def take(sub: Subscription, n: int) -> list[Delivery | Gap]:
    items: list[Delivery | Gap] = []
    async with asyncio.timeout(GUARD):
        while len(items) < n:
            items.append(await anext(sub))
    return items


def ids_of(items: list[Delivery | Gap]) -> list[str]:
    return [i.id for i in items if isinstance(i, Delivery)]


# -- resume ids -------------------------------------------------------------------------

BAD_IDS = [
    "1-99999999999999999999",  # beyond Redis's uint64 sequence
    "18446744073709551616-0",  # 2**64 milliseconds
    "0-18446744073709551616",
    "\u0661-\u0660",  # Arabic-Indic digits match \d but Redis refuses them
    "1-\u0660",
    "\uff11-0",  # fullwidth digit one
]


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_resume_ids_beyond_uint64_or_not_ascii_are_refused(
    make_broker: BrokerFactory, bad: str
) -> None:
    broker = make_broker()
    with pytest.raises(EventIdError) as info:
        broker.subscribe(ctx("alice"), after=bad)
    assert info.value.value == bad
    assert "ASCII digits" in str(info.value)


def test_the_largest_uint64_id_is_still_an_id() -> None:
    top = f"{2**64 - 1}-{2**64 - 1}"
    assert parse_after(top) == top


async def test_bad_after_on_one_socket_never_stalls_other_users(
    redis_server: RedisServer,
) -> None:
    broker = make(redis_server.url)
    alice, bob = ctx("alice"), ctx("bob")
    opened: list[Subscription] = []
    try:
        # alice has history, so an unchecked bad id would become the reader's XREAD cursor
        await broker.publish(alice, {"n": 0})
        async with broker.subscribe(bob) as bob_sub:
            for bad in ("1-99999999999999999999", "\u0661-\u0660"):
                with pytest.raises(EventIdError):
                    sub = broker.subscribe(alice, after=bad)
                    opened.append(sub)
                    async with asyncio.timeout(GUARD):
                        await sub.__aenter__()
            sent = [await broker.publish(bob, {"n": n}) for n in range(3)]
            got = await take(bob_sub, 3)
        assert ids_of(got) == sent
        assert broker.stats.failed == 0
    finally:
        for sub in opened:
            await sub.aclose()
        await broker.aclose()


# -- one subscription's Redis error fails it alone --------------------------------------


async def test_a_redis_error_on_one_stream_fails_that_subscription_alone(
    redis_server: RedisServer, admin: redis_asyncio.Redis
) -> None:
    broker = make(redis_server.url)
    alice, bob = ctx("alice"), ctx("bob")
    try:
        async with broker.subscribe(alice) as alice_sub, broker.subscribe(bob) as bob_sub:
            # something outside the broker turns alice's stream key into a string:
            # every XREAD naming it is refused with WRONGTYPE
            await admin.set(broker.stream_key(alice), "not a stream")
            await broker.publish(bob, {"n": 0})  # wakes the reader into the refused XREAD
            with pytest.raises(SubscriptionFailedError) as info:
                async with asyncio.timeout(GUARD):
                    await anext(alice_sub)
            assert "WRONGTYPE" in info.value.reason
            assert alice_sub.closed
            # bob's subscription on the same reader keeps receiving
            sent = [await broker.publish(bob, {"n": n}) for n in range(1, 4)]
            got = await take(bob_sub, 4)
            assert ids_of(got)[1:] == sent
            # a new subscription of alice is refused the same way, at once
            with pytest.raises(SubscriptionFailedError):
                async with asyncio.timeout(GUARD), broker.subscribe(alice):
                    pass  # pragma: no cover - refused on entry
            last = await broker.publish(bob, {"n": 4})
            (item,) = await take(bob_sub, 1)
            assert isinstance(item, Delivery)
            assert item.id == last
        assert broker.stats.failed == 2
        assert broker._watches == {}  # internal: nothing left registered for either
    finally:
        await broker.aclose()


async def test_the_failed_socket_is_closed_alone_with_1011(
    redis_server: RedisServer, admin: redis_asyncio.Redis
) -> None:
    broker = make(redis_server.url)
    alice, bob = ctx("alice"), ctx("bob")
    closes: list[tuple[int, str]] = []
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def close(code: int, reason: str) -> None:
        closes.append((code, reason))

    async def nowhere(message: dict[str, Any]) -> None:
        raise AssertionError(f"alice's socket got {message}")  # pragma: no cover

    try:
        async with (
            EventBridge(broker, alice, nowhere, close=close) as alice_bridge,
            EventBridge(broker, bob, inbox.put, close=close),
        ):
            await admin.set(broker.stream_key(alice), "not a stream")
            sent = await broker.publish(bob, {"n": 1})
            async with asyncio.timeout(GUARD):
                message = await inbox.get()
                exit_ = await alice_bridge.wait()
        assert message["id"] == sent
        assert exit_.code == FAILED_CLOSE_CODE
        assert isinstance(exit_.error, SubscriptionFailedError)
        assert closes == [(FAILED_CLOSE_CODE, exit_.reason)]
        assert exit_.reason.startswith("events_failed:")
    finally:
        await broker.aclose()


async def test_subscribing_while_redis_is_down_is_refused_not_left_waiting(
    fresh_redis: RedisServer,
) -> None:
    broker = make(fresh_redis.url, attach_timeout=0.5)
    alice = ctx("alice")
    try:
        fresh_redis.kill()
        with pytest.raises(BrokerUnavailableError) as info:
            async with asyncio.timeout(GUARD), broker.subscribe(alice):
                pass  # pragma: no cover - refused on entry
        assert (info.value.broker, info.value.waited) == ("RedisBroker", 0.5)
        assert isinstance(info.value, ConnectionError)
        assert broker.available is False  # known without waiting: refuse work with 503
        assert broker._watches == {}  # internal: nothing half-registered
        assert not broker._requests
        fresh_redis.start()
        async with broker.subscribe(alice) as sub:
            sent = await broker.publish(alice, {"n": 1})
            assert ids_of(await take(sub, 1)) == [sent]
        assert broker.available is True
    finally:
        await broker.aclose()


# -- Redis faults -----------------------------------------------------------------------


async def publish_retrying(broker: RedisBroker, user: Any, event: dict[str, Any]) -> str:
    """Publish until Redis answers (this test is about gaps, not about publish retries)."""
    async with asyncio.timeout(GUARD):
        while True:
            try:
                return await broker.publish(user, event)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                await asyncio.sleep(0.05)


async def test_first_publishes_after_a_redis_restart_succeed(fresh_redis: RedisServer) -> None:
    broker = make(fresh_redis.url, reconnect_backoff=(0.05, 0.5))
    alice = ctx("alice")
    try:
        # several pooled connections are open and idle when Redis dies
        await asyncio.gather(*(broker.publish(alice, {"n": n}) for n in range(8)))
        fresh_redis.kill()
        fresh_redis.start()
        # no retry loop here: the broker's redis-py Retry re-dials the dead connections
        ids = await asyncio.gather(*(broker.publish(alice, {"n": n}) for n in range(8)))
        assert len(set(ids)) == 8
    finally:
        await broker.aclose()


async def test_the_reader_never_waits_longer_than_the_backoff_cap() -> None:
    broker = RedisBroker("redis://127.0.0.1:1/0", secret=SECRET)  # the defaults
    custom = RedisBroker("redis://127.0.0.1:1/0", secret=SECRET, reconnect_backoff=(0.01, 0.1))
    try:
        waits = [broker._backoff.compute(failures) for failures in range(1, 60)]  # internal
        assert max(waits) <= 0.5  # the documented cap: back within about 0.5 s of Redis
        assert min(waits) > 0
        assert max(custom._backoff.compute(f) for f in range(1, 60)) <= 0.1
    finally:
        await broker.aclose()
        await custom.aclose()


async def test_subscribers_come_back_after_a_long_outage(fresh_redis: RedisServer) -> None:
    consumer = make(fresh_redis.url, reconnect_backoff=(0.05, 0.5))
    producer = make(fresh_redis.url, key_prefix=consumer.key_prefix)
    users = [ctx(f"user-{n}") for n in range(5)]
    subs = [consumer.subscribe(u) for u in users]
    try:
        for sub in subs:
            await sub.__aenter__()
        fresh_redis.kill()
        await asyncio.sleep(2.0)  # long enough for many failed reconnects (not asserted on)
        fresh_redis.start()
        sent = [await publish_retrying(producer, u, {"for": u.user_id}) for u in users]
        for user, sub, event_id in zip(users, subs, sent, strict=True):
            (item,) = await take(sub, 1)
            assert isinstance(item, Delivery)
            assert (item.id, item.payload) == (event_id, {"for": user.user_id})
        assert consumer.stats.reconnects == 1  # one outage, counted once
    finally:
        for sub in subs:
            await sub.aclose()
        await consumer.aclose()
        await producer.aclose()


async def test_lost_redis_data_is_missing_for_resumers_and_silent_for_the_caught_up(
    fresh_redis: RedisServer,
) -> None:
    # the consumer's reader backs off for at least 1.5 s after the crash, so the producer
    # writes the new stream before the reader looks again (the order the review hit)
    consumer = make(fresh_redis.url, reconnect_backoff=(3.0, 3.0))
    producer = make(fresh_redis.url, key_prefix=consumer.key_prefix)
    alice = ctx("alice")
    try:
        async with consumer.subscribe(alice) as live:
            before = [await producer.publish(alice, {"n": n}) for n in range(3)]
            assert ids_of(await take(live, 3)) == before
            fresh_redis.kill()  # persistence is off: every stream is gone
            fresh_redis.start()
            first_new = await publish_retrying(producer, alice, {"n": 3})
            # the live subscriber had everything the lost stream held: no gap, just news
            (item,) = await take(live, 1)
            assert isinstance(item, Delivery)
            assert (item.id, item.payload) == (first_new, {"n": 3})
            # a client resuming from its last id learns the history is gone: "missing"
            async with consumer.subscribe(alice, after=before[-1]) as resumed:
                gap, event = await take(resumed, 2)
        assert gap == Gap(after=before[-1], next_id=first_new, reason="missing")
        assert isinstance(event, Delivery)
        assert event.id == first_new
        assert consumer.stats.gaps == 1
        assert consumer.stats.reconnects >= 1
    finally:
        await consumer.aclose()
        await producer.aclose()


async def test_a_restart_that_keeps_the_data_reports_no_gap(fresh_redis: RedisServer) -> None:
    broker = make(fresh_redis.url)
    alice, bob = ctx("alice"), ctx("bob")
    admin = redis_asyncio.Redis.from_url(fresh_redis.url, decode_responses=True)
    try:
        async with broker.subscribe(alice) as live, broker.subscribe(bob) as bob_live:
            before = [await broker.publish(alice, {"n": n}) for n in range(3)]
            await take(live, 3)
            await admin.save()  # an RDB snapshot: the restart below loses nothing
            await admin.aclose()
            fresh_redis.kill()
            fresh_redis.start()
            after = [await broker.publish(alice, {"n": n}) for n in (3, 4)]
            bob_id = await broker.publish(bob, {"n": 0})
            got = await take(live, 2)
            (bob_got,) = await take(bob_live, 1)
            async with broker.subscribe(alice, after=before[1]) as resumed:
                replay = await take(resumed, 3)
        assert [type(i) for i in got] == [Delivery, Delivery]
        assert ids_of(got) == after
        assert isinstance(bob_got, Delivery)
        assert bob_got.id == bob_id
        assert ids_of(replay) == [before[2], *after]
        assert broker.stats.gaps == 0
    finally:
        await admin.aclose()
        await broker.aclose()


# -- the in-memory broker ---------------------------------------------------------------


async def test_in_memory_ids_are_numbered_per_user() -> None:
    broker = InMemoryBroker(clock=lambda: 1000.0)  # every publish in the same millisecond
    alice, bob = ctx("alice"), ctx("bob")
    mine = []
    for n in range(3):
        mine.append(await broker.publish(alice, {"n": n}))
        await broker.publish(bob, {"n": n})  # bob's activity leaves no trace in alice's ids
    assert mine == ["1000000-0", "1000000-1", "1000000-2"]
    assert await broker.publish(bob, {"n": 3}) == "1000000-3"
    await broker.aclose()


async def test_a_stalled_in_memory_subscriber_holds_a_bounded_number_of_bytes() -> None:
    big = "x" * (64 * 1024)
    broker = InMemoryBroker(buffer_bytes=256 * 1024, buffer_limit=10_000)
    alice = ctx("alice")
    async with broker.subscribe(alice) as sub:
        sent = [await broker.publish(alice, {"n": n, "pad": big}) for n in range(20)]
        assert sub.lagged  # 20 x 64 KiB passed the 256 KiB bound long before 10 000 events
        assert sum(len(r.data) for r in sub._buffer if hasattr(r, "data")) <= 256 * 1024
        got = await take(sub, 20)  # nothing lost: the rest is re-read from history
    assert ids_of(got) == sent
    await broker.aclose()


async def test_a_stalled_socket_holds_a_bounded_number_of_bytes() -> None:
    broker = InMemoryBroker()
    alice = ctx("alice")
    stalled = asyncio.Event()  # never set: the client reads nothing
    closes: list[tuple[int, str]] = []

    async def send(message: dict[str, Any]) -> None:
        await stalled.wait()

    async def close(code: int, reason: str) -> None:
        closes.append((code, reason))

    big = "z" * (64 * 1024)
    bridge = EventBridge(broker, alice, send, close=close, max_queue_bytes=256 * 1024)
    async with bridge:
        for n in range(20):  # far below max_queue=256 events, far above 256 KiB
            await broker.publish(alice, {"n": n, "pad": big})
        async with asyncio.timeout(GUARD):
            exit_ = await bridge.wait()
    assert exit_.code == RESYNC_CLOSE_CODE
    assert "262144 bytes" in exit_.reason
    assert closes == [(RESYNC_CLOSE_CODE, exit_.reason)]
    assert bridge._queued_bytes == 0  # internal: the dropped queue is accounted for
    await broker.aclose()


async def test_in_memory_history_is_bounded_in_bytes() -> None:
    big = "y" * (64 * 1024)
    broker = InMemoryBroker(max_history_bytes=300 * 1024)
    alice = ctx("alice")
    sent = [await broker.publish(alice, {"n": n, "pad": big}) for n in range(10)]
    async with broker.subscribe(alice, after=sent[0]) as sub:
        gap = (await take(sub, 1))[0]
        assert isinstance(gap, Gap)
        assert gap.reason == "trimmed"
        assert gap.next_id is not None
        kept = sent[sent.index(gap.next_id) :]
        rest = await take(sub, len(kept))
    assert 1 <= len(kept) <= 4  # 4 x 64 KiB + JSON overhead fit, a fifth does not
    assert ids_of(rest) == kept
    await broker.aclose()


# -- durations --------------------------------------------------------------------------


async def test_events_durations_take_seconds_or_timedelta() -> None:
    broker = InMemoryBroker(
        idle_ttl=timedelta(minutes=2),
        heartbeat_interval=timedelta(milliseconds=50),
        heartbeat_timeout=0.5,
    )
    assert (broker.idle_ttl, broker.heartbeat_interval) == (120.0, 0.05)
    run = broker.run(ctx("alice"), "r-1", heartbeat_timeout=timedelta(seconds=1))
    assert run.heartbeat_timeout == 1.0
    redis_broker = RedisBroker(
        "redis://127.0.0.1:1/0",
        secret=SECRET,
        block_timeout=timedelta(seconds=1),
        attach_timeout=timedelta(seconds=3),
    )
    assert (redis_broker.block_timeout, redis_broker.attach_timeout) == (1.0, 3.0)
    await redis_broker.aclose()
    with pytest.raises(TypeError, match="idle_ttl"):
        InMemoryBroker(idle_ttl="60")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="attach_timeout"):
        RedisBroker("redis://127.0.0.1:1/0", secret=SECRET, attach_timeout=0)
    await broker.aclose()


def test_redis_broker_keeps_its_retry_settings_to_itself() -> None:
    with pytest.raises(ValueError, match="retry"):
        RedisBroker("redis://127.0.0.1:1/0", secret=SECRET, connection_options={"retry": None})


async def test_beginning_is_still_accepted(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    alice = ctx("alice")
    sent = await broker.publish(alice, {"n": 1})
    async with broker.subscribe(alice, after=BEGINNING) as sub:
        assert ids_of(await take(sub, 1)) == [sent]
