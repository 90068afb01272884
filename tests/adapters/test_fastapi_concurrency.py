"""50 users x 4 connections chatting at once with the demo app over real sockets.

Zero events cross users (or connections), every bridge is closed after
disconnect, and no scope is left open.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from adapter_support import serve
from examples.agent_chat import DemoSettings, Tracker, create_app, mint_token
from websockets.asyncio.client import connect

USERS = 50
CONNECTIONS_PER_USER = 4
MESSAGES_PER_CONNECTION = 2
SECRET = "concurrency-secret-concurrency-secret-42"


async def one_connection(ws_url: str, user: str, conn: int) -> list[dict[str, Any]]:
    token = mint_token(SECRET, user)
    events: list[dict[str, Any]] = []
    async with connect(f"{ws_url}/ws", subprotocols=["bearer", token]) as ws:  # type: ignore[list-item]
        events.append(json.loads(await ws.recv()))  # hello
        for i in range(MESSAGES_PER_CONNECTION):
            await ws.send(json.dumps({"agent": "assistant", "text": f"{user}/c{conn}/m{i}"}))
        finished = 0
        while finished < MESSAGES_PER_CONNECTION:
            event = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
            events.append(event)
            finished += event["type"] == "run_finished"
    return events


async def test_fifty_users_four_connections_no_crossed_events() -> None:
    app = create_app(DemoSettings(secret=SECRET, token_delay=0.001))
    sessions = app.state.sessions
    tracker: Tracker = app.state.container.tracker()
    with serve(app) as server:
        jobs = {
            (f"user{u:02d}", c): one_connection(server.ws, f"user{u:02d}", c)
            for u in range(USERS)
            for c in range(CONNECTIONS_PER_USER)
        }
        results = dict(zip(jobs, await asyncio.gather(*jobs.values()), strict=True))

        for _ in range(1000):  # the server finishes cleanups just after the client sees the close
            stats = sessions.stats()
            if stats.connections == 0 and stats.requests == 0:
                break
            await asyncio.sleep(0.01)
        stats = sessions.stats()

    crossed = []
    for (user, conn), events in results.items():
        own_prefix = f"{user}/c{conn}/"
        for event in events:
            if event["user_id"] != user:
                crossed.append((user, conn, event))
            carries_a_message = event["type"] == "run_started" or (
                event["type"] == "token" and "/" in event["text"]
            )
            if carries_a_message and not event["text"].startswith(own_prefix):
                crossed.append((user, conn, event))
        assert sum(e["type"] == "run_finished" for e in events) == MESSAGES_PER_CONNECTION
    assert crossed == []
    total = USERS * CONNECTIONS_PER_USER
    assert len(results) == total
    assert tracker.bridges_opened == tracker.bridges_closed == total
    assert tracker.runs_finished == total * MESSAGES_PER_CONNECTION
    assert (stats.connections, stats.requests) == (0, 0)
    assert stats.users == USERS
    assert sessions.stats().closed  # lifespan shutdown closed every user scope
    assert tracker.registries_opened == tracker.registries_closed == USERS
