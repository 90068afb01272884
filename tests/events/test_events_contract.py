"""One contract, two brokers: every test runs on InMemoryBroker and on a real Redis."""

from __future__ import annotations

import asyncio
import datetime
import math
from typing import Any

import pydantic
import pytest
from events_support import BrokerFactory, ctx

from userscope.events import (
    BEGINNING,
    RUN_FINISHED,
    RUN_HEARTBEAT,
    RUN_LOST,
    RUN_STARTED,
    Broker,
    BrokerClosedError,
    Delivery,
    EventIdError,
    EventPayloadError,
    Gap,
    Subscription,
    VerifiedUser,
)

GUARD = 5.0  # seconds: a hang fails the test instead of blocking CI; never asserted on


async def take(sub: Subscription, n: int) -> list[Delivery | Gap]:
    items: list[Delivery | Gap] = []
    async with asyncio.timeout(GUARD):
        while len(items) < n:
            items.append(await anext(sub))
    return items


def events(items: list[Delivery | Gap]) -> list[Delivery]:
    return [i for i in items if isinstance(i, Delivery)]


async def test_both_brokers_implement_the_protocol(make_broker: BrokerFactory) -> None:
    assert isinstance(make_broker(), Broker)


async def test_total_order_per_user(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    alice = ctx("alice")
    async with broker.subscribe(alice) as sub:
        ids = [await broker.publish(alice, {"n": n}) for n in range(50)]
        got = await take(sub, 50)
    assert all(isinstance(i, Delivery) for i in got)
    assert [d.payload["n"] for d in events(got)] == list(range(50))
    assert [d.id for d in events(got)] == ids
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    assert len(set(ids)) == 50
    assert sub.last_id == ids[-1]


async def test_concurrent_publishers_keep_each_users_order(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    users = [ctx(f"user-{n}") for n in range(20)]
    subs = [broker.subscribe(u) for u in users]
    for sub in subs:
        await sub.__aenter__()

    async def produce(user_index: int) -> list[str]:
        return [
            await broker.publish(users[user_index], {"u": user_index, "n": n}) for n in range(20)
        ]

    try:
        published = await asyncio.gather(*(produce(i) for i in range(len(users))))
        for index, sub in enumerate(subs):
            got = events(await take(sub, 20))
            assert [d.id for d in got] == published[index]
            assert [d.payload for d in got] == [{"u": index, "n": n} for n in range(20)]
    finally:
        for sub in subs:
            await sub.aclose()


async def test_after_none_delivers_only_new_events(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    alice = ctx("alice")
    for n in range(3):
        await broker.publish(alice, {"old": n})
    async with broker.subscribe(alice) as sub:
        await broker.publish(alice, {"new": 1})
        (item,) = await take(sub, 1)
    assert isinstance(item, Delivery)
    assert item.payload == {"new": 1}


async def test_resume_after_id_gets_everything_after_it(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    alice = ctx("alice")
    ids = [await broker.publish(alice, {"n": n}) for n in range(10)]
    async with broker.subscribe(alice, after=ids[4]) as sub:
        got = await take(sub, 5)
    assert [type(i) for i in got] == [Delivery] * 5
    assert [d.id for d in events(got)] == ids[5:]
    async with broker.subscribe(alice, after=BEGINNING) as sub:
        got = await take(sub, 10)
    assert [d.payload["n"] for d in events(got)] == list(range(10))


async def test_resume_while_live_subscribers_are_ahead(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    alice = ctx("alice")
    async with broker.subscribe(alice) as live:
        ids = [await broker.publish(alice, {"n": n}) for n in range(6)]
        assert [d.id for d in events(await take(live, 6))] == ids
        async with broker.subscribe(alice, after=ids[1]) as late:
            await broker.publish(alice, {"n": 6})
            got = await take(late, 5)
        assert [d.payload["n"] for d in events(got)] == [2, 3, 4, 5, 6]
        (seventh,) = await take(live, 1)
    assert isinstance(seventh, Delivery)
    assert seventh.payload == {"n": 6}


async def test_gap_marker_after_history_was_trimmed(make_broker: BrokerFactory) -> None:
    broker = make_broker(maxlen=5)
    alice = ctx("alice")
    # Redis trims with MAXLEN ~ (whole 100-entry nodes), so publish well past the bound
    ids = [await broker.publish(alice, {"n": n}) for n in range(250)]
    async with broker.subscribe(alice, after=ids[0]) as sub:
        gap = (await take(sub, 1))[0]
        assert isinstance(gap, Gap)
        assert gap.after == ids[0]
        assert gap.reason == "trimmed"
        assert gap.next_id is not None
        first = ids.index(gap.next_id)
        rest = await take(sub, len(ids) - first)
    assert 1 < first < 250
    assert [d.id for d in events(rest)] == ids[first:]
    assert all(isinstance(i, Delivery) for i in rest)


async def test_overflowing_subscriber_rereads_history_without_loss(
    make_broker: BrokerFactory,
) -> None:
    broker = make_broker(buffer_limit=4)
    alice = ctx("alice")
    async with broker.subscribe(alice) as sub:
        ids = [await broker.publish(alice, {"n": n}) for n in range(20)]
        await asyncio.sleep(0.05)  # let the Redis reader hand over (and drop) envelopes
        got = await take(sub, 20)
    assert [type(i) for i in got] == [Delivery] * 20
    assert [d.id for d in events(got)] == ids


async def test_idle_users_stream_expires_and_resume_reports_it(
    make_broker: BrokerFactory,
) -> None:
    broker = make_broker(idle_ttl=0.2)
    alice = ctx("alice")
    first = await broker.publish(alice, {"n": 0})
    async with broker.subscribe(alice, after=BEGINNING) as live:
        assert [d.id for d in events(await take(live, 1))] == [first]
        await asyncio.sleep(0.5)  # idle for longer than idle_ttl: history is dropped
        async with broker.subscribe(alice, after=first) as resumed:
            missing = (await take(resumed, 1))[0]
        assert missing == Gap(after=first, next_id=None, reason="missing")
        # the live subscriber learns about the hole when the next event arrives
        later = await broker.publish(alice, {"n": 1})
        gap, event = await take(live, 2)
    assert gap == Gap(after=first, next_id=later, reason="missing")
    assert isinstance(event, Delivery)
    assert event.id == later


async def test_run_heartbeats_keep_a_run_alive(make_broker: BrokerFactory) -> None:
    broker = make_broker(heartbeat_interval=0.05, heartbeat_timeout=0.2)
    alice = ctx("alice")
    async with broker.subscribe(alice) as sub:
        async with broker.run(alice, "run-1") as run:
            await asyncio.sleep(0.4)  # twice the timeout: only heartbeats keep it alive
            await run.publish({"type": "token", "text": "hi"})
        seen: list[Delivery] = []
        async with asyncio.timeout(GUARD):
            while not seen or seen[-1].type != RUN_FINISHED:
                item = await anext(sub)
                assert isinstance(item, Delivery)
                seen.append(item)
        await asyncio.sleep(0.3)  # past the timeout: a finished run is never "lost"
        await broker.publish(alice, {"type": "after"})
        (after,) = await take(sub, 1)
    kinds = [d.type for d in seen]
    assert kinds[0] == RUN_STARTED
    assert RUN_HEARTBEAT in kinds
    assert RUN_LOST not in kinds
    assert "token" in kinds
    assert seen[-1].payload == {"type": RUN_FINISHED, "run_id": "run-1", "status": "ok"}
    assert {d.payload["run_id"] for d in seen} == {"run-1"}
    assert isinstance(after, Delivery)
    assert after.type == "after"


async def test_run_failure_is_reported_as_error(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    alice = ctx("alice")
    async with broker.subscribe(alice) as sub:
        with pytest.raises(ZeroDivisionError):
            async with broker.run(alice, "run-2"):
                _ = 1 / 0
        started, finished = await take(sub, 2)
    assert isinstance(started, Delivery)
    assert started.type == RUN_STARTED
    assert isinstance(finished, Delivery)
    assert finished.payload["status"] == "error"
    assert finished.payload["error"] == "ZeroDivisionError"


async def test_run_fields_are_stamped_on_every_event_of_the_run(
    make_broker: BrokerFactory,
) -> None:
    broker = make_broker(heartbeat_interval=0.05, heartbeat_timeout=0.2)
    alice = ctx("alice")
    fields = {"agent": "coder", "request_id": "r-1", "text": "prompt"}
    async with broker.subscribe(alice) as sub:
        async with broker.run(alice, "run-f", fields=fields) as run:
            await run.publish({"type": "token", "text": "word"})
            await asyncio.sleep(0.12)  # at least one heartbeat
        seen: list[Delivery] = []
        async with asyncio.timeout(GUARD):
            while not seen or seen[-1].type != RUN_FINISHED:
                item = await anext(sub)
                assert isinstance(item, Delivery)
                seen.append(item)
    started, token = seen[0], seen[1]
    assert started.payload == {
        **fields,
        "type": RUN_STARTED,
        "run_id": "run-f",
        "heartbeat_timeout": 0.2,
    }
    assert token.payload == {**fields, "type": "token", "text": "word", "run_id": "run-f"}
    assert seen[-1].payload == {**fields, "type": RUN_FINISHED, "run_id": "run-f", "status": "ok"}
    beats = [d for d in seen if d.type == RUN_HEARTBEAT]
    assert beats
    assert all(d.payload["agent"] == "coder" for d in beats)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"type": "x"}, ValueError),
        ({"run_id": "other"}, ValueError),
        ({"when": datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)}, EventPayloadError),
    ],
)
async def test_run_fields_are_checked_up_front(
    make_broker: BrokerFactory, fields: dict[str, Any], error: type[Exception]
) -> None:
    broker = make_broker()
    with pytest.raises(error):
        broker.run(ctx("alice"), "run-x", fields=fields)


async def test_run_lost_when_heartbeats_stop(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    alice = ctx("alice")
    async with broker.subscribe(alice) as sub:
        # what a producer publishes before its process dies: run_started, then silence
        started_id = await broker.publish(
            alice, {"type": RUN_STARTED, "run_id": "run-9", "heartbeat_timeout": 0.2}
        )
        started, lost = await take(sub, 2)
    assert isinstance(started, Delivery)
    assert started.id == started_id
    assert isinstance(lost, Delivery)
    assert lost.synthetic is True
    assert lost.payload == {"type": RUN_LOST, "run_id": "run-9", "last_seen_id": started_id}
    assert lost.id == started_id  # resuming from a synthetic event loses nothing
    assert lost.to_wire()["synthetic"] is True


ODD_IDS = [
    "*",
    ":",
    "{}",
    "{alice}",
    "..",
    "../..",
    "a:b",
    "a*b?",
    "[x]",
    "user\\0",
    "ünïcødé-用户-🙂",
    "alice",
    "Alice",
    "a lice",
    "a  lice",
    "u" * 256,
    "\u00e9",
    "e\u0300",
]


async def test_odd_user_ids_never_cross(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    users = [ctx(uid) for uid in ODD_IDS] + [ctx("alice", "t1"), ctx("alice", "t2")]
    subs = [broker.subscribe(u, after=BEGINNING) for u in users]
    for sub in subs:
        await sub.__aenter__()
    try:
        for round_ in range(3):
            for index, user in enumerate(users):
                await broker.publish(user, {"owner": index, "round": round_})
        for index, user in enumerate(users):
            await broker.publish(user, {"owner": index, "round": "last"})
        for index, sub in enumerate(subs):
            got = await take(sub, 4)
            assert [d.payload for d in events(got)] == [
                {"owner": index, "round": r} for r in (0, 1, 2, "last")
            ], ODD_IDS[index] if index < len(ODD_IDS) else users[index].tenant_id
    finally:
        for sub in subs:
            await sub.aclose()
    assert broker.stats.dropped_foreign == 0
    if hasattr(broker, "stream_key"):
        keys = {broker.stream_key(u) for u in users}
        assert len(keys) == len(users)
        for key in keys:
            assert all(c.isalnum() or c == ":" for c in key), key
            assert not any(c in key for c in "*?[]{}\\ ")


async def test_user_id_over_the_limit_is_refused_before_any_broker() -> None:
    with pytest.raises(pydantic.ValidationError):
        ctx("u" * 300)


async def test_only_verified_identities_are_accepted(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    with pytest.raises(TypeError, match="UserExecutionContext"):
        await broker.publish("alice", {"n": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bare string"):
        VerifiedUser("alice", None)
    verified = VerifiedUser.from_context(ctx("alice", "t1"))
    assert (verified.user_id, verified.tenant_id) == ("alice", "t1")
    async with broker.subscribe(verified) as sub:
        await broker.publish(ctx("alice", "t1"), {"n": 1})
        (item,) = await take(sub, 1)
    assert isinstance(item, Delivery)
    assert item.payload == {"n": 1}


async def test_the_tenant_comes_from_tenant_id_only(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    acme, globex, plain = ctx("alice", "acme"), ctx("alice", "globex"), ctx("alice")
    assert VerifiedUser.from_context(acme).tenant_id == "acme"
    async with broker.subscribe(acme) as acme_sub, broker.subscribe(plain) as plain_sub:
        await broker.publish(globex, {"for": "globex"})
        await broker.publish(plain, {"for": "plain"})
        acme_id = await broker.publish(acme, {"for": "acme"})
        (got,) = await take(acme_sub, 1)
        (plain_got,) = await take(plain_sub, 1)
    assert isinstance(got, Delivery)
    assert (got.id, got.payload) == (acme_id, {"for": "acme"})
    assert isinstance(plain_got, Delivery)
    assert plain_got.payload == {"for": "plain"}
    # the old spelling is never read: a context still carrying metadata["tenant"] that
    # disagrees with tenant_id is refused rather than silently keyed without a tenant
    legacy = ctx("alice").model_copy(update={"metadata": {"tenant": "acme"}})
    with pytest.raises(TypeError, match=r"tenant_id") as info:
        await broker.publish(legacy, {"n": 1})
    assert "metadata['tenant']" in str(info.value)
    agreeing = ctx("alice", "acme").model_copy(update={"metadata": {"tenant": "acme"}})
    assert VerifiedUser.from_context(agreeing) == VerifiedUser.from_context(acme)


class _Opaque:
    pass


@pytest.mark.parametrize(
    ("event", "path"),
    [
        ({"when": datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)}, "$.when"),
        ({"tags": {"a", "b"}}, "$.tags"),
        ({"blob": b"\x00"}, "$.blob"),
        ({"pair": (1, 2)}, "$.pair"),
        ({"x": math.nan}, "$.x"),
        ({"x": math.inf}, "$.x"),
        ({"deep": [{"ok": 1}, {"obj": _Opaque()}]}, "$.deep[1].obj"),
        ({1: "int key"}, "$"),
        (["not", "an", "object"], "$"),
    ],
)
async def test_json_only_payloads(make_broker: BrokerFactory, event: Any, path: str) -> None:
    broker = make_broker()
    alice = ctx("alice")
    with pytest.raises(EventPayloadError) as info:
        await broker.publish(alice, event)
    assert info.value.path == path
    assert isinstance(info.value, TypeError)
    assert broker.stats.published == 0


async def test_payload_size_limit(make_broker: BrokerFactory) -> None:
    broker = make_broker(max_event_bytes=100)
    with pytest.raises(EventPayloadError, match="max_event_bytes=100"):
        await broker.publish(ctx("alice"), {"text": "x" * 200})


async def test_subscribers_get_their_own_payload_copies(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    alice = ctx("alice")
    async with broker.subscribe(alice) as one, broker.subscribe(alice) as two:
        await broker.publish(alice, {"items": [1]})
        (a,) = await take(one, 1)
        (b,) = await take(two, 1)
    assert isinstance(a, Delivery)
    assert isinstance(b, Delivery)
    a.payload["items"].append(2)
    assert b.payload == {"items": [1]}


@pytest.mark.parametrize("bad", ["*", "$", "+", "-", "1-", "abc", "1-2-3", ""])
async def test_resume_ids_are_validated(make_broker: BrokerFactory, bad: str) -> None:
    broker = make_broker()
    with pytest.raises(EventIdError) as info:
        broker.subscribe(ctx("alice"), after=bad)
    assert info.value.value == bad


async def test_close_ends_subscriptions_and_refuses_use(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    alice = ctx("alice")
    sub = broker.subscribe(alice)
    await sub.__aenter__()
    await broker.publish(alice, {"n": 1})
    await take(sub, 1)
    await broker.aclose()
    async with asyncio.timeout(GUARD):
        rest = [item async for item in sub]
    assert rest == []
    with pytest.raises(BrokerClosedError) as info:
        await broker.publish(alice, {"n": 2})
    assert info.value.broker == type(broker).__name__
    with pytest.raises(BrokerClosedError):
        broker.subscribe(alice)


async def test_run_keeps_the_body_exception_when_the_end_cannot_be_published(
    make_broker: BrokerFactory,
) -> None:
    broker = make_broker()
    alice = ctx("alice")
    with pytest.raises(KeyError, match="body"):
        async with broker.run(alice, "run-5"):
            await broker.aclose()  # run_finished can no longer be published
            raise KeyError("body")
    with pytest.raises(BrokerClosedError):
        async with broker.run(alice, "run-6"):
            pass
