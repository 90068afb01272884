"""Redis-only behaviour: keys, isolation re-check, one reader, workers, restarts."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as redis_asyncio
import redis.exceptions
from events_support import INSTALL_HINT, RedisServer, ctx, make_tls_files

from userscope.events import (
    BEGINNING,
    RUN_FINISHED,
    RUN_LOST,
    RUN_STARTED,
    Delivery,
    Gap,
    InMemoryBroker,
    RedisBroker,
    Subscription,
    WeakSecretError,
    broker_from_env,
)

SECRET = "another-test-secret-0123456789abcdef01234567"
GUARD = 5.0
KEY_RE = re.compile(r"[a-z0-9]+:[a-z0-9]+:(t:[0-9a-f]{32}:)?u:[0-9a-f]{64}")


def make(url: str, **options: object) -> RedisBroker:
    defaults: dict[str, object] = {
        "secret": SECRET,
        "key_prefix": "rt:events",
        "block_timeout": 0.5,
        "socket_timeout": 2.0,
        "reconnect_backoff": (0.02, 0.2),
        "heartbeat_interval": 0.05,
        "heartbeat_timeout": 0.3,
    }
    defaults.update(options)
    return RedisBroker(url, **defaults)  # type: ignore[arg-type]


@pytest.fixture
async def admin(redis_server: RedisServer) -> AsyncIterator[redis_asyncio.Redis]:
    client = redis_asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    await client.flushall()
    yield client
    await client.aclose()


async def take(sub: Subscription, n: int) -> list[Delivery | Gap]:
    items: list[Delivery | Gap] = []
    async with asyncio.timeout(GUARD):
        while len(items) < n:
            items.append(await anext(sub))
    return items


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("", "0 bytes long"),
        ("short", "5 bytes long"),
        (b"x" * 31, "31 bytes long"),
        (" " * 32, "only 1 distinct characters"),
        ("secret" * 6, "only 5 distinct characters"),
        ("abcdefgh" * 4, "repeats a 8-character unit"),
        ("aaaaaaaaaaaaaaaaaaaaaaaabcdefghi", "bits of entropy"),
    ],
)
def test_weak_secret_is_refused(secret: str | bytes, problem: str) -> None:
    with pytest.raises(WeakSecretError) as info:
        RedisBroker("redis://127.0.0.1:1/0", secret=secret)
    assert info.value.length == len(secret)
    assert info.value.minimum == 32
    assert problem in info.value.problem
    assert "secrets.token_hex" in str(info.value)
    raw = secret if isinstance(secret, bytes) else secret.encode()
    assert not raw or raw.decode() not in str(info.value)  # never echoes the secret


@pytest.mark.parametrize("prefix", ["", "a*", "{tag}", "a b", "a::b", "x" * 65])
def test_unsafe_key_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="key prefix"):
        RedisBroker("redis://127.0.0.1:1/0", secret=SECRET, key_prefix=prefix)


def test_block_timeout_must_stay_below_socket_timeout() -> None:
    with pytest.raises(ValueError, match="below socket_timeout"):
        RedisBroker("redis://127.0.0.1:1/0", secret=SECRET, block_timeout=5, socket_timeout=5)


async def test_keys_are_keyed_hashes_of_the_identity(redis_server: RedisServer) -> None:
    one, other = make(redis_server.url), make(redis_server.url, secret=SECRET[::-1])
    try:
        key = one.stream_key(ctx("{alice}*:.."))
        assert KEY_RE.fullmatch(key), key
        assert "alice" not in key
        tenant_key = one.stream_key(ctx("alice", "acme"))
        assert tenant_key.startswith("rt:events:t:")
        assert KEY_RE.fullmatch(tenant_key)
        assert one.stream_key(ctx("alice")) != other.stream_key(ctx("alice"))
        assert one.stream_key(ctx("alice")) == make(redis_server.url).stream_key(ctx("alice"))
    finally:
        await one.aclose()
        await other.aclose()


async def test_envelope_for_another_identity_is_dropped(
    redis_server: RedisServer, admin: redis_asyncio.Redis
) -> None:
    broker = make(redis_server.url)
    alice = ctx("alice")
    try:
        async with broker.subscribe(alice) as sub:
            first = await broker.publish(alice, {"n": 1})
            # something writes into alice's stream with bob's identity hash
            forged = await admin.xadd(
                broker.stream_key(alice),
                {"u": "0" * 64, "p": first, "d": json.dumps({"secret": "bob"})},
            )
            last = await broker.publish(alice, {"n": 2})
            got = await take(sub, 2)
        assert [type(i) for i in got] == [Delivery, Delivery]
        assert [i.id for i in got if isinstance(i, Delivery)] == [first, last]
        assert broker.stats.dropped_foreign == 1
        assert forged not in [i.id for i in got if isinstance(i, Delivery)]
    finally:
        await broker.aclose()


async def test_one_reader_connection_for_many_subscriptions(
    redis_server: RedisServer, admin: redis_asyncio.Redis
) -> None:
    broker = make(redis_server.url)
    users = [ctx(f"user-{n}") for n in range(40)]
    subs = [broker.subscribe(u) for u in users]
    try:
        for sub in subs:
            await sub.__aenter__()
        for user in users:
            await broker.publish(user, {"hello": user.user_id})
        for user, sub in zip(users, subs, strict=True):
            (item,) = await take(sub, 1)
            assert isinstance(item, Delivery)
            assert item.payload == {"hello": user.user_id}
        clients = await admin.client_list()
        ours = [c for c in clients if c.get("name") == "userscope-events"]
        assert 1 <= len(ours) <= 3, ours  # one blocking reader (+ publishing connections)
    finally:
        for sub in subs:
            await sub.aclose()
        await broker.aclose()


async def test_two_workers_share_streams_only_with_the_same_secret(
    redis_server: RedisServer, admin: redis_asyncio.Redis
) -> None:
    producer = make(redis_server.url)
    socket_worker = make(redis_server.url)
    foreign = make(redis_server.url, secret=SECRET[::-1])
    alice = ctx("alice")
    try:
        async with (
            socket_worker.subscribe(alice) as sub,
            foreign.subscribe(alice) as foreign_sub,
        ):
            ids = [await producer.publish(alice, {"n": n}) for n in range(20)]
            got = await take(sub, 20)
            assert [i.id for i in got if isinstance(i, Delivery)] == ids
            marker = await foreign.publish(alice, {"own": True})
            (only,) = await take(foreign_sub, 1)
        assert isinstance(only, Delivery)
        assert only.id == marker
    finally:
        for broker in (producer, socket_worker, foreign):
            await broker.aclose()


async def test_subscribers_see_run_lost_when_the_producing_worker_dies(
    redis_server: RedisServer, admin: redis_asyncio.Redis
) -> None:
    producer = make(redis_server.url, heartbeat_interval=0.05, heartbeat_timeout=0.25)
    consumer = make(redis_server.url)
    alice = ctx("alice")
    try:
        async with consumer.subscribe(alice) as sub:
            run = producer.run(alice, "run-7")
            await run.__aenter__()
            await asyncio.sleep(0.15)  # a few heartbeats go out
            await producer.aclose()  # the worker dies: heartbeats stop, no run_finished
            items: list[Delivery | Gap] = []
            async with asyncio.timeout(GUARD):
                async for item in sub:
                    items.append(item)
                    if isinstance(item, Delivery) and item.type == RUN_LOST:
                        break
        kinds = [i.type for i in items if isinstance(i, Delivery)]
        assert kinds[0] == RUN_STARTED
        assert kinds[-1] == RUN_LOST
        assert RUN_FINISHED not in kinds
        assert items[-1].payload["run_id"] == "run-7"  # type: ignore[union-attr]
    finally:
        await consumer.aclose()


async def publish_when_back(broker: RedisBroker, user: object, event: dict[str, int]) -> str:
    """Publish, retrying while the (restarted) server is not reachable yet."""
    async with asyncio.timeout(GUARD):
        while True:
            try:
                return await broker.publish(user, event)  # type: ignore[arg-type]
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                await asyncio.sleep(0.05)


async def test_reader_survives_a_redis_restart_and_reports_the_lost_history(
    fresh_redis: RedisServer,
) -> None:
    broker = make(fresh_redis.url)
    alice, bob = ctx("alice"), ctx("bob")
    try:
        async with broker.subscribe(alice) as sub, broker.subscribe(bob) as bob_sub:
            ids = [await broker.publish(alice, {"n": n}) for n in range(3)]
            assert [i.id for i in await take(sub, 3) if isinstance(i, Delivery)] == ids
            fresh_redis.stop()  # persistence is off: every stream is gone
            fresh_redis.start()  # same port
            new = await publish_when_back(broker, alice, {"n": 3})
            # alice had read everything the lost stream held: no gap, just her next event
            (event,) = await take(sub, 1)
            assert isinstance(event, Delivery)
            assert (event.id, event.payload) == (new, {"n": 3})
            assert sub.last_id == new
            # a client resuming from an id of the lost stream is told it is gone
            async with broker.subscribe(alice, after=ids[-1]) as resumed:
                (gap,) = await take(resumed, 1)
            assert gap == Gap(after=ids[-1], next_id=new, reason="missing")
            # bob had received nothing, so he lost nothing: no gap, just his next event
            bob_id = await publish_when_back(broker, bob, {"n": 0})
            (bob_event,) = await take(bob_sub, 1)
            assert isinstance(bob_event, Delivery)
            assert bob_event.id == bob_id
        assert broker.stats.reconnects >= 1
    finally:
        await broker.aclose()


async def test_reader_resumes_without_gap_when_connections_drop(
    redis_server: RedisServer, admin: redis_asyncio.Redis
) -> None:
    broker = make(redis_server.url)
    alice = ctx("alice")
    try:
        async with broker.subscribe(alice, after=BEGINNING) as sub:
            ids = [await broker.publish(alice, {"n": n}) for n in range(3)]
            await take(sub, 3)
            await admin.execute_command("CLIENT", "KILL", "SKIPME", "yes", "TYPE", "normal")
            more = [await publish_when_back(broker, alice, {"n": n}) for n in range(3, 6)]
            got = await take(sub, 3)
        assert [type(i) for i in got] == [Delivery] * 3
        assert [i.id for i in got if isinstance(i, Delivery)] == more
        assert tuple(map(int, ids[-1].split("-"))) < tuple(map(int, more[0].split("-")))
        assert broker.stats.reconnects >= 1
    finally:
        await broker.aclose()


async def test_broker_from_env_switches_on_the_redis_url(redis_server: RedisServer) -> None:
    memory = broker_from_env({"USERSCOPE_REDIS_URL": "  "})
    assert isinstance(memory, InMemoryBroker)
    await memory.aclose()
    with pytest.raises(WeakSecretError) as info:
        broker_from_env({"USERSCOPE_REDIS_URL": redis_server.url})
    assert info.value.length == 0
    broker = broker_from_env(
        {
            "USERSCOPE_REDIS_URL": redis_server.url,
            "USERSCOPE_EVENTS_SECRET": SECRET,
            "USERSCOPE_EVENTS_PREFIX": "app:prod",
        },
        maxlen=10,
    )
    try:
        assert isinstance(broker, RedisBroker)
        assert broker.maxlen == 10
        assert broker.stream_key(ctx("alice")).startswith("app:prod:u:")
        assert await broker.ping()
    finally:
        await broker.aclose()


ACL_RULES = [
    "on", ">app-password-0123456789", "resetkeys", "~rt:events:*", "resetchannels",
    "-@all", "+eval", "+xadd", "+xread", "+xrange", "+xrevrange", "+pexpire", "+del",
    "+ping", "+hello", "+client|setname", "+select",
]  # fmt: skip


async def test_documented_acl_limited_to_the_prefix_is_enough(
    redis_server: RedisServer, admin: redis_asyncio.Redis
) -> None:
    await admin.execute_command("ACL", "SETUSER", "userscope-app", *ACL_RULES)
    url = redis_server.url.replace("redis://", "redis://userscope-app:app-password-0123456789@")
    broker = make(url)
    alice = ctx("alice")
    try:
        ids = [await broker.publish(alice, {"n": n}) for n in range(3)]
        async with broker.subscribe(alice, after=BEGINNING) as sub:
            got = await take(sub, 3)
            assert [i.id for i in got if isinstance(i, Delivery)] == ids
            async with broker.run(alice, "r"):
                pass
        assert await broker.ping()
        # the same credentials cannot touch anything outside the prefix
        outsider = redis_asyncio.Redis.from_url(url, decode_responses=True)
        try:
            with pytest.raises(redis.exceptions.NoPermissionError):
                await outsider.get("some-other-app:key")
            with pytest.raises(redis.exceptions.NoPermissionError):
                await outsider.keys("*")
        finally:
            await outsider.aclose()
    finally:
        await broker.aclose()
        await admin.execute_command("ACL", "DELUSER", "userscope-app")


def test_managed_connection_options_are_refused() -> None:
    with pytest.raises(ValueError, match="socket_timeout"):
        RedisBroker(
            "redis://127.0.0.1:1/0", secret=SECRET, connection_options={"socket_timeout": 60}
        )


async def test_tls_through_a_rediss_url(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "tls")
    if shutil.which("redis-server") is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    server = RedisServer(tmp_path / "redis", tls=tls)
    server.start()
    try:
        assert server.url.startswith("rediss://")
        broker = make(server.url, connection_options={"ssl_ca_certs": str(tls.ca)})
        alice = ctx("alice")
        try:
            async with broker.subscribe(alice) as sub:
                event_id = await broker.publish(alice, {"over": "tls"})
                (item,) = await take(sub, 1)
            assert isinstance(item, Delivery)
            assert (item.id, item.payload) == (event_id, {"over": "tls"})
        finally:
            await broker.aclose()
    finally:
        server.stop()


async def test_cancelled_subscribe_leaves_nothing_registered(redis_server: RedisServer) -> None:
    broker = make(redis_server.url)
    alice = ctx("alice")
    try:
        sub = broker.subscribe(alice)
        attaching = asyncio.create_task(sub.__aenter__())
        await asyncio.sleep(0)
        attaching.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attaching
        # a later subscription still works, and the cancelled one was not kept
        async with broker.subscribe(alice) as live:
            event_id = await broker.publish(alice, {"n": 1})
            (item,) = await take(live, 1)
        assert isinstance(item, Delivery)
        assert item.id == event_id
        assert broker.stats.subscriptions == 0
        assert broker._watches == {}  # internal: no watch left for a dead subscription
    finally:
        await broker.aclose()
