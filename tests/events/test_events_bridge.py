"""EventBridge with a fake socket: ordering, isolation, overflow/resync, shutdown."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from events_support import BrokerFactory, ctx

from userscope.events import (
    BEGINNING,
    BROKER_GONE_CLOSE_CODE,
    RESYNC_CLOSE_CODE,
    RUN_HEARTBEAT,
    BridgeStateError,
    EventBridge,
    InMemoryBroker,
)

GUARD = 5.0


class FakeSocket:
    """Records what the bridge sends; can stall after ``stall_after`` messages."""

    def __init__(self, stall_after: int | None = None, fail_after: int | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: list[tuple[int, str]] = []
        self.stall_after = stall_after
        self.fail_after = fail_after
        self._changed = asyncio.Event()
        self._never = asyncio.Event()

    async def send_json(self, message: dict[str, Any]) -> None:
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise ConnectionResetError("peer went away")
        if self.stall_after is not None and len(self.sent) >= self.stall_after:
            await self._never.wait()  # a client that stopped reading
        self.sent.append(message)
        self._changed.set()

    async def close(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))

    async def wait_for(self, count: int) -> list[dict[str, Any]]:
        async with asyncio.timeout(GUARD):
            while len(self.sent) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.sent

    @property
    def event_ids(self) -> list[str]:
        return [m["id"] for m in self.sent if m["kind"] == "event"]


async def test_bridge_forwards_only_its_users_events_in_order(
    make_broker: BrokerFactory,
) -> None:
    broker = make_broker()
    alice, bob = ctx("alice"), ctx("bob")
    socket = FakeSocket()
    async with EventBridge(broker, alice, socket.send_json, close=socket.close) as bridge:
        ids = []
        for n in range(10):
            ids.append(await broker.publish(alice, {"n": n}))
            await broker.publish(bob, {"secret": n})
        await socket.wait_for(10)
        exit_ = await bridge.aclose()
    assert socket.event_ids == ids
    assert [m["event"] for m in socket.sent] == [{"n": n} for n in range(10)]
    assert bridge.last_sent_id == ids[-1]
    assert exit_.code is None
    assert socket.closed == []  # the owner closes its own socket
    assert broker.stats.subscriptions == 0


async def test_overflow_closes_with_resync_code_and_client_resumes_without_loss(
    make_broker: BrokerFactory,
) -> None:
    broker = make_broker()
    alice = ctx("alice")
    slow = FakeSocket(stall_after=2)
    bridge = EventBridge(broker, alice, slow.send_json, close=slow.close, max_queue=3)
    async with bridge:
        ids = [await broker.publish(alice, {"n": n}) for n in range(12)]
        async with asyncio.timeout(GUARD):
            exit_ = await bridge.wait()
    assert exit_.code == RESYNC_CLOSE_CODE
    assert slow.closed == [(RESYNC_CLOSE_CODE, exit_.reason[:120])]
    assert "after=" in exit_.reason
    assert slow.event_ids == ids[:2]
    assert exit_.last_sent_id == ids[1]
    # the client reconnects with the id of the last event it received
    fast = FakeSocket()
    async with EventBridge(broker, alice, fast.send_json, after=slow.event_ids[-1]):
        await fast.wait_for(10)
    received = slow.event_ids + fast.event_ids
    assert received == ids  # nothing lost, nothing twice
    assert all(m["kind"] == "event" for m in fast.sent)


async def test_heartbeats_stay_server_side_but_run_events_pass(
    make_broker: BrokerFactory,
) -> None:
    broker = make_broker(heartbeat_interval=0.05, heartbeat_timeout=0.2)
    alice = ctx("alice")
    socket = FakeSocket()
    async with EventBridge(broker, alice, socket.send_json):
        async with broker.run(alice, "run-1") as run:
            await asyncio.sleep(0.2)
            await run.publish({"type": "token"})
        await socket.wait_for(3)
    kinds = [m["event"]["type"] for m in socket.sent]
    assert kinds == ["run_started", "token", "run_finished"]
    assert RUN_HEARTBEAT not in kinds


async def test_gap_is_forwarded_in_wire_form(make_broker: BrokerFactory) -> None:
    broker = make_broker(idle_ttl=0.1)
    alice = ctx("alice")
    old = await broker.publish(alice, {"n": 0})
    await asyncio.sleep(0.3)  # alice's history expires
    socket = FakeSocket()
    async with EventBridge(broker, alice, socket.send_json, after=old):
        new = await broker.publish(alice, {"n": 1})
        await socket.wait_for(2)
    assert socket.sent[0] == {"kind": "gap", "after": old, "next_id": None, "reason": "missing"}
    assert socket.sent[1]["id"] == new


async def test_broker_shutdown_closes_the_socket_with_service_restart(
    make_broker: BrokerFactory,
) -> None:
    broker = make_broker()
    socket = FakeSocket()
    bridge = EventBridge(broker, ctx("alice"), socket.send_json, close=socket.close)
    async with bridge:
        await broker.aclose()
        async with asyncio.timeout(GUARD):
            exit_ = await bridge.wait()
    assert exit_.code == BROKER_GONE_CLOSE_CODE
    assert socket.closed == [(BROKER_GONE_CLOSE_CODE, exit_.reason)]


async def test_failing_send_stops_the_bridge_and_keeps_the_error(
    make_broker: BrokerFactory,
) -> None:
    broker = make_broker()
    alice = ctx("alice")
    socket = FakeSocket(fail_after=1)
    async with EventBridge(broker, alice, socket.send_json, close=socket.close) as bridge:
        first = await broker.publish(alice, {"n": 0})
        await broker.publish(alice, {"n": 1})
        async with asyncio.timeout(GUARD):
            exit_ = await bridge.wait()
    assert exit_.code is None
    assert isinstance(exit_.error, ConnectionResetError)
    assert exit_.last_sent_id == first
    assert socket.closed == []
    assert broker.stats.subscriptions == 0


async def test_resume_from_beginning_replays_history(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    alice = ctx("alice")
    ids = [await broker.publish(alice, {"n": n}) for n in range(4)]
    socket = FakeSocket()
    async with EventBridge(broker, alice, socket.send_json, after=BEGINNING):
        await socket.wait_for(4)
    assert socket.event_ids == ids


async def test_a_bridge_starts_once_and_waits_only_once_started() -> None:
    broker = InMemoryBroker()
    alice = ctx("alice")
    socket = FakeSocket()
    bridge = EventBridge(broker, alice, socket.send_json, close=socket.close)
    with pytest.raises(BridgeStateError) as never_started:
        await bridge.wait()
    assert (never_started.value.method, never_started.value.started) == ("wait", False)
    assert "async with EventBridge" in str(never_started.value)
    assert broker.stats.subscriptions == 0  # refusing changed nothing
    async with bridge:
        with pytest.raises(BridgeStateError) as twice:
            await bridge.start()
        assert (twice.value.method, twice.value.started) == ("start", True)
        assert isinstance(twice.value, RuntimeError)
        assert "make a new EventBridge" in str(twice.value)
        assert broker.stats.subscriptions == 1  # still the one subscription
        await broker.publish(alice, {"n": 0})
        await socket.wait_for(1)  # and it still forwards
    assert broker.stats.subscriptions == 0
    await broker.aclose()
