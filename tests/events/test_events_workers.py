"""The agent-chat demo on two real uvicorn workers sharing a real redis-server.

A user's WebSocket is on one worker while ``POST /api/runs`` runs the agent on the
other; events go through Redis Streams. Fault tests kill a worker with SIGKILL
(the socket's, then the producer's) and restart Redis mid-stream. Every wait is
guarded by a generous timeout (a hang fails the test); nothing asserts on speed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from demo_workers import DemoCluster, DemoWorker, bearer, post_run
from events_support import INSTALL_HINT, RedisServer
from examples.agent_chat import FakeLLM
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

GUARD = 15.0  # seconds; generous for a noisy 2-core box, never asserted on
HEARTBEAT = {"AGENT_CHAT_HEARTBEAT_INTERVAL": "0.2", "AGENT_CHAT_HEARTBEAT_TIMEOUT": "1.0"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoCluster]:
    """One redis-server of its own and two demo workers; everything killed at the end."""
    if shutil.which("redis-server") is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    workdir = tmp_path_factory.mktemp("workers")
    redis = RedisServer(workdir / "redis")
    redis.start()
    demo = DemoCluster.create(redis, workdir, AGENT_CHAT_TOKEN_DELAY="0.02", **HEARTBEAT)
    try:
        demo.ensure_running()
        yield demo
    finally:
        demo.close()
        redis.stop()


@pytest.fixture
async def workers(cluster: DemoCluster) -> tuple[DemoWorker, DemoWorker]:
    """Both workers, restarted first if an earlier test killed one."""
    await asyncio.to_thread(cluster.ensure_running)
    w1, w2 = cluster.workers
    return w1, w2


def words(n: int, tag: str) -> list[str]:
    return [f"{tag}{i}" for i in range(n)]


@dataclass
class Socket:
    """A real ``websockets`` client on the demo's /ws, recording every message."""

    conn: ClientConnection
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] not in ("hello", "gap")]

    async def recv(self) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await self.conn.recv())
        self.messages.append(message)
        return message

    async def until(self, kind: str, run_id: str | None = None) -> list[dict[str, Any]]:
        """Receive until an event of ``kind`` (of ``run_id``) arrives; returns what came."""
        got: list[dict[str, Any]] = []
        async with asyncio.timeout(GUARD):
            while True:
                got.append(await self.recv())
                if got[-1]["type"] == kind and run_id in (None, got[-1].get("run_id")):
                    return got


@asynccontextmanager
async def socket(worker: DemoWorker, user: str, after: str | None = None) -> AsyncIterator[Socket]:
    query = "" if after is None else f"?after={after}"
    async with asyncio.timeout(GUARD):
        conn = await connect(f"{worker.ws}/ws{query}", additional_headers=bearer(user))
    try:
        sock = Socket(conn)
        async with asyncio.timeout(GUARD):
            hello = await sock.recv()
        assert hello["type"] == "hello"
        assert hello["user_id"] == user
        assert hello["resumed_after"] == after
        yield sock
    finally:
        await conn.close()


async def start_run(worker: DemoWorker, user: str, text: str) -> str:
    return await asyncio.to_thread(post_run, worker, user, text)


def id_key(event_id: str) -> tuple[int, int]:
    ms, seq = event_id.split("-")
    return int(ms), int(seq)


def dedupe(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a client keeps: stored events in id order, each id once (synthetic ones kept)."""
    kept: list[dict[str, Any]] = []
    last: tuple[int, int] = (-1, -1)
    for event in events:
        if event.get("synthetic"):
            kept.append(event)
        elif id_key(event["id"]) > last:
            last = id_key(event["id"])
            kept.append(event)
    return kept


def answer(prompt: list[str]) -> list[str]:
    """The words the demo's assistant streams for ``prompt`` (its three steps come first)."""
    return FakeLLM(delay=0).answer_words("assistant", " ".join(prompt))


def kinds(events: list[dict[str, Any]]) -> list[str]:
    """Event types without the run's three ``step`` events (thinking, tool call, result)."""
    steps = [e for e in events if e["type"] == "step"]
    assert len(steps) == 3, steps
    return [e["type"] for e in events if e["type"] != "step"]


def tokens(events: list[dict[str, Any]], run_id: str) -> list[str]:
    return [e["text"] for e in events if e["type"] == "token" and e["run_id"] == run_id]


async def test_run_on_one_worker_reaches_the_socket_on_the_other_only(
    workers: tuple[DemoWorker, DemoWorker],
) -> None:
    w1, w2 = workers
    prompt = words(20, "a")
    async with (
        socket(w1, "alice") as alice,
        socket(w1, "bob") as bob_w1,
        socket(w2, "bob") as bob_w2,
    ):
        # the body's user_id is ignored: the run belongs to the token's user
        run_id = await asyncio.to_thread(post_run, w2, "alice", " ".join(prompt), user_id="bob")
        got = await alice.until("run_finished", run_id)
        # sentinel: bob's next events on both workers are his own run, nothing before it
        bob_run = await start_run(w1, "bob", "bob asks")
        bob_events = [await bob_w1.until("run_finished"), await bob_w2.until("run_finished")]

    assert kinds(got) == ["run_started", *["token"] * len(answer(prompt)), "run_finished"]
    assert {e["run_id"] for e in got} == {run_id}
    assert {e["user_id"] for e in got} == {"alice"}
    assert tokens(got, run_id) == answer(prompt)  # contiguous, in order
    ids = [id_key(e["id"]) for e in got]
    assert ids == sorted(set(ids))
    assert got[-1]["status"] == "ok"
    for events in bob_events:
        assert events[0]["type"] == "run_started"
        assert {e["run_id"] for e in events} == {bob_run}
        assert {e["user_id"] for e in events} == {"bob"}
        assert not any(word in e.get("text", "") for e in events for word in prompt)


async def test_killed_socket_worker_resume_on_the_other_loses_nothing(
    workers: tuple[DemoWorker, DemoWorker],
) -> None:
    w1, w2 = workers
    prompt = words(40, "b")
    received: list[dict[str, Any]] = []
    async with socket(w1, "alice") as first:
        run_id = await start_run(w2, "alice", " ".join(prompt))
        async with asyncio.timeout(GUARD):
            while len(tokens(first.events, run_id)) < 5:
                await first.recv()
        w1.kill()  # the socket's worker dies mid-stream
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(GUARD):
                while True:  # whatever was already in flight, then the drop
                    await first.recv()
        received += first.events
    last_id = received[-1]["id"]
    async with socket(w2, "alice", after=last_id) as second:
        await second.until("run_finished", run_id)
        received += second.events

    kept = dedupe(received)
    assert kinds(kept) == ["run_started", *["token"] * len(answer(prompt)), "run_finished"]
    assert tokens(kept, run_id) == answer(prompt)  # no loss
    assert len({e["id"] for e in kept}) == len(kept)  # no duplicates after dedupe
    # resuming after the last id re-sent nothing the client already had
    assert id_key(second.events[0]["id"]) > id_key(last_id)


async def test_killed_producer_worker_is_reported_as_run_lost(
    workers: tuple[DemoWorker, DemoWorker],
) -> None:
    w1, w2 = workers
    async with socket(w1, "alice") as alice:
        run_id = await start_run(w2, "alice", " ".join(words(80, "c")))
        async with asyncio.timeout(GUARD):
            while len(tokens(alice.events, run_id)) < 3:
                await alice.recv()
        w2.kill()  # no run_finished, no more heartbeats
        rest = await alice.until("run_lost", run_id)  # within heartbeat_timeout=1 s (+ guard)
    lost = rest[-1]
    assert lost["synthetic"] is True
    assert lost["user_id"] == "alice"
    assert id_key(lost["last_seen_id"]) <= id_key(lost["id"])
    assert "run_finished" not in [e["type"] for e in alice.events]


async def test_redis_restart_mid_stream_keeps_delivering_or_reports_a_gap(
    cluster: DemoCluster, workers: tuple[DemoWorker, DemoWorker]
) -> None:
    w1, w2 = workers
    prompt = words(60, "d")
    async with socket(w1, "alice") as alice:
        run_id = await start_run(w2, "alice", " ".join(prompt))
        async with asyncio.timeout(GUARD):
            while len(tokens(alice.events, run_id)) < 5:
                await alice.recv()
        await asyncio.to_thread(cluster.redis.stop)  # data gone: persistence is off
        await asyncio.to_thread(cluster.redis.start)  # same port
        await alice.until("run_finished", run_id)  # the socket stays open, never hangs
        received = alice.messages

    gaps = [m for m in received if m["type"] == "gap"]
    got = tokens(dedupe([m for m in received if m["type"] not in ("hello", "gap")]), run_id)
    expected = answer(prompt)
    assert got[-1] == expected[-1]
    if got != expected:
        assert gaps, f"events were lost without a gap marker: {got}"
    # whatever arrived is in the run's order (a token may repeat only around the outage)
    positions = [expected.index(word) for word in got]
    collapsed = [p for i, p in enumerate(positions) if i == 0 or p != positions[i - 1]]
    assert collapsed == sorted(collapsed)
    for gap in gaps:
        assert gap["reason"] == "missing"  # Redis lost the stream; nothing was trimmed
        assert gap["user_id"] == "alice"


async def test_a_bad_after_on_one_socket_never_stalls_another_users_events(
    workers: tuple[DemoWorker, DemoWorker],
) -> None:
    w1, w2 = workers
    # alice has history, so an unchecked id would become the shared reader's XREAD cursor
    async with socket(w1, "alice") as warm:
        warm_run = await start_run(w2, "alice", "warm up")
        await warm.until("run_finished", warm_run)
    prompt = words(10, "h")
    async with socket(w1, "bob") as bob:
        # beyond Redis's uint64 ids, and Arabic-Indic digits (which match \d)
        for bad in ("1-99999999999999999999", "%D9%A1-%D9%A0"):
            async with asyncio.timeout(GUARD):
                conn = await connect(f"{w1.ws}/ws?after={bad}", additional_headers=bearer("alice"))
            try:
                with pytest.raises(ConnectionClosed) as info:
                    async with asyncio.timeout(GUARD):
                        while True:
                            await conn.recv()
            finally:
                await conn.close()
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1008  # refused at once, never attached
        run_id = await start_run(w2, "bob", " ".join(prompt))
        got = await bob.until("run_finished", run_id)
    assert tokens(got, run_id) == answer(prompt)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


async def test_page_reconnects_after_its_worker_restarts_and_shows_each_token_once(
    cluster: DemoCluster, workers: tuple[DemoWorker, DemoWorker]
) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-browser.sh (Debian chromium)")
    from playwright.async_api import async_playwright

    w1, w2 = workers
    prompt = words(40, "e")
    token = bearer("alice")["Authorization"].removeprefix("Bearer ")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            page.set_default_timeout(GUARD * 1000)
            await page.goto(f"{w1.http}/#token={token}")
            await page.wait_for_selector("#whoami:has-text('signed in as alice')")
            run_id = await start_run(w2, "alice", " ".join(prompt))  # on the other worker
            # the page also shows alice's history from earlier tests: look at this run only
            reply = f'#events li.agent[data-run-id="{run_id}"]'
            # mid-reply (the page's CSP forbids eval: wait with a locator)
            await page.locator(f"{reply} .text", has_text="wrote: e0 e1").wait_for()
            await asyncio.to_thread(w1.kill)  # the page's worker dies mid-reply...
            await asyncio.to_thread(cluster.ensure_running)  # ...and comes back on its port
            await page.wait_for_selector(f"{reply}.done")
            replies = await page.eval_on_selector_all(
                reply,
                "items => items.map(li => li.querySelector('.text').textContent)",
            )
            reconnects = await page.evaluate("Number(document.body.dataset.reconnects || 0)")
            badge = await page.text_content("#whoami")
        finally:
            await browser.close()
    assert replies == [" ".join(answer(prompt))]  # complete, nothing twice
    assert reconnects >= 1
    assert badge == "signed in as alice"
